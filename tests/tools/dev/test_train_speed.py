"""tools/dev/train_speed.py's launched train.py: its command line is train.py's own flags for the run's
options (threads and device included), and it runs under a timeout."""
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from solov2.core.errors import RunError
from solov2.tools.dev import train_speed
from solov2.tools.train import options_from_args, parse_args


def test_the_launched_train_py_gets_every_option_threads_and_device_under_a_timeout(tmp_path, monkeypatch):
    bench = train_speed.TrainBench(size=96, batch=2, steps=1, threads=1, opt=('num_workers=0',))
    options = replace(train_speed.ours_options(1, bench, tmp_path / 'shapes', 'start.pdparams', tmp_path / 'run'),
                      device='cpu')
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        return subprocess.CompletedProcess(command, 1, '', 'it failed')
    monkeypatch.setattr(train_speed.subprocess, 'run', fake_run)
    with pytest.raises(RunError, match='2 launched processes of train.py failed: it failed'):
        train_speed.ours_launched_loop(options, 2, tmp_path)
    (command, kwargs), = calls
    assert 0 < kwargs['timeout'] <= train_speed.CHILD_TIMEOUT_S
    assert kwargs['env']['CUDA_VISIBLE_DEVICES'] == '-1,-1'         # CPU processes on a host with any GPUs
    script = command.index(str(train_speed.TRAIN_SCRIPT))
    assert command[1:5] == ['-m', 'paddle.distributed.launch', '--nproc_per_node', '2']
    args = command[script + 1:]
    assert args[args.index('--threads') + 1] == '1' and args[args.index('--device') + 1] == 'cpu'
    assert options_from_args(parse_args(args)) == replace(options, checkpoint_every=10 ** 6)


def test_a_launched_train_py_that_hangs_is_stopped(tmp_path, monkeypatch):
    def hangs(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs['timeout'])
    monkeypatch.setattr(train_speed.subprocess, 'run', hangs)
    options = train_speed.ours_options(1, train_speed.TrainBench(), Path(tmp_path), 'w.pdparams', tmp_path / 'run')
    with pytest.raises(RunError, match=f'took over {train_speed.CHILD_TIMEOUT_S} s'):
        train_speed.ours_launched_loop(options, 2, tmp_path)


def test_a_measured_child_that_fails_or_hangs_ends_in_a_run_error():
    assert train_speed.in_own_process(abs, -3)[0] == 3
    with pytest.raises(RunError, match='int: ValueError'):
        train_speed.in_own_process(int, 'x')
    with pytest.raises(RunError, match='took over 2 s'):
        train_speed.in_own_process(train_speed.time.sleep, 60, timeout=2)


def test_command_args_give_the_options_back():
    options = options_from_args(parse_args(['--amp', 'bf16', '--sync-bn', '--opt', 'batch_size=2']))
    args = train_speed.command_args(options)
    assert args[args.index('--amp') + 1] == 'bf16' and '--sync-bn' in args
    assert options_from_args(parse_args(train_speed.command_args(options))) == options
