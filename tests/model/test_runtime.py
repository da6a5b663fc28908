"""model.runtime: freed memory kept for reuse on the CPU (glibc's malloc); Paddle's device
and threads set for a block and put back."""
import importlib
import os
import signal
import subprocess
import sys

import paddle
import pytest

from solov2.model import runtime
from solov2.model.runtime import kept_child_signal, math_threads, paddle_on
from tests.helpers import REPO_DIR

# malloc, fill and free 256 MB twice (as Paddle's CPU allocator does with a tensor); print
# the page faults of the second time
PROBE = """
import ctypes, resource, sys
sys.path.insert(0, {repo!r})
from solov2.model.runtime import malloc_keeps_freed_memory
applied = malloc_keeps_freed_memory() if {keep} else False
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def use_once():
    block = libc.malloc(2 ** 28)
    ctypes.memset(block, 1, 2 ** 28)
    libc.free(block)
use_once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
use_once()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 256 * 2 ** 20 // 4096


def _second_allocation_faults(keep: bool):
    out = subprocess.run([sys.executable, '-c', PROBE.format(repo=str(REPO_DIR), keep=keep)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == 'True', int(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason="glibc's malloc: Linux only")
def test_keep_freed_memory_reuses_freed_blocks_instead_of_fresh_pages():
    applied, kept = _second_allocation_faults(keep=True)
    _, fresh = _second_allocation_faults(keep=False)
    assert applied
    assert kept < PAGES // 20 and kept * 10 < fresh    # without it: a fresh mapping, faulted page by page


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


# what both SIGCHLD probes start with: the toolkit's path, and a dataset of two batches of two
PROBE_START = """
import signal, sys
sys.path.insert(0, {repo!r})
import numpy as np, paddle
from solov2.model.runtime import kept_child_signal

class Numbers(paddle.io.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, index):
        return np.full(2, index, np.float32)
"""


# two loaders with a worker process, each in its own kept_child_signal block; prints whether
# Paddle's SIGCHLD handler was set inside each block and whether the original is back after;
# then one in another thread (Paddle's own would fail there): its batch count, the handler kept
CHILD_SIGNAL_PROBE = PROBE_START + """
import threading

def original(signum, frame):
    pass

def load_in_a_thread():
    with kept_child_signal():
        print(len(list(paddle.io.DataLoader(Numbers(), batch_size=2, num_workers=1))))

signal.signal(signal.SIGCHLD, original)
for _ in range(2):
    with kept_child_signal():
        list(paddle.io.DataLoader(Numbers(), batch_size=2, num_workers=1))
        inside = signal.getsignal(signal.SIGCHLD) is not original
    print(inside, signal.getsignal(signal.SIGCHLD) is original)
thread = threading.Thread(target=load_in_a_thread)
thread.start()
thread.join()
print(signal.getsignal(signal.SIGCHLD) is original)
"""


def test_kept_child_signal_puts_back_the_handler_paddle_s_loader_workers_set():
    """A training run with loader workers leaves the host's SIGCHLD handler as it was, and
    Paddle's loader sets its own again in the next run (it would not by itself); in another
    thread the loader runs (Paddle's fails: Python sets handlers in the main thread only)."""
    out = subprocess.run([sys.executable, '-c', CHILD_SIGNAL_PROBE.format(repo=str(REPO_DIR))], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['True', 'True', 'True', 'True', '2', 'True']


def test_kept_child_signal_leaves_a_handler_installed_from_c_in_place(monkeypatch):
    """A SIGCHLD handler installed from C (by a program embedding Python) reads as None and
    cannot be set again from Python: Paddle's loader is kept from replacing it for the block."""
    real, getsignal = signal.getsignal(signal.SIGCHLD), signal.getsignal
    monkeypatch.setattr(signal, 'getsignal', lambda signum: None if signum == signal.SIGCHLD else getsignal(signum))
    paddle_side = importlib.import_module('paddle.io.multiprocess_utils')
    flag = paddle_side._SIGCHLD_handler_set
    with kept_child_signal():
        paddle_side._set_SIGCHLD_handler()          # what Paddle's first loader with workers does
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGCHLD) is real and paddle_side._SIGCHLD_handler_set == flag


# a SIGCHLD handler installed from C after Python started (libc's signal(), with a C function
# that is harmless as one), then a loader with a worker process in a kept_child_signal block;
# prints the batches and whether that handler is the process's after the block
C_HANDLER_PROBE = PROBE_START + """
import ctypes

libc = ctypes.CDLL(None)
libc.signal.restype, libc.signal.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_void_p]
handler = ctypes.cast(libc.getpid, ctypes.c_void_p).value
libc.signal(signal.SIGCHLD, handler)
with kept_child_signal():
    print(len(list(paddle.io.DataLoader(Numbers(), batch_size=2, num_workers=1))))
print(libc.signal(signal.SIGCHLD, handler) == handler)
"""


@pytest.mark.skipif(not os.path.isfile('/proc/self/status'), reason='set_outside_python reads /proc/self/status')
def test_kept_child_signal_leaves_a_handler_installed_from_c_after_start_in_place():
    """A SIGCHLD handler installed from C after Python started reads as SIG_DFL: it is seen
    as such (``set_outside_python``), kept from Paddle's loader for the block and not
    replaced by SIG_DFL afterwards."""
    out = subprocess.run([sys.executable, '-c', C_HANDLER_PROBE.format(repo=str(REPO_DIR))], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['2', 'True']


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
    tests/model/serving/test_batching.py)."""
    from solov2.model.inference.pipeline import default_finish_workers
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    assert runtime.cpu_threads() == 8 and runtime.cpu_threads(processes=2) == 4 and runtime.cpu_threads(3) == 3
    assert default_finish_workers() == 2 and default_finish_workers(network_on_gpu=True) == 5
