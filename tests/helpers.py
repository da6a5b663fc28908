"""Helpers shared by several test modules."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import paddle
import pytest

from config import CONFIGS
from model.build import build_model

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


def launch_two_cpu_processes(tmp_path, *command):
    """Run `command` (after `python`) as two CPU processes under paddle.distributed.launch;
    returns the launcher's output. Fails the test if they hang."""
    launcher = subprocess.Popen([sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
                                 '--log_dir', str(tmp_path / 'logs'), *command],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env={**os.environ, 'PYTHONPATH': str(REPO_DIR)})
    try:
        output, _ = launcher.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        pytest.fail('the two processes hung')
    assert launcher.returncode == 0, output[-2000:]
    return output
