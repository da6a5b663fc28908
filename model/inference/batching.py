"""The predictor's network stage, shared by every caller: prepared pictures are submitted from any
thread and run through the network on one thread at a time (a waiting caller's, else one of its own), in
the batches ``backend.share_batches``
groups them in (a batch gives each picture what it gives alone), those of one call's thresholds
together. A picture waits for company only while ``coming()`` says more are being prepared and at
most ``max_wait_s``; else the queue runs at once, so a caller alone waits for nobody, and callers
that arrive while a batch runs share the next one (a ``Segmenter`` used by many threads, the
service). The thread runs while there is work and ends when the queue is empty; a future cancelled
before its batch starts is dropped.
"""
import collections
import concurrent.futures
import contextlib
import dataclasses
import threading
import time
from typing import Any, Callable, Deque, Iterator, List, Optional

import numpy as np

from solov2.model.inference.backend import share_batches
from solov2.model.inference.postprocess import InferenceParams


@dataclasses.dataclass(frozen=True)
class Batching:
    """How pictures of several callers share network runs: at most ``max_batch`` a run (a caller's own
    batch may be larger), pictures of different padded sizes together where the batch then holds at
    most 1 + ``max_padding`` times their own pixels, the oldest waiting up to ``max_wait_s`` while
    pictures are coming (the queue's ``coming()``); ``on_batch(waits, seconds)`` after each run."""
    max_batch: int = 4
    max_wait_s: float = 0.0
    max_padding: float = 0.0
    on_batch: Callable[[List[float], float], None] = lambda waits, seconds: None


@dataclasses.dataclass(eq=False)      # each job is itself: the queue removes it by identity
class Group:
    """Pictures one caller runs as one batch (``Predictor.run_pictures``' ``batch_size``): the queue waits for
    all of them, ``coming`` those not yet submitted (each submitted, or ``NetworkQueue.left`` when one will not
    come: its read failed). Other callers' pictures may join its batch, the same ``caller``'s next groups not."""

    def __init__(self, size: int, caller: object):
        self.size = self.coming = size
        self.caller = caller

    def joins(self, other: Optional['Group']) -> bool:
        """Whether a picture of ``other`` may run in a batch of this group's (the same group, no group, or
        another caller's)."""
        return other is self or other is None or other.caller is not self.caller


@dataclasses.dataclass(eq=False)      # each job is itself: the queue removes it by identity
class Job:
    """One picture waiting for the network: chw [3, Hp, Wp] float32, its meta, the call's params and
    the pictures its caller runs with it as one batch (``group``)."""
    chw: np.ndarray
    meta: Any
    params: InferenceParams
    group: Optional[Group]
    arrived: float
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


