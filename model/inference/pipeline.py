"""The predictor: pictures through an engine (``backend.Backend``) in stages it owns: reading and preparing,
the network in batches shared by every caller, finishing, under one budget of bytes in flight, as its
``PipelineOptions`` say. Its request queue (``batching.RequestQueue``) runs them on its own threads; a caller's
thread only submits requests and waits for their answers. ``Predictor.submit`` takes one picture (the service);
``Predictor.run_pictures`` is an ordered, bounded window over the same requests (the API, demo.py, eval.py,
training, quantization). OpenCV's and OpenBLAS's threads are the process's: a program limits them to one
(``model.tuning.tune_process(helper_threads=1)``) so each worker takes at most one core."""
import functools
import itertools
import numbers
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import paddle

from solov2.core.errors import InputError
from solov2.data.transforms import ImageMeta, preprocess
from solov2.model.inference.backend import Backend, share_batches
from solov2.model.inference.batching import FORCE, REFUSE, WAIT, Batching, Prepared, Refused, Request, RequestQueue
from solov2.model.inference.device_postprocess import postprocess_on_device
from solov2.model.inference.memory import MemoryBudget
from solov2.model.inference.postprocess import Detections, InferenceParams, finish_outputs
from solov2.model.inference.reading import Image, PictureReader
from solov2.model.runtime import cpu_threads, launched_here

__all__ = ['FORCE', 'REFUSE', 'WAIT', 'PipelineOptions', 'PipelineStats', 'Predictor', 'Prepared', 'Refused',
           'Request', 'at_least_one', 'default_finish_workers', 'network_rows']


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


IN_FLIGHT_SHARE = 64 * 2 ** 20    # the default budget's bytes for each finishing worker and one more: a 12 MP photo,
#                                   36 MB read and prepared and 89 MB at its decoding peak, still decodes while one
#                                   finishes on each worker, and two never decode at once beside it
READERS = 2                       # reading threads unless told (``PipelineOptions.readers``)


@dataclass(frozen=True)
class PipelineOptions:
    """How a predictor moves pictures: the host's knob for its threads and memory (``Segmenter(...,
    pipeline=PipelineOptions(...))``; the service's settings come through it).

    ``batching``: how the pictures of several callers share network runs (``batching.Batching``: most
    pictures a run, how long the oldest waits for company, padding, a hook after each run). ``workers``:
    finishing threads (post-processing, the caller's ``finish``; default ``default_finish_workers``).
    ``readers``: threads that read and prepare pictures (default ``READERS``). ``in_flight_bytes``: bytes
    of the pictures admitted and not yet finished, across callers (default ``IN_FLIGHT_SHARE`` per
    finishing thread and one more; 0: no bound). The network runs on the predictor's own thread
    (``solov2-network``)."""
    batching: Batching = field(default_factory=Batching)
    workers: Optional[int] = None
    readers: Optional[int] = None
    in_flight_bytes: Optional[int] = None


