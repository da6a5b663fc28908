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
    """The process's SIGCHLD handler as it was after the block: Paddle's first DataLoader with
    worker processes sets its own for the rest of the process (it checks its workers whenever
    any child ends; a long-lived process that later ran subprocesses was seen to crash in it),
    so it is put back, and Paddle told to set it again next time. Where it could not be put
    back, Paddle is told it is set already for the block and finds dead workers by its 5-second
    status checks alone: outside the main thread (Python sets handlers there only; Paddle's
    loader would fail), and where the handler was installed from C, which Python cannot set
    again: before Python started (``signal.getsignal`` gives None) or after
    (``set_outside_python``; off Linux such a handler reads as SIG_DFL and is replaced by it).
    The flag is Paddle's private ``_SIGCHLD_handler_set``: on a Paddle line it was not checked
    on (``internals_checked``) the block changes nothing, and Paddle's handler stays."""
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
