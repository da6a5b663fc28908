"""The predictor: pictures through an engine (``backend.Backend``), in stages it owns: reading and
preparing (``reader``, in its ``readers``), the network (``queue``, shared by every caller), finishing
(in its ``workers``: a finished network row never waits behind pictures to decode), under one budget of
bytes in flight (``budget``), as its ``PipelineOptions`` say. One scheduler: ``Predictor.submit`` takes a
picture through them from any thread (the service); ``Predictor.run_pictures`` is an ordered, bounded
window over it (the API, demo.py, eval.py, training, quantization).
OpenCV's and OpenBLAS's threads are the process's: a program limits them to one
(``model.tuning.tune_process(helper_threads=1)``) so each worker takes at most one core."""
import contextlib
import functools
import itertools
import numbers
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import paddle

from solov2.core.errors import InputError
from solov2.data.transforms import ImageMeta, preprocess
from solov2.model.inference.backend import Backend, share_batches
from solov2.model.inference.batching import Batching, Group, NetworkQueue
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
READERS = 2                       # reading threads unless told (``PipelineOptions.readers``)
INTERRUPTED_WAIT_S = 30.0         # the most an interrupted run waits for the work under way (``_call_off``)


@dataclass(frozen=True)
class PipelineOptions:
    """How a predictor moves pictures: the host's knob for its threads and memory (``Segmenter(...,
    pipeline=PipelineOptions(...))``; the service's settings come through it).

    ``batching``: how the pictures of several callers share network runs (``batching.Batching``: most
    pictures a run, how long the oldest waits for company, padding, a hook after each run). ``workers``:
    finishing threads (post-processing, the caller's ``finish``; default ``default_finish_workers``).
    ``readers``: threads that read and prepare pictures (default ``READERS``). ``in_flight_bytes``: bytes
    of the pictures admitted and not yet finished, across callers (default ``IN_FLIGHT_SHARE`` per
    finishing thread and one more; 0: no bound). The network runs on a waiting caller's thread, else on
    one the queue starts while it has work (``solov2-network``)."""
    batching: Batching = field(default_factory=Batching)
    workers: Optional[int] = None
    readers: Optional[int] = None
    in_flight_bytes: Optional[int] = None


