"""model.runtime: Paddle's device and threads set for a block and put back; the one
threads-per-core rule; Paddle's internals left alone on a Paddle line they were not checked on."""
import importlib
import os
import signal

import paddle
import pytest

from solov2.model import runtime
from solov2.model.runtime import math_threads, paddle_on
from solov2.model.training.child_signal import kept_child_signal


@pytest.mark.parametrize('mkl', [True, False])
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='one core: MKL runs one thread whatever it is asked')
def test_paddle_on_puts_the_process_s_settings_back_after_a_nested_block_and_an_error(monkeypatch, mkl):
    """Also where MKL cannot be asked for the threads (another Paddle line, a build without
    MKL): then the threads last set are what is put back."""
    if not mkl:
        monkeypatch.setattr(runtime, '_mkl_threads_reader', lambda: None)
    process = math_threads()
    outer, inner = (1, 2) if process > 1 else (2, 1)
    with pytest.raises(KeyError):
        with paddle_on('cpu', outer):
            with paddle_on('cpu', inner):
                assert math_threads() == inner
            assert math_threads() == outer and paddle.get_device() == 'cpu'
            raise KeyError('a failed call')
    assert math_threads() == process


@pytest.fixture
def paddle_4(monkeypatch):
    """The installed Paddle reads as 4.0.0, a line the internals the toolkit touches were not checked on."""
    monkeypatch.setattr(paddle, '__version__', '4.0.0')
    runtime._mkl_threads_reader.cache_clear()
    yield
    runtime._mkl_threads_reader.cache_clear()


def test_on_an_unchecked_paddle_line_the_toolkit_leaves_paddle_s_internals_alone(paddle_4):
    """Neither Paddle's SIGCHLD flag nor the process's handler is touched (Paddle's handler,
    set in the block, stays), and MKL is not looked for in Paddle's folder."""
    paddle_side = importlib.import_module('paddle.io.multiprocess_utils')
    before, flag = signal.getsignal(signal.SIGCHLD), paddle_side._SIGCHLD_handler_set
    try:
        with kept_child_signal():
            assert paddle_side._SIGCHLD_handler_set == flag
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # as Paddle's first loader with workers sets its own
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN and paddle_side._SIGCHLD_handler_set == flag
    finally:
        signal.signal(signal.SIGCHLD, before)
    assert runtime._mkl_threads_reader() is None


def test_one_threads_per_core_rule_counts_the_cores_this_process_may_use(monkeypatch):
    """A container's cpuset (the process's CPU affinity) caps every default thread count:
    Paddle's math threads and the demo's finishing workers (the service's helper threads:
    tests/serving/test_budget.py)."""
    from solov2.model.inference.pipeline import default_finish_workers
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    assert runtime.cpu_threads() == 8 and runtime.cpu_threads(processes=2) == 4 and runtime.cpu_threads(3) == 3
    assert default_finish_workers() == 2 and default_finish_workers(network_on_gpu=True) == 5


@pytest.mark.parametrize('files, cores', [
    ({'cpu.max': '200000 100000\n'}, 2),                                   # cgroup v2: docker run --cpus 2
    ({'cpu.max': '150000 100000\n'}, 1),                                   # --cpus 1.5: whole CPUs
    ({'cpu.max': '50000 100000\n'}, 1),                                    # at least one
    ({'cpu.max': 'max 100000\n'}, 64),                                     # no quota
    ({'cpu/cpu.cfs_quota_us': '400000\n', 'cpu/cpu.cfs_period_us': '100000\n'}, 4),      # cgroup v1
    ({'cpu,cpuacct/cpu.cfs_quota_us': '300000\n', 'cpu,cpuacct/cpu.cfs_period_us': '100000\n'}, 3),
    ({'cpu/cpu.cfs_quota_us': '-1\n', 'cpu/cpu.cfs_period_us': '100000\n'}, 64),           # v1, no quota
    ({}, 64),                                                               # no cgroup files
])
def test_threads_count_the_cpu_quota_of_the_container(monkeypatch, tmp_path, files, cores):
    """A container's CPU quota caps the default thread counts as its cpuset does: ``--cpus 2`` on a
    64-core host runs 2 math threads, not 64 (and the service's readers and finishers by the same rule)."""
    from solov2.model.inference.pipeline import default_finish_workers
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(runtime, 'CGROUP', tmp_path)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(64)), raising=False)
    monkeypatch.delenv('PADDLE_LOCAL_SIZE', raising=False)
    assert runtime.cpu_threads() == cores and runtime.cpu_threads(processes=2) == max(1, cores // 2)
    assert runtime.cpu_threads(5) == 5 and default_finish_workers() == max(1, cores // 4)


def test_finishing_workers_are_each_launched_processs_share_of_the_cores(monkeypatch):
    """Under ``paddle.distributed.launch`` (``PADDLE_LOCAL_SIZE`` processes on the machine) each
    process's default finishing workers count its share of the cores: 8 GPU processes on 32 cores
    start 1 each, not 29 (all but three of the machine's) each."""
    from solov2.model.inference.pipeline import default_finish_workers
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(32)), raising=False)
    monkeypatch.delenv('PADDLE_LOCAL_SIZE', raising=False)
    assert (default_finish_workers(network_on_gpu=True), default_finish_workers()) == (29, 8)
    monkeypatch.setenv('PADDLE_LOCAL_SIZE', '8')
    assert (default_finish_workers(network_on_gpu=True), default_finish_workers()) == (1, 1)
    monkeypatch.setenv('PADDLE_LOCAL_SIZE', '2')
    assert (default_finish_workers(network_on_gpu=True), default_finish_workers()) == (13, 4)
    assert runtime.launched_here() == 2


def test_tf32_off_turns_off_the_cublas_flag_a_gpu_build_reads_at_each_call(monkeypatch):
    """A GPU build of Paddle 3.3 (its flags stood in for): cuBLAS takes its math mode from
    ``FLAGS_cublas_allow_tf32`` at each call, so ``tf32_off('cublas')`` sets it False for the block and
    puts it back; a flag this build lacks (cuDNN's here) is left alone, as on a CPU wheel."""
    flags, asked = {'FLAGS_cublas_allow_tf32': True}, []

    def get_flags(names):
        if names[0] not in flags:
            raise ValueError(f'Flag {names[0]} cannot get its value through this function.')
        return {names[0]: flags[names[0]]}
    monkeypatch.setattr(runtime.paddle, 'get_flags', get_flags)
    monkeypatch.setattr(runtime.paddle, 'set_flags', lambda values: asked.append(dict(values)) or flags.update(values))
    with runtime.tf32_off('cublas', 'cudnn'):
        assert flags == {'FLAGS_cublas_allow_tf32': False}
    assert flags == {'FLAGS_cublas_allow_tf32': True} and asked == [{'FLAGS_cublas_allow_tf32': False},
                                                                     {'FLAGS_cublas_allow_tf32': True}]
