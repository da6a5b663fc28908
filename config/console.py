"""Console output shared by the commands: a progress line with rate and ETA."""
import sys
import threading
import time


class Progress:
    """Thread-safe progress line on stderr: count, percent, rate and ETA, redrawn at
    most twice a second; ``close`` ends the line."""

    def __init__(self, total: int, label: str = '', stream=None):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.start = self.last = time.perf_counter()
        self.lock = threading.Lock()

    def update(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            now = time.perf_counter()
            if now - self.last >= 0.5 or self.done == self.total:
                self.last = now
                self.stream.write('\r' + self.line(now))
                self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        percent = 100 * self.done / max(self.total, 1)
        return (f'{self.label}[{self.done}/{self.total}] {percent:3.0f}% {rate:.1f} img/s '
                f'ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}')

    def close(self) -> None:
        self.stream.write('\n')
        self.stream.flush()
