"""The project is used from its checkout, not pip-installed (its top-level packages have
generic names): with only the checkout on PYTHONPATH a fresh interpreter imports the
packages from any folder, and the scripts run by path from any folder (their bootstrap puts
the checkout on sys.path). Runs with ``sys.executable``, so it holds in a virtual
environment as in the machine's Python."""
import os
import subprocess
import sys

from tests.helpers import REPO_DIR

MODULES = ('config', 'data.coco', 'model.api', 'model.build', 'model.training.trainer', 'model.inference.backends',
           'convert.common', 'tools.export_model')


def _python(args, cwd, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    if pythonpath:
        env['PYTHONPATH'] = pythonpath
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_checkout_on_pythonpath_imports_from_another_folder(tmp_path):
    check = ('import sys; before = list(sys.path); import tools._bootstrap, convert._bootstrap; '
             'assert sys.path == before, "the bootstrap edited sys.path"; '
             f'import {", ".join(MODULES)}; print(model.build.__file__)')
    done = _python(['-c', check], tmp_path, pythonpath=str(REPO_DIR))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(REPO_DIR / 'model' / 'build.py')


def test_scripts_run_by_path_from_another_folder(tmp_path):
    """tools/_bootstrap.py and convert/_bootstrap.py make the project importable."""
    for script in ('tools/make_shapes_dataset.py', 'convert/solo2paddle.py'):
        done = _python([str(REPO_DIR / script), '--help'], tmp_path)
        assert done.returncode == 0, (script, done.stderr[-2000:])
        assert done.stdout.startswith('usage: '), (script, done.stdout[:200])
