"""Console output shared by the commands: a progress line with rate and ETA that redraws
itself on a terminal and prints whole lines in a log file or CI output."""
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
