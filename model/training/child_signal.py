"""The process's SIGCHLD handler kept from Paddle's DataLoader worker processes, which set
their own for the rest of the process (``kept_child_signal``, around a training run)."""
import contextlib
import importlib
import signal
import threading
from typing import Iterator

from solov2.config.install import internals_checked


def set_outside_python(signum: int) -> bool:
    """Whether the process's disposition of ``signum`` is not the one ``signal.getsignal``
    reports as SIG_DFL or SIG_IGN: a handler (or ignore) installed from C after Python
    started, which Python still reads as what it found at start. Read from the caught and
    ignored masks of /proc/self/status (Linux; False where it cannot be read)."""
    reported = signal.getsignal(signum)
    if reported not in (signal.SIG_DFL, signal.SIG_IGN):
        return False
    try:
        with open('/proc/self/status') as file:
            status = dict(line.split(':', 1) for line in file if ':' in line)
        caught, ignored = ((int(status[key], 16) >> (signum - 1)) & 1 for key in ('SigCgt', 'SigIgn'))
    except (OSError, KeyError, ValueError):
        return False
    return bool(caught) or bool(ignored) != (reported == signal.SIG_IGN)


@contextlib.contextmanager
def kept_child_signal() -> Iterator[None]:
    """The process's SIGCHLD handler put back after the block: Paddle's first DataLoader with workers
    sets its own for good (a long-lived process was seen to crash in it). Where it cannot be put back
    (outside the main thread; a handler installed from C, ``set_outside_python``), Paddle is told it is
    set already and finds dead workers by its status checks. Through Paddle's private
    ``_SIGCHLD_handler_set``: on an unchecked Paddle line (``internals_checked``) nothing changes."""
    if not hasattr(signal, 'SIGCHLD') or not internals_checked():
        yield
        return
    paddle_side = importlib.import_module('paddle.io.multiprocess_utils')
    flag = paddle_side._SIGCHLD_handler_set
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGCHLD) if main and not set_outside_python(signal.SIGCHLD) else None
    if handler is None:
        paddle_side._SIGCHLD_handler_set = True
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGCHLD, handler)
        paddle_side._SIGCHLD_handler_set = flag
