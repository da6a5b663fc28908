"""MKL's AVX2 path is asked for on AMD CPUs only, and never over the user's choice."""
import os
import subprocess
import sys

from solov2.model.cpu_math import MKL_CPU_TYPE, cpu_features, cpu_fields, cpu_name, prefer_avx2_mkl
from tests.helpers import REPO_DIR

ROOT = REPO_DIR


def write_cpuinfo(tmp_path, vendor):
    path = tmp_path / 'cpuinfo'
    path.write_text(f'processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 23\n')
    return str(path)


def test_amd_gets_the_avx2_path(tmp_path):
    environ = {}
    assert prefer_avx2_mkl(environ, write_cpuinfo(tmp_path, 'AuthenticAMD'))
    assert environ == {MKL_CPU_TYPE: '5'}


def test_intel_and_unknown_cpus_are_left_alone(tmp_path):
    environ = {}
    assert not prefer_avx2_mkl(environ, write_cpuinfo(tmp_path, 'GenuineIntel'))
    assert not prefer_avx2_mkl(environ, str(tmp_path / 'missing'))
    assert environ == {}


def test_cpu_fields_are_the_first_cpus(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nmodel name\t: First\nflags\t\t: avx2 amx_bf16\n\n'
                    'processor\t: 1\nmodel name\t: Second\nflags\t\t: sse\nvendor_id\t: Other\n')
    fields = cpu_fields(str(path))
    assert fields['model name'] == 'First' and fields['flags'].split() == ['avx2', 'amx_bf16']
    assert 'vendor_id' not in fields and not prefer_avx2_mkl({}, str(path))
    assert cpu_fields(str(tmp_path / 'missing')) is None


def test_the_users_setting_wins(tmp_path):
    environ = {MKL_CPU_TYPE: '2'}
    assert not prefer_avx2_mkl(environ, write_cpuinfo(tmp_path, 'AuthenticAMD'))
    assert environ == {MKL_CPU_TYPE: '2'}


# Imports and uses the library on a pretended AMD CPU, then tunes the process on a pretended
# Intel CPU and on the AMD one: MKL_DEBUG_CPU_TYPE after each step
USE_THEN_TUNE = """
import os, sys
from solov2.model import cpu_math
cpu_math.CPUINFO = sys.argv[1]
from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter, tune_process
Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu', threads=1)(os.path.join(SAMPLE_IMAGES, 'shapes_wide.jpg'))
print(os.environ.get('MKL_DEBUG_CPU_TYPE'))
cpu_math.CPUINFO = sys.argv[2]
tune_process(threads=1)
print(os.environ.get('MKL_DEBUG_CPU_TYPE'))
cpu_math.CPUINFO = sys.argv[1]
tune_process(threads=1)
print(os.environ.get('MKL_DEBUG_CPU_TYPE'))
"""


def test_the_library_never_sets_it_and_tune_process_sets_it_on_amd_only(tmp_path):
    """Importing and using the library leave the environment alone, even on an AMD CPU;
    ``tune_process`` (the commands' one tuning call) sets the variable there and only there."""
    amd, intel = tmp_path / 'amd', tmp_path / 'intel'
    amd.mkdir(), intel.mkdir()
    env = {k: v for k, v in os.environ.items() if k != MKL_CPU_TYPE}
    done = subprocess.run([sys.executable, '-c', USE_THEN_TUNE, write_cpuinfo(amd, 'AuthenticAMD'),
                           write_cpuinfo(intel, 'GenuineIntel')], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ['None', 'None', '5']


def test_the_cpu_is_named_by_its_first_model_name_and_the_flags_speed_depends_on(tmp_path):
    """``cpu_name``: the one description of the CPU (benchmark reports, auto's records, messages)."""
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n'
                    'flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16\n\n'
                    'processor\t: 1\nmodel name\t: another CPU\nflags\t\t: amx_bf16 amx_int8\n')
    assert cpu_name(str(path)) == ('AMD EPYC 7B13 64-Core Processor (cpu family 25 model 1; avx2 avx512f avx512_vnni '
                                      'avx512_bf16)')
    assert cpu_features(str(path)) == ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16']   # auto's choice key
    path.write_text('model name\t: Old CPU\nflags\t\t: fpu sse2\n')
    assert cpu_name(str(path)) == 'Old CPU (no AVX2)' and cpu_features(str(path)) == []
    assert cpu_features(str(tmp_path / 'missing')) == ['unknown']
    assert cpu_name(str(tmp_path / 'missing'))          # the platform's name, or 'unknown CPU'
