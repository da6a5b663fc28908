"""Batching across requests: pictures of concurrent requests that share the call's thresholds run
through the network together in the batches ``backend.share_batches`` groups them in, on one thread.
The oldest waiting picture waits up to ``max_wait_s`` for others while ``coming()`` says more are on
their way (a request alone runs at once); a future cancelled before its batch starts is dropped.
"""
import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Deque, List, Optional

import numpy as np

from solov2.api.segmenter import Segmenter
from solov2.core.errors import RunError
from solov2.model.inference.backend import share_batches
from solov2.model.inference.postprocess import InferenceParams

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)      # each job is itself: the queue removes it by identity
class Job:
    """One picture waiting for the network: chw [3, Hp, Wp] float32, its meta, the call's params."""
    chw: np.ndarray
    meta: Any
    params: InferenceParams
    arrived: float
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


class Batcher:
    """The network thread of a service: ``submit`` from any thread, ``close`` to stop. ``on_batch(waits,
    seconds)`` after each run; ``coming()``: how many pictures are on their way (default: always some)."""

    def __init__(self, segmenter: Segmenter, max_batch: int = 4, max_wait_s: float = 0.01,
                 on_batch: Optional[Callable[[List[float], float], None]] = None, *, max_padding: float = 0.0,
                 coming: Callable[[], int] = lambda: 1):
        self.segmenter, self.max_batch, self.max_wait_s = segmenter, max_batch, max_wait_s
        self.max_padding, self.coming = max_padding, coming
        self.on_batch = on_batch or (lambda waits, seconds: None)
        self._jobs: Deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name='solov2-serve-network', daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Pictures waiting for the network."""
        return len(self._jobs)

    def submit(self, chw: np.ndarray, meta: Any, params: InferenceParams) -> concurrent.futures.Future:
        """Queue a prepared picture (``Predictor.prepare``'s chw [3, Hp, Wp] and meta); the
        future gives its network output for ``Predictor.finish``."""
        job = Job(chw, meta, params, time.monotonic())
        with self._wake:
            if self._closed:
                raise RunError('the service is stopping')
            self._jobs.append(job)
            self._wake.notify()
        return job.future

    def close(self, timeout_s: float = 30.0) -> None:
        """Run what is queued, then stop the network thread (waiting up to ``timeout_s``)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout_s)

    def _take(self) -> List[Job]:
        """The next batch: the oldest job and up to ``max_batch - 1`` that join it, once full, nothing more
        is coming or the oldest has waited ``max_wait_s``; [] when closed and empty."""
        with self._wake:
            while True:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                if not self._jobs:
                    return []
                alike = [job for job in self._jobs if job.params == self._jobs[0].params]
                first = share_batches([job.chw.shape[1:] for job in alike], self.segmenter.backend, self.max_batch,
                                      self.max_padding)[0]
                batch = [alike[index] for index in first]
                left = batch[0].arrived + self.max_wait_s - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0 or self._closed or self.coming() <= 0:
                    break
                self._wake.wait(left)
            for job in batch:
                self._jobs.remove(job)
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        predictor = self.segmenter.predictor
        while True:
            batch = self._take()
            if not batch and self._closed and not self._jobs:
                return
            if not batch:
                continue
            began = time.monotonic()
            try:
                rows = predictor.network([(job.chw, job.meta) for job in batch], batch[0].params, self.max_padding)
            except Exception as exc:  # a failed run fails its own requests, never the thread
                LOG.exception('a network batch failed')
                for job in batch:
                    job.future.set_exception(exc)
                continue
            finally:
                self.on_batch([began - job.arrived for job in batch], time.monotonic() - began)
            for job, row in zip(batch, rows):
                job.future.set_result(row)
