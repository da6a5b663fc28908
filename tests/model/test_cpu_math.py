"""MKL's AVX2 path is asked for on AMD CPUs only, and never over the user's choice."""
import os
import subprocess
import sys

from solov2.model.cpu_math import MKL_CPU_TYPE, cpu_fields, cpu_vendor, prefer_avx2_mkl
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
    assert environ == {} and cpu_vendor(str(tmp_path / 'missing')) == ''


def test_cpu_fields_are_the_first_cpus(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nmodel name\t: First\nflags\t\t: avx2 amx_bf16\n\n'
                    'processor\t: 1\nmodel name\t: Second\nflags\t\t: sse\nvendor_id\t: Other\n')
    fields = cpu_fields(str(path))
    assert fields['model name'] == 'First' and fields['flags'].split() == ['avx2', 'amx_bf16']
    assert 'vendor_id' not in fields and cpu_vendor(str(path)) == ''
    assert cpu_fields(str(tmp_path / 'missing')) is None


def test_the_users_setting_wins(tmp_path):
    environ = {MKL_CPU_TYPE: '2'}
    assert not prefer_avx2_mkl(environ, write_cpuinfo(tmp_path, 'AuthenticAMD'))
    assert environ == {MKL_CPU_TYPE: '2'}


def test_importing_the_model_package_applies_it():
    env = {k: v for k, v in os.environ.items() if k != MKL_CPU_TYPE}
    code = 'import os, model; print(os.environ.get("MKL_DEBUG_CPU_TYPE"))'
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == ('5' if cpu_vendor() == 'AuthenticAMD' else 'None')
