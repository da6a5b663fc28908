"""Console output shared by the commands: a progress line with rate and ETA that redraws
itself on a terminal and prints whole lines in a log file or CI output."""
import os
import sys
import threading
import time


def is_terminal(stream) -> bool:
    """True when ``stream`` is an interactive terminal (a live line can redraw itself)."""
    isatty = getattr(stream, 'isatty', None)
    return bool(isatty and isatty())


class Progress:
    """Thread-safe progress on stderr: count, percent, rate and ETA. On a terminal one line
    redrawn at most twice a second; elsewhere (a log file, CI) a whole line every
    ``every_s`` seconds and at the end, never a carriage return. ``close`` ends it."""

    def __init__(self, total: int, label: str = '', stream=None, every_s: float = 10.0):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.live = is_terminal(self.stream)
        self.interval = 0.5 if self.live else every_s
        self.start = self.last = time.perf_counter()
        self.lock = threading.Lock()

    def update(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            now = time.perf_counter()
            if now - self.last >= self.interval or self.done == self.total:
                self.last = now
                self.stream.write('\r' + self.line(now) if self.live else self.line(now) + '\n')
                self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        percent = 100 * self.done / max(self.total, 1)
        return (f'{self.label}[{self.done}/{self.total}] {percent:3.0f}% {rate:.1f} img/s '
                f'ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}')

    def close(self) -> None:
        if self.live:
            self.stream.write('\n')
            self.stream.flush()


def open_visualdl(logdir: str):
    """A VisualDL ``LogWriter`` on ``logdir`` (ValueError naming the install command when
    the ``visualdl`` package is missing). Close it with ``.close()``."""
    try:
        from visualdl import LogWriter
    except ImportError:
        raise ValueError('--vdl-dir needs VisualDL: pip install visualdl')
    return LogWriter(logdir=str(logdir))


DEBUG_FLAG = '--debug'
DEBUG_ENV = 'SOLOV2_DEBUG'


class UsageError(Exception):
    """A bad command line, input file or output path: one line on stderr, exit code 2."""


_status = {'note': None}


def set_status(note) -> None:
    """Register a callable returning what the command has done so far and where its
    output is; Ctrl-C prints it in the one line that ends the command."""
    _status['note'] = note


def error_line(exc: BaseException) -> str:
    """``error: <what> — <what to do>`` for ``exc``, on one line (KeyError without quotes)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = ' '.join(str(text).split()) or type(exc).__name__
    return f'error: {text}'


def run_command(main, argv=None, usage_errors=(), stream=None) -> int:
    """Run ``main(argv)`` as a command: exceptions become one line on stderr (exit 2 for
    UsageError, ValueError, KeyError, FileNotFoundError and ``usage_errors``; exit 1 for any
    other failure), Ctrl-C one line with the status (exit 130). ``--debug`` in ``argv`` (taken
    out before ``main`` sees it) or SOLOV2_DEBUG=1 re-raises with the full traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, '') not in ('', '0')
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    stream = stream or sys.stderr
    set_status(None)
    try:
        return main(argv)
    except KeyboardInterrupt:
        note = _status['note']() if _status['note'] else 'nothing was written'
        print(f'\ninterrupted (Ctrl-C): {note}', file=stream)
        return 130
    except (UsageError, ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            *usage_errors) as exc:
        if debug:
            raise
        print(error_line(exc), file=stream)
        return 2
    except Exception as exc:  # a runtime failure: one line, the traceback only with --debug
        if debug:
            raise
        line = error_line(exc)
        if not isinstance(exc, OSError):
            line = f'error: {type(exc).__name__}: {line[len("error: "):]}'
        print(f'{line} (rerun with {DEBUG_FLAG} for the traceback)', file=stream)
        return 1
