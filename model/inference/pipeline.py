"""Three-stage pipeline: load in worker threads, run the model on the calling
thread, finish (post-process, encode, draw, save) in worker threads, so the model never
waits for I/O or post-processing. Reports how busy the model stage was. OpenCV's and numpy's
BLAS (OpenBLAS) threads are the process's, left as they are: a program limits them to one
(``model.tuning.tune_process(helper_threads=1)``, as demo.py and eval.py do) so that every
worker takes at most one core and the network's own math threads keep the others."""
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from solov2.model.runtime import cpu_threads


@dataclass
class PipelineStats:
    """Counts and timings of one run (seconds)."""
    done: int = 0
    failed: List[Tuple[Any, str]] = field(default_factory=list)
    wall: float = 0.0
    model_busy: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.done / self.wall if self.wall > 0 else 0.0

    @property
    def busy_fraction(self) -> float:
        return self.model_busy / self.wall if self.wall > 0 else 0.0


def default_finish_workers(cores: Optional[int] = None, network_on_gpu: bool = False) -> int:
    """Finishing workers, at least one. With the network on the CPU: a quarter of the cores
    (post-processing of an image takes a fraction of the network's time on one core,
    docs/benchmark.md, so a few workers keep up while the network keeps most cores). With
    the network and the post-processing on a GPU the cores are free: all but three (the
    network's thread and two loaders) encode and draw."""
    cores = cores or cpu_threads()
    return max(1, cores - 3 if network_on_gpu else cores // 4)


IN_FLIGHT_SHARE = 48 * 2 ** 20    # in-flight bytes for each finishing worker and one more (run_pipeline)


def array_bytes(value: Any) -> int:
    """Bytes of the numpy arrays in ``value``: an array, or tuples, lists and dicts of them (nested)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(array_bytes(part) for part in value)
    return sum(array_bytes(part) for part in value.values()) if isinstance(value, dict) else 0


def run_pipeline(items: Iterable[Any], load: Callable[[Any], Any], model: Callable[[Any], Any],
                 finish: Callable[[Any, Any, Any], None], load_workers: int = 2,
                 finish_workers: Optional[int] = None, prefetch: int = 4,
                 in_flight_bytes: Optional[int] = None) -> PipelineStats:
    """For each item: ``loaded = load(item)`` (worker), ``out = model(loaded)`` (this
    thread, in item order), ``finish(item, loaded, out)`` (worker; ``finish_workers``
    of them, default ``default_finish_workers()``).

    At most ``prefetch`` loads run or wait ahead of the model, and the items loaded and not
    yet finished hold about ``in_flight_bytes`` of arrays at most (``array_bytes`` of what
    ``load`` returned; a load under way counts as much as the last one; one item is always
    let through; default ``IN_FLIGHT_SHARE`` for each finishing worker and one more: a
    12 MP photo, 34 MiB, finishing on each and one read ahead): large pictures wait to be
    read while earlier ones are finished, small ones never do. A ``load`` that raises skips
    the item and records (item, message) in ``stats.failed``; errors in ``model`` or
    ``finish`` propagate.
    """
    stats = PipelineStats()
    for _ in stream_pipeline(items, load, model, finish, stats, load_workers, finish_workers, prefetch, window=None,
                             in_flight_bytes=in_flight_bytes):
        pass
    return stats


def stream_pipeline(items: Iterable[Any], load: Callable[[Any], Any], model: Callable[[Any], Any],
                    finish: Callable[[Any, Any, Any], Any], stats: Optional[PipelineStats] = None,
                    load_workers: int = 2, finish_workers: Optional[int] = None, prefetch: int = 4,
                    window: Optional[int] = 8, in_flight_bytes: Optional[int] = None) -> Iterator[Tuple[Any, Any]]:
    """``run_pipeline`` as a generator: yields ``(item, finish(item, loaded, out))`` in item
    order, skipped items left out (and recorded in ``stats.failed``). At most ``window``
    finished items wait for the consumer (None: no bound, the model never waits)."""
    stats = stats if stats is not None else PipelineStats()
    finish_workers = finish_workers or default_finish_workers()
    budget = in_flight_bytes if in_flight_bytes is not None else IN_FLIGHT_SHARE * (finish_workers + 1)
    yield from _run(items, load, model, finish, load_workers, finish_workers, prefetch, window, budget, stats)


def _run(items, load, model, finish, load_workers: int, finish_workers: int, prefetch: int,
         window: Optional[int], budget: int, stats: PipelineStats) -> Iterator[Tuple[Any, Any]]:
    start = time.perf_counter()
    pending: deque = deque()       # (item, load future)
    finishing: deque = deque()     # (item, finish future, bytes of its loaded arrays)
    last = None                    # bytes of the last item loaded: what a load under way will hold

    def held() -> int:
        return (last or 0) * len(pending) + sum(size for *_, size in finishing)

    def must_wait() -> bool:       # for the oldest finish: memory over, nothing to load, or too many done
        return (held() > budget or (not pending and held() + (last or 0) > budget)
                or (window is not None and len(finishing) > window))

    with ThreadPoolExecutor(load_workers) as loaders, ThreadPoolExecutor(finish_workers) as finishers:
        iterator = iter(items)
        while True:
            while finishing and (finishing[0][1].done() or must_wait()):
                done_item, done, _ = finishing.popleft()
                yield done_item, done.result()
            # loads ahead: the first one alone (its size unknown), then as many as fit
            while len(pending) < prefetch and (not (pending or finishing) or (
                    last is not None and held() + last <= budget)):
                item = next(iterator, StopIteration)
                if item is StopIteration:
                    break
                pending.append((item, loaders.submit(load, item)))
            if not pending:
                break
            item, future = pending.popleft()
            try:
                loaded = future.result()
            except Exception as exc:  # a bad input is reported and skipped
                stats.failed.append((item, str(exc)))
                continue
            last = array_bytes(loaded)
            began = time.perf_counter()
            out = model(loaded)
            stats.model_busy += time.perf_counter() - began
            finishing.append((item, finishers.submit(finish, item, loaded, out), last))
            del loaded, out           # the finisher holds them now, and lets go when done
            stats.done += 1
        while finishing:
            done_item, done, _ = finishing.popleft()
            yield done_item, done.result()
    stats.wall = time.perf_counter() - start
