"""The project installs with ``pip install -e .``: the packages import from any folder and
the scripts' bootstrap then leaves sys.path alone."""
import subprocess
import sys

from tests.helpers import REPO_DIR


def test_editable_install_imports_from_another_folder(tmp_path):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation', '-e', str(REPO_DIR)],
                   check=True, capture_output=True, cwd=tmp_path)
    check = ('import sys; before = list(sys.path); import tools._bootstrap, convert._bootstrap; '
             'assert sys.path == before, "the bootstrap edited sys.path"; '
             'import config, data.coco, model.build, model.training.trainer, model.inference.backends, '
             'convert.solo2paddle, tools.export_model; print(model.build.__file__)')
    done = subprocess.run([python, '-c', check], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(REPO_DIR / 'model' / 'build.py')
