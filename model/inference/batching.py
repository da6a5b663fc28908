"""The predictor's network stage, shared by every caller: prepared pictures are submitted from any
thread and run through the network on one thread of its own, in the batches ``backend.share_batches``
groups them in (a batch gives each picture what it gives alone), those of one call's thresholds
together. A picture waits for company only while ``coming()`` says more are being prepared and at
most ``max_wait_s``; else the queue runs at once, so a caller alone waits for nobody, and callers
that arrive while a batch runs share the next one (a ``Segmenter`` used by many threads, the
service). The thread runs while there is work and ends when the queue is empty; a future cancelled
before its batch starts is dropped.
"""
import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Any, Callable, Deque, List, Sequence

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
class Job:
    """One picture waiting for the network: chw [3, Hp, Wp] float32, its meta, the call's params and
    the most pictures its caller runs at once."""
    chw: np.ndarray
    meta: Any
    params: InferenceParams
    max_batch: int
    arrived: float
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


class NetworkQueue:
    """``submit`` or ``run`` from any thread (module docstring). The network (``network(rows, params,
    max_padding)``, the predictor's) runs on one thread at a time: a caller of ``run`` that finds the
    queue idle runs it on its own thread until it is empty (a caller alone: as if there were no queue,
    on its own thread, so a training thread's evaluation stays on it), a ``submit`` that finds it
    idle starts a thread to; those that find it running wait for their futures. ``coming()``: pictures
    being prepared that will be submitted (the predictor's)."""

    def __init__(self, network: Callable[..., list], engine, batching: Batching, coming: Callable[[], int]):
        self.network, self.engine, self.batching, self.coming = network, engine, batching, coming
        self._jobs: Deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._running = False

    @property
    def depth(self) -> int:
        """Pictures waiting for the network."""
        return len(self._jobs)

    def _queue(self, jobs: List[Job]) -> bool:
        """Queue ``jobs`` together; whether the caller is to run the queue (it was idle)."""
        with self._wake:
            self._jobs.extend(jobs)
            self._wake.notify()
            claimed, self._running = not self._running, True
        return claimed

    def submit(self, chw: np.ndarray, meta: Any, params: InferenceParams) -> concurrent.futures.Future:
        """Queue a prepared picture (``Predictor.prepare``'s chw [3, Hp, Wp] and meta); the future gives
        its network output for ``Predictor.finish``."""
        job = Job(chw, meta, params, 1, time.monotonic())
        if self._queue([job]):
            threading.Thread(target=self._drain, name='solov2-network', daemon=True).start()
        return job.future

    def run(self, rows: List[Any], params: InferenceParams) -> list:
        """The network's result for each prepared picture of ``rows`` ((chw, meta)), run with the other
        callers' (one caller's pictures as one batch where they can share one); the first error raised."""
        now = time.monotonic()
        jobs = [Job(chw, meta, params, len(rows), now) for chw, meta in rows]
        if self._queue(jobs):
            self._drain(mine=jobs)
        return [job.future.result() for job in jobs]

    def _take(self) -> List[Job]:
        """The next batch: the oldest job and those that join it, once full, nothing is coming or the
        oldest has waited ``max_wait_s``; [] when the queue is empty (the runner then stops)."""
        with self._wake:
            while True:
                if not self._jobs:
                    self._running = False
                    return []
                most = max(self.batching.max_batch, self._jobs[0].max_batch)
                alike = [job for job in self._jobs if job.params == self._jobs[0].params]
                first = share_batches([job.chw.shape[1:] for job in alike], self.engine, most,
                                      self.batching.max_padding)[0]
                batch = [alike[index] for index in first]
                left = batch[0].arrived + self.batching.max_wait_s - time.monotonic()
                if len(batch) >= most or left <= 0 or self.coming() <= 0:
                    break
                self._wake.wait(left)
            for job in batch:
                self._jobs.remove(job)
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _drain(self, mine: Sequence[Job] = ()) -> None:
        """Run batches until the queue is empty, or for a caller, until its own pictures (``mine``) are done,
        the rest then handed to a thread (so no caller waits on the others' pictures). A failure anywhere in a
        batch (forming it, the network, ``on_batch``) is its pictures' and the queue runs on; an interrupt of a
        caller running the queue fails its batch and ends its run, after the same hand-over."""
        try:
            while self._running:
                if mine and all(job.future.done() for job in mine):
                    return self._hand_over()
                self._serve_one()
        except BaseException:
            self._hand_over()
            raise

    def _serve_one(self) -> None:
        """Take the next batch and run it, its pictures failing with the reason when either fails (a batch that
        cannot be formed: its oldest picture)."""
        batch: List[Job] = []
        try:
            batch = self._take()
            if batch:
                self._run(batch)
        except BaseException as exc:
            for job in batch or self._drop_oldest(exc):
                if not job.future.done():
                    job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    def _run(self, batch: List[Job]) -> None:
        """The network on ``batch``, each picture's future given its row; ``on_batch`` told the waits and time."""
        began = time.monotonic()
        try:
            rows = self.network([(job.chw, job.meta) for job in batch], batch[0].params, self.batching.max_padding)
            if len(rows) != len(batch):
                raise RuntimeError(f'the network gave {len(rows)} results for a batch of {len(batch)} pictures')
        finally:
            self.batching.on_batch([began - job.arrived for job in batch], time.monotonic() - began)
        for job, row in zip(batch, rows):
            job.future.set_result(row)

    def _drop_oldest(self, exc: BaseException) -> List[Job]:
        """The oldest job, out of the queue, to fail with ``exc`` (a batch could not be formed); [] after an
        interrupt or when none waits."""
        with self._wake:
            job = self._jobs.popleft() if self._jobs and isinstance(exc, Exception) else None
        return [job] if job is not None and job.future.set_running_or_notify_cancel() else []

    def _hand_over(self) -> None:
        """Leave running the queue: to a thread of its own while pictures wait, else idle."""
        with self._wake:
            self._running = bool(self._jobs)
            if self._running:
                threading.Thread(target=self._drain, name='solov2-network', daemon=True).start()
