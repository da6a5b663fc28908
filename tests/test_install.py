"""An install that keeps the user's Paddle: the package names no Paddle wheel (beside
paddlepaddle-gpu, pip would put the CPU wheel over it: both install paddle/), and the
commands say in one line when no Paddle or both wheels are installed."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from solov2.config import install
from solov2.tools import cli
from tests.helpers import REPO_DIR


@pytest.mark.parametrize('wheels, importable, expected', [
    (['paddlepaddle'], True, None), (['paddlepaddle-gpu'], True, None), ([], True, None),
    (['paddlepaddle', 'paddlepaddle-gpu'], True, 'both paddlepaddle and paddlepaddle-gpu are installed'),
    ([], False, 'PaddlePaddle is not installed: pip install paddlepaddle (CPU); for GPUs up to Ampere'),
])
def test_install_problems_in_one_line(wheels, importable, expected):
    problem = install.paddle_install_problem(wheels, lambda: importable)
    assert problem is None if expected is None else problem.startswith(expected)


def test_a_stand_in_gpu_wheel_beside_the_cpu_one_is_named(tmp_path, monkeypatch, capsys):
    """A stand-in paddlepaddle-gpu distribution (its metadata only) beside this Python's
    paddlepaddle: the commands warn in one line and go on."""
    info = tmp_path / 'paddlepaddle_gpu-3.3.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: paddlepaddle-gpu\nVersion: 3.3.1\n')
    assert list(install.installed_wheels()) == ['paddlepaddle']
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(install.installed_wheels()) == ['paddlepaddle', 'paddlepaddle-gpu']
    cli.check_install()
    assert capsys.readouterr().err.startswith('warning: both paddlepaddle and paddlepaddle-gpu are installed')


def test_both_onnxruntime_wheels_are_named_in_one_line(tmp_path, monkeypatch, capsys):
    """Stand-in onnxruntime and onnxruntime-gpu distributions (metadata only): the CPU one
    shadows the GPU one in their shared onnxruntime/ folder; the commands warn and go on."""
    for name in ('onnxruntime', 'onnxruntime_gpu'):
        info = tmp_path / f'{name}-1.22.0.dist-info'
        info.mkdir()
        (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name.replace("_", "-")}\nVersion: 1.22.0\n')
    assert install.onnxruntime_install_problem(['onnxruntime']) is None
    assert install.onnxruntime_install_problem(['onnxruntime-gpu']) is None
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(install.installed_wheels(install.ONNXRUNTIME_WHEELS)) == ['onnxruntime', 'onnxruntime-gpu']
    cli.check_install()
    assert capsys.readouterr().err.splitlines() == ['warning: ' + install.onnxruntime_install_problem()]
    assert install.onnxruntime_install_problem().startswith('both onnxruntime and onnxruntime-gpu are installed')


def test_no_paddle_ends_the_command_in_one_error_line(monkeypatch, capsys):
    monkeypatch.setattr(install, 'installed_wheels', lambda: [])
    monkeypatch.setattr(cli.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(SystemExit) as stop:
        cli.check_install()
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith('error: PaddlePaddle is not installed: pip install paddlepaddle')


def test_the_package_requires_no_paddle_wheel(tmp_path):
    """The metadata pip resolves ``pip install .`` with: the dependencies of requirements-core.txt,
    no Paddle wheel; the checkout's requirements.txt is the CPU wheel and those."""
    pytest.importorskip('setuptools')
    source = tmp_path / 'source'
    shutil.copytree(REPO_DIR, source, ignore=shutil.ignore_patterns(
        '.git', 'output', 'build', '*.egg-info', '__pycache__', 'datasets', 'export', '.pytest_cache'))
    report = tmp_path / 'report.json'
    done = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-deps', '--no-index',
                           '--no-build-isolation', '--quiet', '--report', str(report), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    required = json.loads(report.read_text())['install'][0]['metadata']['requires_dist']
    names = [line.split(';')[0].split('>')[0].split('=')[0].strip() for line in required]
    assert 'numpy' in names and not [n for n in names if n.lower().startswith('paddlepaddle')], required
    lines = (REPO_DIR / 'requirements.txt').read_text().splitlines()
    assert [line for line in lines if not line.startswith('#')] == ['paddlepaddle>=2.6,<4', '-r requirements-core.txt']


def test_the_setuptools_floor_reads_the_extras_names():
    """``pip install --no-build-isolation .`` builds with the setuptools installed: the build-system floor is one
    that reads the extras' names. Setuptools before 70.0 refuses a ``tool.setuptools.dynamic.optional-dependencies``
    key that is no Python identifier ("keys must be named by: python-identifier": measured with 69.5.1, and the
    issue's 65.5, 68.2, 69.5; 70.0.0 and 70.1.0 give every extra)."""
    text = (REPO_DIR / 'pyproject.toml').read_text()        # read as text: tomllib is Python 3.11's
    extras = re.findall(r'^optional-dependencies\.([\w-]+) =', text, re.M)
    (floor,) = re.findall(r'^requires = \["setuptools>=([\d.]+)"\]$', text, re.M)
    version = tuple(int(part) for part in floor.split('.'))
    assert 'deploy' in extras and (all(name.isidentifier() for name in extras) or version >= (70,)), (floor, extras)
