"""The predictor: pictures through an engine (``backend.Backend``), in stages it owns: reading
(``reader``), preparing, the network (``queue``, shared by every caller), finishing (its ``workers``),
under one budget of bytes in flight (``budget``). Two drivers: ``Predictor.run_pictures`` reads and
prepares a caller's pictures in loading threads, runs the network on the calling thread in batches
and finishes in the workers, results in input order (the API, demo.py, eval.py, training,
quantization); ``Predictor.submit`` takes one picture through them from any thread (the service).
OpenCV's and OpenBLAS's threads are the process's: a program limits them to one
(``model.tuning.tune_process(helper_threads=1)``) so each worker takes at most one core."""
import contextlib
import functools
import itertools
import numbers
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import paddle

from solov2.core.errors import InputError
from solov2.data.transforms import ImageMeta, preprocess
from solov2.model.inference.backend import Backend, share_batches
from solov2.model.inference.batching import Batching, NetworkQueue
from solov2.model.inference.device_postprocess import postprocess_on_device
from solov2.model.inference.memory import MemoryBudget
from solov2.model.inference.postprocess import Detections, InferenceParams, paste_detections, postprocess_flat
from solov2.model.inference.reading import Image, PictureReader
from solov2.model.runtime import cpu_threads, launched_here


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


IN_FLIGHT_SHARE = 64 * 2 ** 20    # in-flight bytes for each worker and one more (Predictor's default budget)


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


