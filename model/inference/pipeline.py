"""The one way pictures go through a backend (``run_pictures``): read and prepared in worker
threads, the network on the calling thread in batches of one padded size (``run_network``),
the instances pasted, and what the caller does with them, in worker threads; results in input
order. The API, demo.py and eval.py all run it. Reports how busy the network was. OpenCV's and
numpy's BLAS (OpenBLAS) threads are the process's, left as they are: a program limits them to
one (``model.tuning.tune_process(helper_threads=1)``, as demo.py and eval.py do) so that every
worker takes at most one core and the network's own math threads keep the others."""
import itertools
import numbers
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from solov2.core.errors import InputError
from solov2.data.transforms import ImageMeta
from solov2.model.inference.backend import run_network
from solov2.model.inference.postprocess import Detections, InferenceParams


@dataclass
class PipelineStats:
    """Pictures done and timings of one run (seconds)."""
    done: int = 0
    wall: float = 0.0
    model_busy: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0

    @property
    def busy_fraction(self) -> float:
        return self.model_busy / self.wall if self.wall > 0 else 0.0


class Prepared(NamedTuple):
    """A picture read and preprocessed: ``image`` [H, W, 3] uint8 RGB, ``chw`` [3, Hp, Wp] float32."""
    image: np.ndarray
    chw: np.ndarray
    meta: ImageMeta


IN_FLIGHT_SHARE = 64 * 2 ** 20    # in-flight bytes for each finishing worker and one more (run_pictures)


def at_least_one(name: str, value: Any) -> int:
    """``value`` as an int; InputError naming ``name`` unless it is a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f'{name} must be a whole number of at least 1, not {value!r}')
    return int(value)


def array_bytes(value: Any) -> int:
    """Bytes of the numpy arrays in ``value``: an array, or tuples, lists and dicts of them (nested)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    parts = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    return sum(array_bytes(part) for part in parts)


def chunks(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    """``items`` in lists of ``size`` (the last one may be shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def run_pictures(items: Iterable[Any], read: Callable[[Any], np.ndarray], backend,
                 finish: Callable[[Any, Prepared, Detections], Any] = lambda item, prepared, found: found,
                 params: Optional[InferenceParams] = None, batch_size: int = 1, stats: Optional[PipelineStats] = None,
                 window: int = 8, in_flight_bytes: Optional[int] = None,
                 cost: Callable[[Any], Optional[int]] = lambda item: None) -> Generator[Tuple[Any, Any], None, None]:
    """``(item, result)`` for each of ``items``, in their order: ``read(item)`` ([H, W, 3]
    uint8 RGB) and ``backend.prepare`` in two loading workers; the network on this thread,
    ``batch_size`` items to a call, in the batches ``run_network`` groups them in (one padded
    size, ``params`` on a GPU); the result ``finish(item, prepared, detections)`` (default the
    detections: ``backend.finish_stage`` with ``params``) in ``backend.finish_workers()``
    workers. An item whose read or prepare raised has that exception as its result; errors in
    the network or ``finish`` propagate. At most ``window`` pictures finished wait for the
    consumer, and the pictures read and not yet finished hold about ``in_flight_bytes`` of
    arrays at most (a load counts, until it is done, as ``cost(item)`` says its items will hold
    at their peak, read from their headers, else as much as the last load held; one batch is
    always let through; default ``IN_FLIGHT_SHARE`` for each finishing worker and one more: a
    12 MP photo, 36 MB, finishing on each and one being decoded, 89 MB at its peak): large pictures
    wait to be read while earlier ones are finished, small ones never do. ``stats`` gets the counts and timings."""
    size = at_least_one('batch_size', batch_size)
    backend.check_batch(size)

    def load(chunk):
        return [_prepare(backend, read, item) for item in chunk]

    def model(loaded):
        return run_network(backend, [(p.chw, p.meta) for p in loaded if isinstance(p, Prepared)], params)

    def finish_chunk(chunk, loaded, rows):
        rows = iter(rows)
        return [(item, p if not isinstance(p, Prepared) else finish(item, p, backend.finish_stage(next(rows), p.meta,
                                                                                                   params)))
                for item, p in zip(chunk, loaded)]

    workers = backend.finish_workers()
    budget = in_flight_bytes if in_flight_bytes is not None else IN_FLIGHT_SHARE * (workers + 1)
    for done in _run(chunks(items, size), load, model, finish_chunk, workers, max(2, 4 // size),
                     max(2, window // size), budget, stats if stats is not None else PipelineStats(), cost):
        yield from done


def _prepare(backend, read: Callable[[Any], np.ndarray], item: Any):
    try:
        image = read(item)
        return Prepared(image, *backend.prepare(image))
    except Exception as exc:  # a bad input is reported by the caller, not fatal to the others
        return exc


def _run(chunks_in: Iterable[list], load, model, finish, finish_workers: int, prefetch: int, window: int,
         budget: int, stats: PipelineStats, cost: Callable[[Any], Optional[int]]) -> Iterator[list]:
    """``finish(chunk, loaded, model(loaded))`` for each chunk, in order, ``loaded = load(chunk)``."""
    start = time.perf_counter()
    pending: deque = deque()       # (chunk, load future, bytes it will hold)
    finishing: deque = deque()     # (finish future, bytes of its loaded arrays)
    last = None                    # bytes of the last chunk loaded: what a load of unknown cost will hold
    upcoming, costs = None, []     # the next chunk to load, and what its items will hold (cost)

    def coming() -> int:           # what loading the next chunk will hold: unknown before any load, the budget
        return 0 if upcoming is None else sum(costs) if None not in costs else budget if last is None else last

    def held() -> int:
        return sum(size for *_, size in pending) + sum(size for _, size in finishing)

    def must_wait() -> bool:       # for the oldest finish: memory over, nothing to load, or too many done
        return held() > budget or (not pending and held() + coming() > budget) or len(finishing) > window

    with ThreadPoolExecutor(2) as loaders, ThreadPoolExecutor(finish_workers) as finishers:
        iterator = iter(chunks_in)
        while True:
            while finishing and (finishing[0][0].done() or must_wait()):
                yield finishing.popleft()[0].result()
            # loads ahead: each alone or as many as fit
            while len(pending) < prefetch:
                if upcoming is None and (upcoming := next(iterator, None)) is not None:
                    costs = [cost(item) for item in upcoming]
                if upcoming is None or (pending or finishing) and held() + coming() > budget:
                    break
                pending.append((upcoming, loaders.submit(load, upcoming), coming()))
                upcoming = None
            if not pending:
                break
            chunk, future, _ = pending.popleft()
            loaded = future.result()
            last = array_bytes(loaded)
            began = time.perf_counter()
            out = model(loaded)
            stats.model_busy += time.perf_counter() - began
            finishing.append((finishers.submit(finish, chunk, loaded, out), last))
            stats.done += sum(isinstance(p, Prepared) for p in loaded)
            del loaded, out           # the finisher holds them now, and lets go when done
        while finishing:
            yield finishing.popleft()[0].result()
    stats.wall = time.perf_counter() - start
