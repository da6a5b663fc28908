"""Whether the service still moves: ``Liveness``, sampled on the event loop each ``SAMPLE_S``, says the predictor is
wedged when it has held pictures longer than the service's deadline without finishing one (``/healthz`` then
answers 503); ``SystemdWatchdog`` tells systemd's watchdog (``WatchdogSec=``, ``Type=notify``) that the service
lives only while the loop samples and nothing is wedged, so that systemd restarts a hung or frozen service.
"""
import asyncio
import os
import socket
import threading
import time
from typing import Callable, Optional

SAMPLE_S = 1.0          # how often the event loop samples the predictor
LATE_S = 3.0            # a loop whose last sample is older than this is stuck (no watchdog ping)


class Liveness:
    """The predictor's motion: ``held()`` its in-flight bytes (0: it holds no picture), ``moved()`` called as each
    picture's work finishes. ``wedged`` (sampled by ``watch``): why it is stuck, when it has held pictures for
    over ``stall_s`` seconds (the service's ``timeout_s``: each such picture has had its 504) without
    finishing one, else None. ``sampled_at`` (``time.monotonic``): the loop's last sample."""

    def __init__(self, stall_s: float, held: Callable[[], int], clock: Callable[[], float] = time.monotonic):
        self.stall_s, self.held, self.clock = stall_s, held, clock
        self.wedged: Optional[str] = None
        self.sampled_at = self.moved_at = clock()
        self._moved = False

    def moved(self) -> None:
        """A picture's work finished (from any thread)."""
        self._moved = True

    def sample(self) -> Optional[str]:
        """``wedged`` brought up to date: the predictor at rest or moving since the last sample resets the stall."""
        now = self.clock()
        if self._moved or not self.held():
            self._moved, self.moved_at = False, now
        stalled = now - self.moved_at
        self.wedged = (f'the predictor has held pictures for {stalled:.0f} s without finishing one (over the '
                       f'{self.stall_s:g} s deadline): it is wedged' if stalled > self.stall_s else None)
        self.sampled_at = now
        return self.wedged

    async def watch(self) -> None:
        """``sample`` every ``SAMPLE_S`` on the running event loop until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_S)

    def alive(self) -> bool:
        """The loop sampled within ``LATE_S`` and the predictor is not wedged."""
        return self.wedged is None and self.clock() - self.sampled_at < LATE_S


def notify(message: bytes, address: Optional[str] = None) -> bool:
    """Send sd_notify's ``message`` (b'READY=1', b'WATCHDOG=1') to ``address`` (default ``NOTIFY_SOCKET``; '@' is
    Linux's abstract namespace); False when there is none or it cannot be sent."""
    address = address or os.environ.get('NOTIFY_SOCKET', '')
    if not address or not hasattr(socket, 'AF_UNIX'):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(message, '\0' + address[1:] if address.startswith('@') else address)
        return True
    except OSError:
        return False


class SystemdWatchdog:
    """For ``tools/serve.py`` under systemd (a unit of ``Type=notify`` with ``WatchdogSec=``): a thread that sends
    READY=1 once ``liveness`` has sampled (the port is open), then WATCHDOG=1 each ``SAMPLE_S`` while it is
    ``alive``; nothing when systemd asked for no notification (``NOTIFY_SOCKET``) or another process's
    watchdog (``WATCHDOG_PID``)."""

    def __init__(self, liveness: Callable[[], Optional[Liveness]]):
        self.liveness = liveness
        watched = os.environ.get('WATCHDOG_PID', '')
        self.wanted = bool(os.environ.get('NOTIFY_SOCKET')) and watched in ('', str(os.getpid()))

    def start(self) -> None:
        if self.wanted:
            threading.Thread(target=self.run, name='solov2-serve-watchdog', daemon=True).start()

    def run(self) -> None:
        ready = False
        while True:              # a daemon thread: it ends with the process
            liveness = self.liveness()
            if liveness is not None and liveness.alive():
                if not ready:
                    ready = notify(b'READY=1')
                notify(b'WATCHDOG=1')
            time.sleep(SAMPLE_S)
