"""tools/dev/benchmark.py end to end on a small input: every implementation runs and the
report (markdown table + PNG) names each of them with a number."""
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

from solov2.core.errors import InputError
from solov2.tools.dev import benchmark, mixed_speed, picture_speed, postprocess_speed, train_speed
from solov2.tools.dev import report as report_module
from tests.helpers import REPO_DIR

ROOT = REPO_DIR


@pytest.mark.reference
@pytest.mark.benchmark
def test_benchmark_writes_table_and_plot(tmp_path):
    pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')
    out = tmp_path / 'bench'
    assert benchmark.main(['--configs', '1', '--backends', 'dygraph', 'inference', '--num-images', '2',
                           '--size', '96', '--runs', '1', '--opt', 'test_short=64', 'test_max=96',
                           '--out', str(out)]) == 0
    report = out.with_suffix('.md').read_text()
    assert out.with_suffix('.png').stat().st_size > 1000
    for name in ('ours, dygraph', 'ours, inference', 'PaddleDetection 2.6'):
        row = next(line for line in report.splitlines() if name in line)
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert cells[1] == '64x64'
        assert float(cells[4]) > 0                      # end-to-end images/s
        assert re.fullmatch(r'\d+\.\d\dx', cells[5])    # ratio to PaddleDetection
    facts = report.split('network GFLOP')[1]
    assert re.search(r'\| 1 Light448R50 \| 64x64 \| \d+ \| [\d.]+ / [\d.]+ \|', facts)