class NetworkQueue:
    """``submit`` from any thread (module docstring). The network (``network(rows, params, max_padding)``, the
    predictor's) runs on one thread at a time: a caller waiting for its pictures (``serve``, within
    ``hosting``) runs it on its own thread while nobody else does (a caller alone: as if there were no queue,
    on its own thread, so a training thread's evaluation stays on it), else a ``submit`` that finds it idle
    starts a thread to; the others wait for their futures. ``coming()``: pictures being prepared that will
    be submitted (the predictor's)."""

    def __init__(self, network: Callable[..., list], engine, batching: Batching, coming: Callable[[], int]):
        self.network, self.engine, self.batching, self.coming = network, engine, batching, coming
        self._jobs: Deque[Job] = collections.deque()
        # Held with the C lock's own ``with`` (not the Condition's, a Python call): an interrupt of a caller's thread
        # can then never leave it held (the acquire and the block's set-up are one step).
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._running, self._hosts = False, 0
        self._runner: Optional[int] = None       # the host thread that claimed the queue (None: a thread of its own)
        self._taken: List[Job] = []              # the batch being run, out of the queue
        self._busy = threading.local()          # seconds this thread ran the network (``serve``'s answer)

    @property
    def depth(self) -> int:
        """Pictures waiting for the network."""
        return len(self._jobs)

    def submit(self, chw: np.ndarray, meta: Any, params: InferenceParams, group: Optional[Group] = None
               ) -> concurrent.futures.Future:
        """Queue a prepared picture (``Predictor.prepare``'s chw [3, Hp, Wp] and meta), one of ``group``; the
        future gives its network output for ``Predictor.finish``."""
        job = Job(chw, meta, params, group, time.monotonic())
        with self._lock:
            self._jobs.append(job)
            self.settled(group)
            self._start_thread()
        return job.future

    def settled(self, group: Optional[Group]) -> None:
        """One picture of ``group`` is no longer coming: submitted, or never (its read failed; the others then
        run without it)."""
        with self._lock:
            if group is not None:
                group.coming -= 1
            self._wake.notify_all()

    def abandon(self, caller: object) -> None:
        """``caller``'s pictures are called off: its batches in the queue wait for none of them still to come
        (an interrupt may have kept some from being submitted)."""
        with self._lock:
            for job in self._jobs:
                if job.group is not None and job.group.caller is caller:
                    job.group.coming = 0
            self._wake.notify_all()

    def _start_thread(self, hosts: int = 0) -> None:
        """(Holding ``_lock``) start a thread to run the queue while pictures wait, nobody runs it and no host
        but ``hosts`` (the caller) is there to."""
        if self._jobs and not self._running and self._hosts <= hosts:
            self._running, self._runner = True, None
            threading.Thread(target=self._drain, name='solov2-network', daemon=True).start()

    @contextlib.contextmanager
    def hosting(self) -> Iterator[None]:
        """While the block runs, this thread is a host: pictures submitted meanwhile wait for its ``serve``
        rather than start a thread; after it, those left wait for a thread. An interrupt between this thread's
        claiming the queue and running it leaves no claim behind."""
        with self._lock:
            self._hosts += 1
        try:
            yield
        finally:
            with self._lock:
                self._hosts -= 1
                if self._running and self._runner == threading.get_ident():
                    self._running = False
                self._start_thread()

    def serve(self, done: concurrent.futures.Future) -> float:
        """Run the queue on this thread (within ``hosting``) whenever nobody else does, until ``done`` is; the
        seconds this thread ran the network meanwhile."""
        self._busy.seconds = 0.0
        done.add_done_callback(lambda _: self.settled(None))         # wakes this thread
        while not done.done():
            with self._lock:
                claimed = not self._running and bool(self._jobs)
                if claimed:
                    self._running, self._runner = True, threading.get_ident()
                elif not done.done():
                    self._wake.wait()
            if claimed:
                self._drain(done)
        return self._busy.seconds

    def _take(self) -> List[Job]:
        """The next batch: the oldest job and those that join it, once full, or once its group is all here and
        nothing is coming or it has waited ``max_wait_s``; [] when the queue is empty (the runner then stops)."""
        with self._lock:
            while True:
                if not self._jobs:
                    self._running = False
                    return []
                head = self._jobs[0]
                most = max(self.batching.max_batch, head.group.size if head.group else 1)
                alike = [job for job in self._jobs if job.params == head.params and (
                    head.group is None or head.group.joins(job.group))]
                first = share_batches([job.chw.shape[1:] for job in alike], self.engine, most,
                                      self.batching.max_padding)[0]
                batch = [alike[index] for index in first]
                left = batch[0].arrived + self.batching.max_wait_s - time.monotonic()
                company = head.group is not None and head.group.coming > 0       # its caller's, being read
                if len(batch) >= most or not company and (left <= 0 or self.coming() <= 0):
                    break
                self._wake.wait(None if company else left)
            self._jobs, self._taken = collections.deque(job for job in self._jobs if job not in batch), batch
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _drain(self, until: Optional[concurrent.futures.Future] = None) -> None:
        """Run batches until the queue is empty, or for a host, until ``until`` is done, the rest then handed
        to a thread (so no caller waits on the others' pictures). A failure anywhere in a
        batch (forming it, the network, ``on_batch``) is its pictures' and the queue runs on; an interrupt of a
        caller running the queue fails its batch and ends its run, after the same hand-over."""
        try:
            while self._running:
                if until is not None and until.done():
                    return self._hand_over()
                self._serve_one()
        except BaseException:
            self._hand_over()
            raise

    def _serve_one(self) -> None:
        """Take the next batch and run it, its pictures failing with the reason when either fails (a batch that
        cannot be formed: its oldest picture)."""
        try:              # the batch taken (``_taken``) fails with the reason whatever the moment of the failure
            batch = self._take()
            if batch:
                self._run(batch)
        except BaseException as exc:
            with self._lock:
                if not self._taken and self._jobs and isinstance(exc, Exception):
                    self._taken = [self._jobs.popleft()]
            for job in self._taken:
                if not job.future.done():
                    job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._taken = []

    def _run(self, batch: List[Job]) -> None:
        """The network on ``batch``, each picture's future given its row; ``on_batch`` told the waits and time."""
        began = time.monotonic()
        try:
            rows = self.network([(job.chw, job.meta) for job in batch], batch[0].params, self.batching.max_padding)
            if len(rows) != len(batch):
                raise RuntimeError(f'the network gave {len(rows)} results for a batch of {len(batch)} pictures')
        finally:
            seconds = time.monotonic() - began
            self._busy.seconds = getattr(self._busy, 'seconds', 0.0) + seconds
            self.batching.on_batch([began - job.arrived for job in batch], seconds)
        for job, row in zip(batch, rows):
            job.future.set_result(row)

    def _hand_over(self) -> None:
        """Leave running the queue (a host whose pictures are done): to another host while one waits, else to
        a thread of its own while pictures wait, else idle."""
        with self._lock:
            self._running = False
            self._wake.notify_all()
            self._start_thread(hosts=1)
