"""Three-stage pipeline: load in worker threads, run the model on the calling
thread, finish (encode, draw, save) in worker threads, so the model never waits
for I/O. Reports how busy the model stage was."""
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Tuple


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


def run_pipeline(items: Iterable[Any], load: Callable[[Any], Any], model: Callable[[Any], Any],
                 finish: Callable[[Any, Any, Any], None], load_workers: int = 2,
                 finish_workers: int = 2, prefetch: int = 4) -> PipelineStats:
    """For each item: ``loaded = load(item)`` (worker), ``out = model(loaded)`` (this
    thread, in item order), ``finish(item, loaded, out)`` (worker).

    A ``load`` that raises skips the item and records (item, message) in
    ``stats.failed``; errors in ``model`` or ``finish`` propagate.
    """
    stats = PipelineStats()
    start = time.perf_counter()
    pending: deque = deque()
    finishing: List[Future] = []
    with ThreadPoolExecutor(load_workers) as loaders, ThreadPoolExecutor(finish_workers) as finishers:
        iterator = iter(items)

        def refill() -> None:
            while len(pending) < prefetch:
                item = next(iterator, StopIteration)
                if item is StopIteration:
                    return
                pending.append((item, loaders.submit(load, item)))

        refill()
        while pending:
            item, future = pending.popleft()
            refill()
            try:
                loaded = future.result()
            except Exception as exc:  # a bad input is reported and skipped
                stats.failed.append((item, str(exc)))
                continue
            began = time.perf_counter()
            out = model(loaded)
            stats.model_busy += time.perf_counter() - began
            finishing.append(finishers.submit(finish, item, loaded, out))
            stats.done += 1
        for future in finishing:
            future.result()
    stats.wall = time.perf_counter() - start
    return stats