def test_postprocess_section_is_written_and_replaced(tmp_path):
    """--postprocess (in its own process: it pins itself to one core) writes its section
    into an existing report, keeps the rest, and replaces the section on the next run."""
    out = tmp_path / 'bench'
    out.with_suffix('.md').write_text('# Benchmark\n\nthe end-to-end table\n')
    command = [sys.executable, str(ROOT / 'tools' / 'dev' / 'benchmark.py'), '--postprocess', '--configs', '1',
               '--size', '160', '--opt', 'test_short=128', 'test_max=128', '--out', str(out)]
    for _ in range(2):
        assert subprocess.run(command, cwd=ROOT, capture_output=True, text=True).returncode == 0
    report = out.with_suffix('.md').read_text()
    assert report.startswith('# Benchmark\n\nthe end-to-end table\n') and report.count('## Post-processing') == 1
    row = next(line for line in report.splitlines() if line.startswith('| 1 | 160x160'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[2] == '32x32' and cells[3] == '2700' and cells[4] == '100'
    assert all(float(value) > 0 for value in cells[5:])
    assert report.count('Machine: ' + report_module.machine_line(1)) == 1


def test_a_full_report_keeps_the_postprocess_section(tmp_path):
    section = postprocess_speed.report_section([(1, 64, {'feat': '16x16', 'candidates': 5, 'instances': 2,
                                                        'postprocess': 0.001, 'paste': 0.001, 'encode': 0.001,
                                                        'draw': 0.001, 'total': 0.004})], 'a CPU', 'cmd')
    markers = postprocess_speed.MARKERS
    text = report_module.replace_section('# Benchmark\n\nold table\n', section, markers)
    assert report_module.existing_section(text, markers) == section
    assert report_module.replace_section(text, section.replace('a CPU', 'another CPU'), markers).count('## Post') == 1


@pytest.mark.reference
@pytest.mark.benchmark
def test_train_section_is_written_and_kept_by_a_postprocess_run(tmp_path):
    """--train (tiny: 96 px, one timed step) writes its row into an existing report and keeps
    the rest; a later --postprocess run keeps the training section."""
    pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')
    out = tmp_path / 'bench'
    out.with_suffix('.md').write_text('# Benchmark\n\nthe end-to-end table\n')
    command = [sys.executable, str(ROOT / 'tools' / 'dev' / 'benchmark.py'), '--configs', '1', '--out', str(out)]
    done = subprocess.run(command + ['--train', '--steps', '1', '--size', '96', '--processes', '2'], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.with_suffix('.md').read_text()
    assert report.startswith('# Benchmark\n\nthe end-to-end table\n') and report.count('## Training') == 1
    row = next(line for line in report.splitlines() if line.startswith('| 1 | 2x96x96 |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert all(float(cells[i]) > 0 for i in (2, 3, 6, 7))                        # s/step, s/iteration
    assert re.fullmatch(r'\d+\.\d\dx', cells[4]) and re.fullmatch(r'\d+\.\d\dx', cells[8])
    assert all(np.isfinite(float(loss)) for loss in cells[5].split(' / '))
    assert re.fullmatch(r'\d+\.\d\d \(2 processes; \d+\.\d\dx\)', cells[9])       # the launched loop
    assert all(re.fullmatch(r'[1-9]\d* MiB', cell) for cell in cells[10:12])     # peak RSS of each
    assert report_module.machine_line(0) in report and f'Paddle {paddle.__version__}' in report
    assert subprocess.run(command + ['--postprocess', '--size', '160', '--opt', 'test_short=128', 'test_max=128'],
                          cwd=ROOT, capture_output=True, text=True).returncode == 0
    after = out.with_suffix('.md').read_text()
    markers = train_speed.MARKERS
    assert report_module.existing_section(after, markers) == report_module.existing_section(report, markers) != ''
    assert after.count('## Post-processing') == 1


def _mixed_sizes_section() -> str:
    """tools/dev/mixed_speed.py's section of two rounds of two variants on two folders (made-up figures)."""
    results = {('images (2 pictures)', 'f32'): ([4.0, 6.0], [0.1, 0.3], [1, 1]),
               ('images (2 pictures)', 'int8'): ([2.0, 4.0], [0.5, 0.7], [2, 2]),
               ('3 random sizes', 'f32'): ([2.0, 2.0], [0.0, 0.0], [0, 0]),
               ('3 random sizes', 'int8'): ([3.0, 3.0], [1.0, 1.2], [3, 3])}
    return mixed_speed.report_section(mixed_speed.medians(results, ['f32', 'int8']), ['f32', 'int8'], 'a CPU', 'cmd')


def test_mixed_sizes_section_has_a_row_per_folder_and_a_column_per_variant():
    section = _mixed_sizes_section()
    assert section.startswith(mixed_speed.MARKERS[0] + '\n## INT8 on folders of mixed sizes\n')
    assert 'Machine: a CPU; command: `cmd`.' in section and mixed_speed.MEASURED in section
    assert ('| folder | f32 | int8 |\n|---|---|---|\n'
            '| images (2 pictures) | 5.00 (1.00x; 1 model, 0.2 s) | 3.00 (0.60x; 2 models, 0.6 s) |\n'
            '| 3 random sizes | 2.00 (1.00x; 0 models, 0.0 s) | 3.00 (1.50x; 3 models, 1.1 s) |\n'
            + mixed_speed.MARKERS[1] + '\n') in section


def test_a_full_report_keeps_the_postprocess_training_and_mixed_sizes_sections():
    post = postprocess_speed.report_section([(1, 64, {'feat': '16x16', 'candidates': 5, 'instances': 2,
                                                     'postprocess': 0.001, 'paste': 0.001, 'encode': 0.001,
                                                     'draw': 0.001, 'total': 0.004})], 'a CPU', 'cmd')
    row = {'config': 1, 'input': '2x64x64', 'ours_step': 1.0, 'ppdet_step': 1.1, 'ours_loss': 3.0, 'ppdet_loss': 3.1,
           'ours_iteration': 1.2, 'ppdet_iteration': 1.3, 'ours_rss': 2 ** 30, 'ppdet_rss': 2 ** 31,
           'processes': 2, 'ours_launched_iteration': 0.65}
    training = train_speed.report_section([row, {**row, 'ours_launched_iteration': None}], train_speed.TrainBench(),
                                          'a CPU', 'cmd')
    assert ('| 1 | 2x64x64 | 1.00 | 1.10 | 1.10x | 3.000 / 3.100 | 1.20 | 1.30 | 1.08x | 0.65 (2 processes; 2.00x) | '
            '1024 MiB | 2048 MiB |\n| 1 | 2x64x64 | 1.00 | 1.10 | 1.10x | 3.000 / 3.100 | 1.20 | 1.30 | 1.08x | '
            'not measured | 1024 MiB | 2048 MiB |' in training)
    mixed = _mixed_sizes_section()
    pictures = _pictures_section()
    sections = {postprocess_speed.MARKERS: post, train_speed.MARKERS: training, picture_speed.MARKERS: pictures,
                mixed_speed.MARKERS: mixed}
    text = '# Benchmark\n\nold table\n'
    for markers in reversed(benchmark.SECTIONS):        # written in any order, kept in the report's
        text = report_module.replace_section(text, sections[markers], markers)
    assert all(report_module.existing_section(text, markers) == section for markers, section in sections.items())
    kept = benchmark.kept_sections(text)
    assert kept == ''.join('\n' + sections[markers] for markers in benchmark.SECTIONS)
    for markers, section in sections.items():           # each replaced alone, the others kept
        again = report_module.replace_section(text, section.replace('a CPU', 'another CPU'), markers)
        assert again.count(section.splitlines()[1]) == 1
        assert all(report_module.existing_section(again, other) == (sections[other] if other != markers else
                                                                    section.replace('a CPU', 'another CPU'))
                   for other in sections)


def _pictures_section() -> str:
    rows = [{'width': 640, 'height': 640, 'shapes': 100, 'pictures': 2, 'rss': 2 ** 29, 'fps': 4.0, 'instances': 100,
             'drawn': 12.5, 'engine': 'openvino bf16'},
            {'width': 4000, 'height': 3000, 'shapes': 100, 'pictures': 2, 'rss': 2 ** 30, 'fps': 1.0,
             'instances': 99.5, 'drawn': 8, 'engine': 'openvino bf16'}]
    return picture_speed.report_section(rows, 'a CPU', 'cmd')


def test_pictures_section_compares_each_size_with_640_and_as_many_shapes():
    section = _pictures_section()
    assert section.startswith(picture_speed.MARKERS[0]) and 'here openvino bf16;' in section
    assert '| 640x640 | 100 | 100 / 12 | 2 | 4.00 | 512 MiB | - |' in section
    assert '| 4000x3000 | 100 | 100 / 8 | 2 | 1.00 | 1024 MiB | 0.25x, 2.00x |' in section


def test_write_section_makes_the_report_or_replaces_its_section_keeping_the_rest(tmp_path):
    out, markers = tmp_path / 'reports' / 'bench', mixed_speed.MARKERS
    assert report_module.write_section(str(out), 'old\n', markers) == out.with_suffix('.md')
    assert out.with_suffix('.md').read_text() == 'old\n'
    out.with_suffix('.md').write_text('# Benchmark\n\nthe table\n\n' + _mixed_sizes_section() + '\nmore\n')
    report_module.write_section(str(out), _mixed_sizes_section().replace('a CPU', 'another CPU'), markers)
    assert out.with_suffix('.md').read_text() == ('# Benchmark\n\nthe table\n\n'
                                                  + _mixed_sizes_section().replace('a CPU', 'another CPU') + '\nmore\n')


def test_mixed_speed_says_in_one_line_that_a_folder_has_no_pictures(tmp_path):
    (tmp_path / 'notes.txt').write_text('no picture here')
    with pytest.raises(InputError, match='no pictures') as raised:
        mixed_speed.mixed_folders(str(tmp_path), 3, tmp_path / 'random')
    assert '\n' not in str(raised.value)
    assert mixed_speed.main(['--model-dir', str(tmp_path), '--int8-dir', str(tmp_path), '--images',
                             str(tmp_path / 'missing'), '--rounds', '1']) != 0


@pytest.mark.deploy
def test_matmul_rates_take_the_best_float32_and_bf16_where_the_cpu_has_it():
    pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
    from solov2.model.inference.openvino_backend import has_bf16, import_openvino
    rates = benchmark.matmul_rates(threads=0, size=256)
    assert rates['f32'] > 1
    assert (rates['bf16'] is not None) == has_bf16(import_openvino().Core())


def test_ours_end_to_end_runs_the_demo_stages_and_writes_every_picture(tmp_path):
    """The end-to-end row is demo.py's own work: one drawn picture per input."""
    from solov2.config import CONFIGS, with_overrides
    from solov2.model.inference.dygraph_backend import DygraphBackend
    paths = benchmark.make_images(tmp_path / 'images', 2, 96)
    predictor = DygraphBackend(with_overrides(CONFIGS[1], ['test_short=64', 'test_max=96']), None)
    fps, busy = benchmark.ours_end_to_end(predictor, paths, tmp_path)
    assert fps > 0 and 0 < busy <= 1
    assert sorted(p.name for p in (tmp_path / 'ours_pictures').iterdir()) == [p.name for p in paths]


@pytest.mark.parametrize('processes', ['1', '3'])
def test_train_processes_must_split_the_batch(processes, capsys):
    with pytest.raises(SystemExit) as ended:
        benchmark.main(['--train', '--batch', '2', '--processes', processes])
    assert ended.value.code == 2 and '--processes must be at least 2 and divide --batch 2' in capsys.readouterr().err


# ---- smoke runs of the timing code (default suite): one small config or the shipped model, seconds ----
SMALL = ['--configs', '1', '--threads', '1', '--opt', 'test_short=64', 'test_max=64']
# tools/dev/benchmark.py as a user runs it, with the machine's matmul peak measured on 128x128 (not 2048x2048)
SMALL_MATMUL = """
import functools, sys
from solov2.tools.dev import benchmark
benchmark.matmul_rates = functools.partial(benchmark.matmul_rates, size=128)
for argv in (sys.argv[1:sys.argv.index('--then')], sys.argv[sys.argv.index('--then') + 1:]):
    if benchmark.main(argv) != 0:
        raise SystemExit(1)
"""


def _rows(report: str, start: str) -> list:
    """The cells of each table row of ``report`` that starts with ``start``."""
    return [[c.strip() for c in line.strip('|').split('|')] for line in report.splitlines() if line.startswith(start)]


def _positive(cell: str) -> float:
    value = float(cell.rstrip('x%'))
    assert np.isfinite(value) and value > 0, cell
    return value


@pytest.mark.reference
def test_table_and_training_sections_time_ours_and_paddledetection_on_a_small_input(tmp_path):
    """--train, then --table (which keeps the training section), of config 1 on 64 px pictures:
    every figure of both tables is measured, finite and positive."""
    pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')
    out = tmp_path / 'bench'
    done = subprocess.run([sys.executable, '-c', SMALL_MATMUL, '--train', '--steps', '1', '--size', '64', *SMALL,
                           '--out', str(out), '--then', '--table', '--backends', 'dygraph', '--num-images', '1',
                           '--size', '64', '--runs', '1', *SMALL, '--out', str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.with_suffix('.md').read_text()
    assert report.startswith('# Benchmark') and report.count('## Training') == 1
    table = [cells for cells in _rows(report, '| 1 Light448R50 | 64x64 |') if len(cells) == 8]
    assert [cells[2] for cells in table] == ['ours, dygraph', 'PaddleDetection 2.6 (dygraph)']
    for cells in table:
        assert all(_positive(cell) for cell in cells[3:6]) and _positive(cells[7])   # s, img/s, ratio, peak share
    assert re.fullmatch(r'\d+%', table[0][6])                                        # model busy
    facts = _rows(report.split('network GFLOP')[1], '| 1 Light448R50 | 64x64 |')[0]
    assert _positive(facts[2]) and all(_positive(ms) for ms in facts[3].split(' / ')) and _positive(facts[4])
    training = _rows(report, '| 1 | 2x64x64 |')
    assert len(training) == 1
    cells = training[0]
    assert all(_positive(cells[i]) for i in (2, 3, 4, 6, 7, 8))                     # s/step, s/iteration, ratios
    assert all(np.isfinite(float(loss)) for loss in cells[5].split(' / ')) and cells[9] == 'not measured'
    assert all(re.fullmatch(r'[1-9]\d* MiB', cell) for cell in cells[10:12])        # peak RSS of each


@pytest.mark.deploy
def test_pictures_and_mixed_sizes_sections_time_the_shipped_model(tmp_path):
    """picture_speed on one small folder (a process of its own, the test run's auto export) and
    mixed_speed's OpenVINO f32 and onnxruntime on the sample pictures and one random size: each
    row is measured, finite and positive, in the sections the report keeps."""
    pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
    pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')
    from solov2.core.paths import SAMPLE_IMAGES, cache_root
    from tests.helpers import shipped_onnx_export
    export_dir = str(shipped_onnx_export(tmp_path / 'export'))       # the auto cache entry picture_speed opens
    rows = picture_speed.measure(tmp_path / 'pictures', 1, 1, str(cache_root()), folders=((320, 240, 3),))
    out = tmp_path / 'bench'
    report_module.write_section(str(out), picture_speed.report_section(rows, 'a CPU', 'cmd'), picture_speed.MARKERS)
    folders = mixed_speed.mixed_folders(SAMPLE_IMAGES, 1, tmp_path / 'mixed', 'images/')
    variants = ['f32', 'onnx']
    results = mixed_speed.measure(folders, {'f32': export_dir}, variants, 1, 1, tmp_path)
    section = mixed_speed.report_section(mixed_speed.medians(results, variants), variants, 'a CPU', 'cmd')
    report = report_module.write_section(str(out), section, mixed_speed.MARKERS).read_text()
    assert report_module.existing_section(report, picture_speed.MARKERS) != ''
    cells = _rows(report, '| 320x240 | 3 |')[0]
    found, drawn = map(float, cells[2].split(' / '))
    assert 0 <= drawn <= found and cells[3] == '1' and _positive(cells[4]) and re.fullmatch(r'[1-9]\d* MiB', cells[5])
    mixed = _rows(report, '| images/ (5 pictures) |') + _rows(report, '| 1 random sizes |')
    assert len(mixed) == 2
    for cells in mixed:
        for cell in cells[1:]:
            rate, ratio = re.fullmatch(r'([\d.]+) \(([\d.]+)x; \d+ models?, [\d.]+ s\)', cell).groups()
            assert _positive(rate) and _positive(ratio)
        assert cells[1].startswith(cells[1].split()[0] + ' (1.00x;')              # f32 is the base