class Picture(Future):
    """A picture's answer (``Predictor.submit``); ``prepared``: whether it was read and prepared (a failure
    after that is the network's or ``finish``'s, not the picture's). Its work ends once its bytes are back in
    the budget (``wait_work``; a cancelled answer is done before that)."""
    prepared = False
    job: Optional[Future] = None         # its place in the network's queue, while it waits there

    def __init__(self) -> None:
        super().__init__()
        self._working = threading.Lock()     # a C lock, released once (an Event's wait holds a Python-level lock
        self._working.acquire()              # that an interrupt can leave held, and its setter then waits for good)

    def end_work(self) -> None:
        """Its work has ended (once)."""
        self._working.release()

    def wait_work(self, timeout: Optional[float] = None) -> None:
        """Until its work has ended, or ``timeout`` seconds (None: as long as it takes)."""
        if self._working.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._working.release()

    def cancel(self) -> bool:
        """Cancel the answer, and the picture's place in the network's queue if it waits there."""
        if not super().cancel():
            return False
        job = self.job            # read once cancelled: a picture queued meanwhile sees the cancel itself
        if job is not None:
            job.cancel()
        return True


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
    """Pictures through ``engine``: ``prepare``, ``network`` and ``finish``, taken by ``submit`` and looped by
    ``run_pictures`` (``detect``: one picture). ``on_device``: post-process with Paddle ops where the network
    runs (``device_postprocess``; default: when the engine's outputs stay on its GPU, ``device_outputs``; off
    on a CPU, where the numpy path is faster than Paddle's op-by-op dygraph; fixed when it is made: its queue
    holds it).
    ``params``: the config's post-processing settings, each call's default; ``reader``: how its pictures
    are read (``reading.PictureReader``: the config's pixel limit and test size, and ``fast_decode``);
    ``queue``: the network stage every caller's pictures go through (``batching.NetworkQueue``: callers
    that arrive while a batch runs share the next, as ``pipeline.batching`` says; pictures being read are
    those coming); ``readers`` (``solov2-read``) and ``workers`` (``solov2-finish``): its reading and finishing
    threads; ``budget``: bytes of pictures admitted and not yet finished, across callers
    (``memory.MemoryBudget``; default ``IN_FLIGHT_SHARE`` per worker and one more, 64 MiB each, so that a
    12 MP photo, 36 MB read and prepared and 89 MB at its decoding peak, still decodes while one finishes
    on each worker, and two never decode at once beside it). ``pipeline``: ``PipelineOptions``."""

    def __init__(self, engine: Backend, on_device: Optional[bool] = None, fast_decode: bool = False,
                 pipeline: PipelineOptions = PipelineOptions()):
        if on_device and not engine.device_outputs:
            raise ValueError(f'on_device post-processing needs an engine whose outputs are Paddle tensors '
                             f'(dygraph); {type(engine).__name__} gives numpy arrays')
        self.engine, self.cfg, self.params = engine, engine.cfg, InferenceParams.from_config(engine.cfg)
        self.on_device = engine.network_on_gpu and engine.device_outputs if on_device is None else on_device
        self.reader = PictureReader(self.cfg.max_image_pixels, self.cfg.test_short, self.cfg.test_max, fast_decode)
        self._loading: set = set()      # pictures ``submit`` reads and prepares, coming to the network
        self.queue = NetworkQueue(functools.partial(network_rows, engine, self.on_device), engine,
                                  pipeline.batching, self._loading.__len__)
        count = pipeline.workers or default_finish_workers(network_on_gpu=engine.network_on_gpu)
        self.readers = ThreadPoolExecutor(pipeline.readers or READERS, 'solov2-read')
        self.workers = ThreadPoolExecutor(count, 'solov2-finish')
        limit = pipeline.in_flight_bytes
        self.budget = MemoryBudget(IN_FLIGHT_SHARE * (count + 1) if limit is None else limit)
        self._streams, self._closing, self._lock = 0, False, threading.Lock()

    def close(self, wait: bool = False) -> None:
        """Stop the ``readers`` and ``workers`` once they have finished what they hold (``wait``: until then; a
        ``run_pictures`` still running finishes first, and stops them as it ends). A predictor made for one job
        is closed when it ends (``with``): an idle worker would otherwise hold the process at exit, which an
        interrupt can leave out of the interpreter's own shutdown (Ctrl-C between starting a worker and
        registering it)."""
        with self._lock:
            self._closing, streaming = True, self._streams > 0
        if not streaming:
            self.readers.shutdown(wait=wait)
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

    def submit(self, item: Any, read: Callable[[Any], np.ndarray], finish: Callable[[Any, Prepared, Any], Any],
               params: Optional[InferenceParams] = None, cost: int = 0, group: Optional[Group] = None) -> Picture:
        """One picture through the stages from any thread, its ``cost`` bytes taken from ``budget`` by the
        caller and given back here once its work ends: ``read(item)`` ([H, W, 3] uint8 RGB) and ``prepare``
        in a reader, the network through ``queue`` (with the pictures of its ``group``), then ``finish(item,
        prepared, row)`` in a worker (``row``: the network's result, which ``Predictor.finish`` makes the
        instances of). The answer gives what ``finish`` returns, or the first error (an interrupt of the calling
        thread while it starts the picture too); cancelled, the picture stops before its next stage."""
        return _Flight(self, item, read, finish, params or self.params, cost, group).start()

    def run_pictures(self, items: Iterable[Any], read: Callable[[Any], np.ndarray],
                     finish: Callable[[Any, Prepared, Detections], Any] = lambda item, prepared, found: found,
                     params: Optional[InferenceParams] = None, batch_size: int = 1,
                     stats: Optional[PipelineStats] = None, window: int = 8,
                     cost: Callable[[Any], Optional[int]] = lambda item: None
                     ) -> Generator[Tuple[Any, Any], None, None]:
        """``(item, result)`` for each of ``items``, in their order: an ordered, bounded window over ``submit``
        (as ``Executor.map`` with read-ahead). ``batch_size`` items at a time go through ``submit`` as one
        batch (``batching.Group``), at most ``window`` items ahead of the consumer, each admitted to ``budget``
        with the other callers' by ``cost(item)`` (unknown: what the last picture read held; the first: the
        whole budget; a caller holding nothing is admitted whatever the others hold); the result is
        ``finish(item, prepared, detections)`` (default the detections). While it waits, this thread runs the
        network whenever no other does (a caller alone runs its batches at once on its own thread). A read or
        prepare that raised gives its exception as the result; errors in the network or ``finish`` and
        interrupts propagate, the pictures not yet done called off. ``stats`` gets the timings."""
        size = at_least_one('batch_size', batch_size)
        self.engine.check_batch(size)
        params, stats = params or self.params, stats if stats is not None else PipelineStats()
        start, held, pending = time.perf_counter(), [self.budget.limit], deque()    # held: the last picture's bytes
        caller = object()           # this call's groups, which never share a batch with each other

        def finished(item: Any, prepared: Prepared, row: Any) -> Any:
            held[0] = array_bytes((prepared.image, prepared.chw))
            return finish(item, prepared, self.finish(row, prepared.meta, params))

        def admit() -> None:          # submit the next chunks while the window and the budget have room
            while len(pending) < max(2, window // size):
                chunk = upcoming.pop() if upcoming else next(chunked, None)
                if chunk is None:
                    return
                costs = [held[0] if known is None else known for known in map(cost, chunk)]
                if not self.budget.take(sum(costs), 0, force=not pending):
                    return upcoming.append(chunk)         # its turn comes once the oldest is done
                pending.append([])                 # filled as each starts, so that an interrupt calls it off
                self._start_batch(list(zip(chunk, costs)), Group(len(chunk), caller), pending[-1], read, finished,
                                  params)

        with self._lock:
            self._streams += 1
        upcoming, chunked = [], chunks(items, size)
        try:
            while True:
                with self.queue.hosting():
                    admit()
                    if not pending:
                        break
                    for _, answer in pending[0]:
                        stats.model_busy += self.queue.serve(answer)
                    oldest = pending.popleft()
                    admit()               # read ahead while the consumer takes these
                for item, answer in oldest:
                    yield item, self._outcome(answer, stats)
        except BaseException as exc:     # the consumer stopped early (GeneratorExit), an interrupt or a failure
            self._call_off(pending, caller, None if isinstance(exc, GeneratorExit) else INTERRUPTED_WAIT_S)
            raise
        finally:
            stats.wall = time.perf_counter() - start
            self._stream_ended()

    def _start_batch(self, costed: List[Tuple[Any, int]], group: Group, started: list,
                     read: Callable[[Any], np.ndarray], finish: Callable[[Any, Prepared, Any], Any],
                     params: InferenceParams) -> None:
        """``submit`` each (item, cost) of ``costed`` as one ``group``, its (item, answer) put in ``started``; an
        interrupt gives back the bytes of those it kept from starting (a started one's own stage gives its)."""
        try:
            for item, cost in costed:
                started.append((item, self.submit(item, read, finish, params, cost, group)))
        except BaseException:
            self.budget.give(sum(cost for _, cost in costed[len(started) + 1:]))
            raise

    def _call_off(self, pending: Iterable[list], caller: object, most: Optional[float]) -> None:
        """Cancel the answers of ``pending``'s (item, answer) chunks, ``caller``'s: their pictures stop before
        their next stage and its batches wait for no picture still to come; then wait until the work under way
        (a read, the batch the network runs, a finishing) has ended, their bytes back, at ``most`` seconds (None:
        as long as it takes): nothing of the run goes on after it (a process that exits then would stop the
        network thread inside the engine). An interrupt that struck inside a stage may have lost a picture's
        hand-over to the next: only then is the wait cut short."""
        flying = [answer for chunk in pending for _, answer in chunk]
        for answer in flying:
            answer.cancel()
        self.queue.abandon(caller)
        deadline = None if most is None else time.monotonic() + most
        for answer in flying:
            answer.wait_work(None if deadline is None else deadline - time.monotonic())

    @staticmethod
    def _outcome(answer: Picture, stats: PipelineStats) -> Any:
        """What ``run_pictures`` gives for a done ``answer``: its value, or the exception that stopped its
        picture's read; a failure after that raised."""
        failure = answer.exception()
        if failure is None:
            stats.done += 1
            return answer.result()
        if answer.prepared or not isinstance(failure, Exception):      # an interrupt is never a picture's
            raise failure
        return failure

    def _stream_ended(self) -> None:
        """One ``run_pictures`` ended: the last of those running when ``close`` came closes the pools."""
        with self._lock:
            self._streams -= 1
            last = self._closing and not self._streams
        if last:
            self.readers.shutdown(wait=False)
            self.workers.shutdown(wait=False)


class _Flight:
    """One picture's way through a predictor's stages (``Predictor.submit``): its answer, the bytes it owes the
    budget (given back once, by whichever stage ends it) and its place among the pictures coming to the network
    (left once: by its load, or by a start that failed, so that its batch never waits for it in vain)."""

    def __init__(self, predictor: 'Predictor', item: Any, read: Callable[[Any], np.ndarray],
                 finish: Callable[[Any, Prepared, Any], Any], params: InferenceParams, cost: int,
                 group: Optional[Group]):
        self.predictor, self.item, self.read, self.finish = predictor, item, read, finish
        self.params, self.group, self.answer = params, group, Picture()
        self.owed = [cost]

    def start(self) -> Picture:
        """Hand the picture to a reader (on the calling thread); its answer."""
        self.predictor._loading.add(self)
        self.stage(None, self.predictor.readers, self.load)
        return self.answer

    def leave_loading(self) -> bool:
        """Whether this call took the picture out of those coming (only the first does)."""
        try:
            self.predictor._loading.remove(self)
        except KeyError:
            return False
        return True

    def give_back(self) -> None:
        with contextlib.suppress(IndexError):
            self.predictor.budget.give(self.owed.pop())
            self.answer.end_work()

    def fail(self, exc: BaseException) -> None:
        if self.leave_loading():         # it will not come: its batch runs without it
            self.predictor.queue.settled(self.group)
        self.give_back()
        with contextlib.suppress(InvalidStateError):
            self.answer.set_exception(exc)

    def load(self) -> None:
        try:
            if self.answer.cancelled():          # a picture whose answer is no longer awaited is not read
                raise CancelledError()
            image = self.read(self.item)
            prepared = Prepared(image, *self.predictor.prepare(image))
            if self.answer.cancelled():
                raise CancelledError()
        except BaseException as exc:  # a picture that cannot be read: its answer's error
            return self.fail(exc)
        self.answer.prepared = True
        if self.leave_loading():
            job = self.answer.job = self.predictor.queue.submit(prepared.chw, prepared.meta, self.params, self.group)
            if self.answer.cancelled():         # cancelled before it knew its place in the queue
                job.cancel()
            job.add_done_callback(lambda job: self.stage(job, self.predictor.workers, self.finished, prepared))

    def finished(self, prepared: Prepared, row: Any) -> None:
        try:
            if self.answer.cancelled():          # cancelled while it waited for a worker
                raise CancelledError()
            value = self.finish(self.item, prepared, row)
        except BaseException as exc:  # finishing failed: the answer's error
            return self.fail(exc)
        self.give_back()
        with contextlib.suppress(InvalidStateError):
            self.answer.set_result(value)

    def stage(self, done: Optional[Future], pool: ThreadPoolExecutor, step: Callable, *args: Any) -> None:
        """``step`` in ``pool`` once ``done`` gave its value, unless it failed or the answer was cancelled."""
        self.answer.job = None
        try:
            if self.answer.cancelled():
                raise CancelledError()
            value = [] if done is None else [done.result()]
        except BaseException as exc:  # the stage before failed (an interrupt of the network's thread among those)
            return self.fail(exc)
        try:
            pool.submit(step, *args, *value)
        except BaseException as exc:  # a pool closed, or an interrupt of this thread: the answer's error
            self.fail(exc)
            if not isinstance(exc, Exception):
                raise             # an interrupt goes on to this thread's caller too: the answer may be done already
