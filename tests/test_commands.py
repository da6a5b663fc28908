"""The three commands end to end, run by path as a user runs them from the README: demo on the
sample pictures, a tiny training run on generated shapes, eval of the checkpoint it wrote.
Paddle-only (no deployment extras, dygraph backend), so .ci/run also runs this file in a second
virtual environment on Paddle 2.6.2, the last ``paddlepaddle-gpu`` on the package index: the
Paddle 2.x half of the promise cannot break unseen. None prints a Python warning (Paddle's
"No ccache found" at import, BatchNorm's "always track global mean" at each training step:
tools/cli.py's start-up filters)."""
import json
import subprocess
import sys

import paddle

from tests.helpers import REPO_DIR, TINY_TRAINING, make_tiny_shapes


def _command(script, *args, cwd):
    done = subprocess.run([sys.executable, str(REPO_DIR / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f'{script} (Paddle {paddle.__version__}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}'
    assert 'Warning' not in done.stderr, done.stderr[-3000:]     # Paddle's notes a user cannot act on (tools/cli.py)
    return done.stdout


def test_demo_train_and_eval_run_end_to_end(tmp_path):
    out = _command('demo.py', '--backend', 'dygraph', '--device', 'cpu', '--output', tmp_path / 'pictures',
                   '--save-json', tmp_path / 'demo.json', cwd=tmp_path)
    assert 'FPS' in out and len(list((tmp_path / 'pictures').glob('*.jpg'))) == 5
    assert json.loads((tmp_path / 'demo.json').read_text())

    shapes = make_tiny_shapes(tmp_path / 'shapes')
    run = tmp_path / 'run'
    _command('train.py', '--config', '9', '--device', 'cpu', '--output', run, '--log-every', '1',
             '--opt', f'dataset_dir={shapes}', *TINY_TRAINING, cwd=tmp_path)
    weights = run / 'last' / 'model.pdparams'
    assert weights.is_file() and len((run / 'train_log.csv').read_text().splitlines()) > 2

    out = _command('eval.py', '--weights', weights, '--backend', 'dygraph', '--device', 'cpu',
                   '--opt', f'dataset_dir={shapes}', '--save-json', tmp_path / 'segm.json', cwd=tmp_path)
    assert 'mask AP (%)' in out and 'box AP from mask extents (%)' in out, out[-1000:]
    assert isinstance(json.loads((tmp_path / 'segm.json').read_text()), list)