def default_finish_workers(cores: Optional[int] = None, network_on_gpu: bool = False) -> int:
    """Finishing workers, at least one: with the network on the CPU a quarter of the cores (a few
    keep up, docs/benchmark.md); on a GPU all but three (the network's thread and two loaders). The
    cores are this process's share among those ``paddle.distributed.launch`` started on the machine
    (``PADDLE_LOCAL_SIZE``), so eight processes on 32 cores start 1 finishing thread each, not 29."""
    cores = cores or cpu_threads(0, launched_here())
    return max(1, cores - 3 if network_on_gpu else cores // 4)


def network_rows(engine: Backend, on_device: bool, ready: Sequence[Tuple[np.ndarray, ImageMeta]],
                 params: InferenceParams, max_padding: float = 0.0) -> list:
    """``engine``'s result for each prepared picture ((chw [3, Hp, Wp], meta)), for ``Predictor.finish``: its
    outputs [1, ...], or ``on_device`` its Detections post-processed there with ``params``; in the batches of
    ``share_batches`` (a batch gives what each picture alone gives). A function, not a method: the
    predictor's queue holds it, and a queue holding the predictor would keep a dropped one (its finishing
    threads) alive until the garbage collector's next pass."""
    rows: list = [None] * len(ready)
    for indices in share_batches([chw.shape[1:] for chw, _ in ready], engine, max_padding=max_padding):
        batch = engine.batch_regions([ready[i][0] for i in indices])
        if on_device:
            with engine.placed(), paddle.no_grad():
                found = postprocess_on_device(*engine.run(*batch), params, [ready[i][1] for i in indices])
        else:
            outputs = engine.run_numpy(*batch)
            found = [[array[row:row + 1] for array in outputs] for row in range(len(indices))]
        for index, row in zip(indices, found):
            rows[index] = row
    return rows


def finish_outputs(outputs: Sequence[np.ndarray], meta: ImageMeta, params: InferenceParams) -> Detections:
    """One picture's network outputs (scores [1, K, C], kernels [1, K, E], mask_feat [1, E, h, w], h and w
    at least its padded size / 4) -> its instances on the original image: ``postprocess_flat`` with
    ``params`` on its own padded size's mask features, ``paste_detections``; what every runtime's
    outputs go through (``Predictor.finish``, ``tools/postprocess_raw.py``)."""
    scores, kernels, mask_feat = outputs
    own = mask_feat[..., :meta.padded_hw[0] // 4, :meta.padded_hw[1] // 4]
    return paste_detections(postprocess_flat(scores, kernels, own, params)[0], meta, params.mask_threshold)


class Predictor:
    """Pictures through ``engine``: ``prepare``, ``network`` and ``finish``, looped by ``run_pictures``
    (``detect``: one picture). ``on_device``: post-process with Paddle ops where the network runs
    (``device_postprocess``; default: when the engine's outputs stay on its GPU, ``device_outputs``; off
    on a CPU, where the numpy path is faster than Paddle's op-by-op dygraph; fixed when it is made: its queue
    holds it).
    ``params``: the config's post-processing settings, each call's default; ``reader``: how its pictures
    are read (``reading.PictureReader``: the config's pixel limit and test size, and ``fast_decode``);
    ``queue``: the network stage every caller's pictures go through (``batching.NetworkQueue``: callers
    that arrive while a batch runs share the next, as ``batching`` says; pictures on their way through
    ``submit`` are those coming); ``workers``: the finishing threads (default ``default_finish_workers``
    for where the network runs); ``budget``: bytes of pictures read and not yet finished, across callers
    (``memory.MemoryBudget``; default ``in_flight_bytes``: ``IN_FLIGHT_SHARE`` per worker and one more, 64 MiB
    each, so that a 12 MP photo, 36 MB read and prepared and 89 MB at its decoding peak, still decodes while
    one finishes on each worker, and two never decode at once beside it)."""

    def __init__(self, engine: Backend, on_device: Optional[bool] = None, fast_decode: bool = False,
                 batching: Batching = Batching(), workers: Optional[int] = None,
                 in_flight_bytes: Optional[int] = None):
        if on_device and not engine.device_outputs:
            raise ValueError(f'on_device post-processing needs an engine whose outputs are Paddle tensors '
                             f'(dygraph); {type(engine).__name__} gives numpy arrays')
        self.engine, self.cfg, self.params = engine, engine.cfg, InferenceParams.from_config(engine.cfg)
        self.on_device = engine.network_on_gpu and engine.device_outputs if on_device is None else on_device
        self.reader = PictureReader(self.cfg.max_image_pixels, self.cfg.test_short, self.cfg.test_max, fast_decode)
        self._loading: set = set()      # pictures ``submit`` reads and prepares, coming to the network
        self.queue = NetworkQueue(functools.partial(network_rows, engine, self.on_device), engine, batching,
                                  self._loading.__len__)
        count = workers or default_finish_workers(network_on_gpu=engine.network_on_gpu)
        self.workers = ThreadPoolExecutor(count, 'solov2-finish')
        self.budget = MemoryBudget(IN_FLIGHT_SHARE * (count + 1) if in_flight_bytes is None else in_flight_bytes)

    def close(self, wait: bool = False) -> None:
        """Stop the ``workers`` once they have finished what they hold (``wait``: until then). A predictor
        made for one job is closed when it ends (``with``): an idle worker would otherwise hold the
        process at exit, which an interrupt can leave out of the interpreter's own shutdown (Ctrl-C
        between starting a worker and registering it)."""
        self.workers.shutdown(wait=wait)

    def __enter__(self) -> 'Predictor':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def read(self, image: Image, channels: str = 'bgr', max_pixels: Optional[int] = None,
             what: Optional[str] = None) -> np.ndarray:
        """[H, W, 3] uint8 RGB of a picture however it comes (``PictureReader.read``)."""
        return self.reader.read(image, channels, max_pixels, what)

    def prepare(self, image: np.ndarray) -> Tuple[np.ndarray, ImageMeta]:
        """[H, W, 3] uint8 RGB -> ([3, Hp, Wp] float32, sizes); Hp, Wp at least an exported engine's least side.
        The engine hears the size (``Backend.expect``), so that a model compiled per size begins compiling now."""
        least = (self.engine.size_range or (0,))[0]
        chw, meta = preprocess(image, self.cfg.test_short, self.cfg.test_max, min_side=least)
        self.engine.expect(chw.shape[1:])
        return chw, meta

    def network(self, ready: Sequence[Tuple[np.ndarray, ImageMeta]], params: Optional[InferenceParams] = None,
                max_padding: float = 0.0) -> list:
        """``network_rows`` of this predictor's engine for each prepared picture ((chw [3, Hp, Wp], meta)),
        for ``finish`` (``params``: default the config's)."""
        return network_rows(self.engine, self.on_device, ready, params or self.params, max_padding)

    def finish(self, row, meta: ImageMeta, params: Optional[InferenceParams] = None) -> Detections:
        """``network``'s result for one picture -> its instances on the original image (binary masks
        [N, H, W]): ``postprocess_flat`` with ``params`` on its own padded size, ``paste_detections``."""
        return row if self.on_device else finish_outputs(row, meta, params or self.params)

    def detect(self, image: np.ndarray, params: Optional[InferenceParams] = None) -> Detections:
        """[H, W, 3] uint8 RGB -> its instances (masks [N, H, W] on it): ``run_pictures`` on a list of one."""
        [(_, found)] = self.run_pictures([image], lambda rgb: rgb, params=params)
        if isinstance(found, Exception):
            raise found
        return found

    def run_pictures(self, items: Iterable[Any], read: Callable[[Any], np.ndarray],
                     finish: Callable[[Any, Prepared, Detections], Any] = lambda item, prepared, found: found,
                     params: Optional[InferenceParams] = None, batch_size: int = 1,
                     stats: Optional[PipelineStats] = None, window: int = 8,
                     cost: Callable[[Any], Optional[int]] = lambda item: None
                     ) -> Generator[Tuple[Any, Any], None, None]:
        """``(item, result)`` for each of ``items``, in their order: ``read(item)`` ([H, W, 3] uint8 RGB)
        and ``prepare`` in two loading workers; ``network`` through ``queue`` (on this thread when no
        other caller's batch runs; with other callers' pictures that arrive meanwhile), ``batch_size`` items a call;
        the result ``finish(item, prepared, detections)`` (default the detections) in the ``workers``.
        A read or prepare that raised gives its exception as the result; errors in the network or
        ``finish`` propagate. At most ``window`` finished pictures wait for the consumer, and pictures
        read and not yet finished are held within ``budget`` with the other callers' (a load counts as
        ``cost(item)`` says, else as the last load held; a caller holding nothing loads a batch whatever
        the others hold). ``stats`` gets the timings."""
        size = at_least_one('batch_size', batch_size)
        self.engine.check_batch(size)

        def load_one(item: Any) -> Any:
            try:
                image = read(item)
                return Prepared(image, *self.prepare(image))
            except Exception as exc:  # a bad input is reported by the caller, not fatal to the others
                return exc

        def model(loaded):
            return self.queue.run([(p.chw, p.meta) for p in loaded if isinstance(p, Prepared)], params or self.params)

        def finish_chunk(chunk, loaded, rows):
            rows = iter(rows)
            return [(item, finish(item, p, self.finish(next(rows), p.meta, params)) if isinstance(p, Prepared) else p)
                    for item, p in zip(chunk, loaded)]

        for done in _run(chunks(items, size), lambda chunk: list(map(load_one, chunk)), model, finish_chunk,
                         self.workers, max(2, 4 // size), max(2, window // size), self.budget,
                         stats if stats is not None else PipelineStats(), cost):
            yield from done

    def submit(self, read: Callable[[], np.ndarray], finish: Callable[[Prepared, Any], Any],
               params: Optional[InferenceParams] = None, cost: int = 0) -> Future:
        """One picture through the stages from any thread, its ``cost`` bytes taken from ``budget`` by
        the caller and given back here once its work ends: ``read()`` ([H, W, 3] uint8 RGB) and
        ``prepare`` in a worker, the network through ``queue``, ``finish(prepared, row)`` in a worker
        (``row``: the network's result, which ``Predictor.finish`` makes the instances of). The future
        gives what ``finish`` returns, or the first error; cancelled, the picture stops before its next
        stage."""
        answer: Future = Future()

        def then(job: Future, step: Callable[[Any], None]) -> None:
            try:
                value = job.result()
                if not answer.cancelled():
                    return step(value)
            except BaseException as exc:  # a stage's failure (or cancelling) is the answer's
                self.budget.give(cost)
                with contextlib.suppress(InvalidStateError):
                    answer.set_exception(exc)
                return
            self.budget.give(cost)

        def load() -> Optional[Prepared]:
            try:
                if not answer.cancelled():      # a picture whose answer is no longer awaited is not read
                    image = read()
                    return Prepared(image, *self.prepare(image))
            finally:
                self._loading.discard(token)

        def loaded(prepared: Prepared) -> None:
            self.queue.submit(prepared.chw, prepared.meta, params or self.params).add_done_callback(
                lambda job: then(job, lambda row: self.workers.submit(finish, prepared, row).add_done_callback(
                    lambda job: then(job, done))))

        def done(value: Any) -> None:
            self.budget.give(cost)
            with contextlib.suppress(InvalidStateError):
                answer.set_result(value)

        token = object()          # this picture among those coming until it is prepared
        self._loading.add(token)
        self.workers.submit(load).add_done_callback(lambda loading: then(loading, loaded))
        return answer


def _run(chunks_in: Iterable[list], load, model, finish, finishers: ThreadPoolExecutor, prefetch: int, window: int,
         budget: MemoryBudget, stats: PipelineStats, cost: Callable[[Any], Optional[int]]) -> Iterator[list]:
    """``finish(chunk, loaded, model(loaded))`` for each chunk, in order, ``loaded = load(chunk)``; up to
    ``prefetch`` chunks loading ahead, each alone or as many as fit the budget."""
    start = time.perf_counter()
    pending: deque = deque()       # (chunk, load future, bytes it holds of the budget)
    finishing: deque = deque()     # (finish future, bytes of its loaded arrays held)
    last = None                    # bytes of the last chunk loaded: what a load of unknown cost will hold
    upcoming, costs = None, []     # the next chunk to load, and what its items will hold (cost)

    def coming() -> int:           # what loading the next chunk will hold: unknown before any load, the budget
        return 0 if upcoming is None else sum(costs) if None not in costs else budget.limit if last is None else last

    def must_wait() -> bool:       # for the oldest finish: memory over, nothing to load, or too many done
        return budget.used > budget.limit > 0 or (not pending and not budget.fits(coming())) or \
            len(finishing) > window

    with ThreadPoolExecutor(2) as loaders:
        try:
            iterator = iter(chunks_in)
            while True:
                while finishing and (finishing[0][0].done() or must_wait()):
                    yield finishing[0][0].result()
                    budget.give(finishing.popleft()[1])
                while len(pending) < prefetch:
                    if upcoming is None and (upcoming := next(iterator, None)) is not None:
                        costs = [cost(item) for item in upcoming]
                    need = coming()
                    if upcoming is None or not budget.take(need, 0, force=not (pending or finishing)):
                        break
                    pending.append((upcoming, loaders.submit(load, upcoming), need))
                    upcoming = None
                if not pending:
                    break
                chunk, future, _ = pending[0]
                loaded = future.result()
                last = array_bytes(loaded)
                budget.take(last, force=True)
                budget.give(pending.popleft()[2])
                began = time.perf_counter()
                out = model(loaded)
                stats.model_busy += time.perf_counter() - began
                finishing.append((finishers.submit(finish, chunk, loaded, out), last))
                stats.done += sum(isinstance(p, Prepared) for p in loaded)
                del loaded, out           # the finisher holds them now, and lets go when done
            while finishing:
                yield finishing[0][0].result()
                budget.give(finishing.popleft()[1])
        finally:       # a consumer that stops early: its pictures' bytes back once their work ends
            for *_, future, size in (*pending, *finishing):
                with contextlib.suppress(Exception):
                    future.result()
                budget.give(size)
    stats.wall = time.perf_counter() - start
