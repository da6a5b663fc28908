"""Helpers shared by several test modules."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import paddle
import pytest

from solov2.config import CONFIGS
from solov2.model.build import build_model

REPO_DIR = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO_DIR / 'tests' / 'fixtures'


def get_eval_model(pytestconfig, number: int):
    """Config ``number``'s model in eval mode, built once per pytest session and kept on
    the session's pytest config (read-only use: tests/model/test_model.py, tests/test_demo.py)."""
    cache = pytestconfig.__dict__.setdefault('_solov2_eval_models', {})
    if number not in cache:
        paddle.seed(number)
        model = build_model(CONFIGS[number])
        model.eval()
        cache[number] = model
    return cache[number]


def _launch(log_dir: Path, launcher_args, command, cwd=None):
    """(paddle.distributed.launch started, the file of its own output in ``log_dir``)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / 'launcher.out', 'w') as output:
        return subprocess.Popen([sys.executable, '-m', 'paddle.distributed.launch', *launcher_args,
                                 '--log_dir', str(log_dir), *command],
                                stdout=output, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                start_new_session=True, env={**os.environ, 'PYTHONPATH': str(REPO_DIR)}), \
            log_dir / 'launcher.out'


def _finish(launchers, timeout=240) -> list:
    """The launchers' outputs once all have ended; fails the test if they hang or one fails."""
    try:
        for launcher, _ in launchers:
            launcher.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for launcher, _ in launchers:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
        pytest.fail('the processes hung')
    outputs = [path.read_text() for _, path in launchers]
    for (launcher, _), output in zip(launchers, outputs):
        assert launcher.returncode == 0, output[-2000:]
    return outputs


def launch_two_cpu_processes(tmp_path, *command):
    """Run `command` (after `python`) as two CPU processes under paddle.distributed.launch
    (logs in tmp_path/logs/workerlog.0 and .1); returns the launcher's output. Fails the
    test if they hang."""
    return _finish([_launch(tmp_path / 'logs', ['--nproc_per_node', '2'], command)])[0]


def launch_two_nodes(tmp_path, *command, cwds=(None, None)):
    """Run `command` (after `python`) as two one-process "nodes" on 127.0.0.1, each a
    launcher of its own (``--nnodes 2 --master``; node N's log in tmp_path/nodeN/workerlog.0,
    its working directory ``cwds[N]``); returns their outputs. Fails the test if they hang."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    return _finish([_launch(tmp_path / f'node{rank}', ['--nnodes', '2', '--master', f'127.0.0.1:{port}',
                                                      '--rank', str(rank), '--nproc_per_node', '1'], command, cwd)
                    for rank, cwd in enumerate(cwds)])


# --opt of a training run that takes seconds: 128 px, batch 2, two epochs of a tiny set
TINY_TRAINING = ['num_workers=0', 'batch_size=2', 'train_shorts=(128,)', 'train_max=128',
                 'test_short=128', 'test_max=128', 'warmup_iters=2', 'ema_decay=0.9', 'epochs=2']


def make_tiny_shapes(root, val: int = 2):
    """A shapes dataset of six 128 px training images and ``val`` validation ones under
    ``root`` (tools/make_shapes_dataset.py, seed 1); returns ``root``."""
    subprocess.run([sys.executable, str(REPO_DIR / 'tools' / 'make_shapes_dataset.py'), '--out', str(root),
                    '--train', '6', '--val', str(val), '--size', '128', '--seed', '1'], check=True, capture_output=True)
    return root
