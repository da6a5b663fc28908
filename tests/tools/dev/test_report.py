"""tools/dev/report.py: the one machine line every benchmark section names, from /proc/cpuinfo."""
import os
from importlib.metadata import version

import paddle

from solov2.tools.dev import report

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: another CPU
flags\t\t: amx_bf16 amx_int8
"""


def test_the_machine_line_names_the_first_cpu_its_flags_cores_threads_and_libraries(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(CPUINFO)
    line = report.machine_line(0, str(cpuinfo), cores=8)
    assert line.startswith('AMD EPYC 7B13 64-Core Processor (avx2 avx512f avx512_vnni avx512_bf16), 8 cores, '
                           f'8 threads, Paddle {paddle.__version__.split("-")[0]}, OpenVINO ')
    assert report.machine_line(3, str(cpuinfo), cores=8).split(', ')[2] == '3 threads'
    onnxruntime = line.split('onnxruntime ')[1]
    assert onnxruntime in ('missing', version('onnxruntime').split('-')[0])


def test_a_machine_without_cpuinfo(tmp_path):
    missing = report.machine_line(0, str(tmp_path / 'missing'))
    assert f', {os.cpu_count()} cores, {os.cpu_count()} threads, Paddle ' in missing


def test_a_section_sits_between_its_markers_and_replaces_only_its_own():
    markers = ('<!-- a: begin -->', '<!-- a: end -->')
    section = report.section(markers, 'Title', 'First paragraph.', '| t |\n|---|')
    assert section == '<!-- a: begin -->\n## Title\n\nFirst paragraph.\n\n| t |\n|---|\n<!-- a: end -->\n'
    text = report.replace_section('# Report\n\nthe table\n', section, markers)
    assert text == '# Report\n\nthe table\n\n' + section
    newer = section.replace('First', 'Second')
    assert report.replace_section(text + '\nmore\n', newer, markers) == '# Report\n\nthe table\n\n' + newer + '\nmore\n'
    assert report.existing_section(text, markers) == section
    assert report.existing_section('# Report\n', markers) == ''
    assert report.command_line('tools/x.py', ['--a', '1']) == 'python tools/x.py --a 1'