def at_least_one(name: str, value: Any) -> int:
    """``value`` as an int; InputError naming ``name`` unless it is a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f'{name} must be a whole number of at least 1, not {value!r}')
    return int(value)


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


class Predictor:
    """Pictures through ``engine``: ``prepare``, ``network`` and ``finish``, taken by ``submit`` and looped by
    ``run_pictures`` (``detect``: one picture). ``on_device``: post-process with Paddle ops where the network
    runs (``device_postprocess``; default: when the engine's outputs stay on its GPU, ``device_outputs``; off
    on a CPU, where the numpy path is faster than Paddle's op-by-op dygraph).
    ``params``: the config's post-processing settings, each call's default; ``reader``: how its pictures
    are read (``reading.PictureReader``: the config's pixel limit and test size, and ``fast_decode``);
    ``queue``: its requests and the threads that serve them (``batching.RequestQueue``: reading, the network in
    batches as ``pipeline.batching`` says, finishing); ``budget``: bytes of the requests admitted and not yet
    finished, across callers (``memory.MemoryBudget`` of ``pipeline.in_flight_bytes``)."""

    def __init__(self, engine: Backend, on_device: Optional[bool] = None, fast_decode: bool = False,
                 pipeline: PipelineOptions = PipelineOptions()):
        if on_device and not engine.device_outputs:
            raise ValueError(f'on_device post-processing needs an engine whose outputs are Paddle tensors '
                             f'(dygraph); {type(engine).__name__} gives numpy arrays')
        self.engine, self.cfg, self.params = engine, engine.cfg, InferenceParams.from_config(engine.cfg)
        self.on_device = engine.network_on_gpu and engine.device_outputs if on_device is None else on_device
        self.reader = PictureReader(self.cfg.max_image_pixels, self.cfg.test_short, self.cfg.test_max, fast_decode)
        count = pipeline.workers or default_finish_workers(network_on_gpu=engine.network_on_gpu)
        limit = pipeline.in_flight_bytes
        self.budget = MemoryBudget(IN_FLIGHT_SHARE * (count + 1) if limit is None else limit)
        self.queue = RequestQueue(functools.partial(network_rows, engine, self.on_device), engine, pipeline.batching,
                                  pipeline.readers or READERS, count, self.budget)
        weakref.finalize(self, self.queue.close)      # dropped unclosed: its threads end all the same

    def close(self) -> None:
        """Take no new ``submit``; stop its threads once the requests in flight and the ``run_pictures`` running
        have ended (it does not wait for them). A predictor made for one job is closed when it ends (``with``)."""
        self.queue.close()

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

    def request(self, item: Any, read: Callable[[Any], np.ndarray], finish: Callable[[Any, Prepared, Any], Any],
                params: Optional[InferenceParams] = None, cost: Union[int, Callable[[], int]] = 0,
                caller: Optional[object] = None) -> Request:
        """A request for one picture, not yet submitted: ``read(item)`` ([H, W, 3] uint8 RGB) and ``prepare`` in a
        reader, the network in a batch, then ``finish(item, prepared, row)`` in a finishing worker (``row``: the
        network's result, which ``Predictor.finish`` makes the instances of); ``cost``: the bytes it holds (a
        function: asked at its admission)."""
        def load() -> Prepared:
            image = read(item)
            return Prepared(image, *self.prepare(image))
        return Request(load, lambda picture, row: finish(item, picture, row), params or self.params, cost, caller)

    def submit(self, item: Any, read: Callable[[Any], np.ndarray], finish: Callable[[Any, Prepared, Any], Any],
               params: Optional[InferenceParams] = None, cost: int = 0, admission: str = WAIT) -> Request:
        """One picture (``request``) from any thread, admitted by its ``cost`` bytes as ``admission`` says: ``WAIT``
        for room in ``budget``, ``REFUSE`` at once (its answer then ``batching.Refused``), or ``FORCE``; given back
        once its work ends. Its answer: what ``finish`` returns, or the first error. InputError once closed."""
        if self.queue.closed:
            raise InputError('this predictor is closed: make a new one to segment more pictures')
        request = self.request(item, read, finish, params, cost)
        self.queue.submit([request], admission)
        return request

    def run_pictures(self, items: Iterable[Any], read: Callable[[Any], np.ndarray],
                     finish: Callable[[Any, Prepared, Detections], Any] = lambda item, prepared, found: found,
                     params: Optional[InferenceParams] = None, batch_size: int = 1,
                     stats: Optional[PipelineStats] = None, window: int = 8,
                     cost: Callable[[Any], Optional[int]] = lambda item: None
                     ) -> Generator[Tuple[Any, Any], None, None]:
        """``(item, result)`` for each of ``items``, in their order: an ordered, bounded window over the predictor's
        requests (as ``Executor.map`` with read-ahead). ``batch_size`` items at a time are submitted as one group (one
        network run), at most ``window`` items ahead of the consumer, each admitted to ``budget`` with the other
        callers' by ``cost(item)`` (unknown: what the last picture read held; the first: the whole budget), forced
        while this call holds nothing, else waiting for room; the result is ``finish(item, prepared, detections)``
        (default the detections). A read or prepare that raised gives its exception as the result; errors in the
        network or ``finish`` propagate. An interrupt, a failure or a consumer that stops early only ends this
        call's wait: its requests not yet answered are cancelled (the predictor drops them). ``stats``: timings."""
        size = at_least_one('batch_size', batch_size)
        self.engine.check_batch(size)
        params, stats = params or self.params, stats if stats is not None else PipelineStats()
        start, held, caller = time.perf_counter(), [self.budget.limit], object()   # held: the last picture's bytes

        def finished(item: Any, prepared: Prepared, row: Any) -> Any:
            held[0] = prepared.image.nbytes + prepared.chw.nbytes
            return finish(item, prepared, self.finish(row, prepared.meta, params))

        pending: deque = deque()          # [(item, request)] of each group submitted, oldest first
        iterator = iter(items)
        chunks = iter(lambda: list(itertools.islice(iterator, size)), [])    # groups of ``size`` (the last shorter)
        self.queue.stream(began=True)
        try:
            while True:
                while len(pending) < max(2, window // size) and (chunk := next(chunks, None)) is not None:
                    asks = [(lambda: held[0]) if known is None else known for known in map(cost, chunk)]
                    group = [(item, self.request(item, read, finished, params, each, caller))
                             for item, each in zip(chunk, asks)]
                    pending.append(group)          # forced while this call holds nothing (the first group)
                    self.queue.submit([request for _, request in group], FORCE if len(pending) == 1 else WAIT)
                if not pending:
                    break
                for item, request in pending[0]:
                    request.wait()
                for item, request in pending.popleft():
                    stats.model_busy += request.network_s
                    yield item, self._outcome(request, stats)
        finally:             # the consumer stopped early (GeneratorExit), an interrupt or a failure; or the end
            for _, request in itertools.chain.from_iterable(pending):
                request.cancel()
            self.queue.stream(began=False)
            stats.wall = time.perf_counter() - start

    @staticmethod
    def _outcome(request: Request, stats: PipelineStats) -> Any:
        """What ``run_pictures`` gives for an answered ``request``: its value, or the exception that stopped its
        picture's read; a failure after that raised."""
        if not isinstance(request.outcome, BaseException):
            stats.done += 1
            return request.outcome
        if request.picture is not None or not isinstance(request.outcome, Exception):    # an interrupt: not its read's
            raise request.outcome
        return request.outcome
