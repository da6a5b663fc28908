"""model.training.child_signal: the host's SIGCHLD handler kept from Paddle's DataLoader
worker processes, also one installed from C."""
import importlib
import os
import signal
import subprocess
import sys

import pytest

from solov2.model.training.child_signal import kept_child_signal
from tests.helpers import REPO_DIR

# what both SIGCHLD probes start with: the toolkit's path, and a dataset of two batches of two
PROBE_START = """
import signal, sys
sys.path.insert(0, {repo!r})
import numpy as np, paddle
from solov2.model.training.child_signal import kept_child_signal

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
