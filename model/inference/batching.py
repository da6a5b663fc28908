"""The predictor's request queue and its worker threads (``RequestQueue``), as Triton's dynamic batcher and
TorchServe's batch aggregator do it: a caller's thread only puts requests on the queue and waits for their
answers; one thread the predictor owns (``solov2-queue``) holds all the state: admission to the budget of bytes
in flight, the reads it hands to the readers (``solov2-read``), the batches it forms of the requests that are
ready and hands to the network's thread (``solov2-network``), and the finishing it hands to the finishing workers
(``solov2-finish``). Every hand-over to that thread is a ``queue.SimpleQueue.put`` (one C call, which an interrupt
cannot split) and a caller waits on a C lock its request releases once: no lock the owner needs is ever held by a
caller, so an interrupt or a timeout of a caller only ends its wait (``Request.cancel`` then drops its requests
at their next stage).
Glossary: a *request* is one picture and what to do with it; *admission* takes its cost from the budget
(``WAIT``, ``REFUSE`` or ``FORCE``); a *batch* is one network run; a *group* is the requests one caller
asks to run as one batch (``run_pictures``' ``batch_size``); a *stage* is a pool of worker threads fed cheapest
first (reading, finishing).
"""
import collections
import dataclasses
import heapq
import itertools
import logging
import queue
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, List, NamedTuple, Optional, Union, cast

import numpy as np

from solov2.core.errors import InputError
from solov2.model.inference.backend import share_batches
from solov2.model.inference.memory import MemoryBudget

LOG = logging.getLogger(__name__)
WAIT, REFUSE, FORCE = 'wait', 'refuse', 'force'        # admission: wait for room, refuse at once, or take it anyway
ADMISSIONS = (WAIT, REFUSE, FORCE)
LARGE_BYTES = 12 * 2 ** 20     # a large task: over a 4 MP picture decoded; never on the last free worker of a stage


@dataclasses.dataclass(frozen=True)
class Batching:
    """How requests of several callers share network runs: at most ``max_batch`` a run (a caller's own group
    may be larger), pictures of different padded sizes together where the batch then holds at most 1 +
    ``max_padding`` times their own pixels, the oldest waiting up to ``max_wait_s`` for company while pictures are
    being read; ``on_batch(waits, seconds)`` after each run."""
    max_batch: int = 4
    max_wait_s: float = 0.0
    max_padding: float = 0.0
    on_batch: Callable[[List[float], float], None] = lambda waits, seconds: None


class Prepared(NamedTuple):
    """A picture read and preprocessed: ``image`` [H, W, 3] uint8 RGB, ``chw`` [3, Hp, Wp] float32."""
    image: np.ndarray
    chw: np.ndarray
    meta: Any


class Refused(RuntimeError):
    """A request submitted with ``REFUSE`` found no room in the budget."""


class Request:
    """One picture's way through the predictor: ``load()`` -> its ``Prepared`` picture in a reader; the network's
    row for it in a batch; ``finish(picture, row)`` -> its value in a finishing worker. ``cost``: bytes of the
    budget it holds from admission until its work ends (``asks``: those bytes, or a function asked at admission);
    ``caller``: requests of one caller share a batch only within their ``group`` (None: with any). A caller waits
    (``wait``) and reads ``outcome``; ``future`` gives the same to an asyncio host (running: a host's cancel of it
    is not the request's, ``cancel`` is); ``cancel`` drops it at its next stage."""

    def __init__(self, load: Callable[[], Prepared], finish: Callable[[Prepared, Any], Any], params: Any,
                 cost: Union[int, Callable[[], int]] = 0, caller: Optional[object] = None):
        self.load, self.finish, self.params, self.caller, self.asks = load, finish, params, caller, cost
        self.cost = 0                   # the bytes it holds once admitted
        self.group: List['Request'] = [self]
        self.future: Future = Future()
        self.future.set_running_or_notify_cancel()
        self.cancelled = False
        self.outcome: Any = None        # the value, or the exception that ended it
        self.picture: Optional[Prepared] = None     # once read
        self.network_s = 0.0            # its share of its batch's network time
        self.arrived, self.order = 0.0, 0           # when and in which order it was admitted
        self._answered = threading.Lock()      # a C lock: released once answered, never held by a caller
        self._answered.acquire()
        self._wake: Callable[[], None] = lambda: None       # its queue's owner, once submitted

    @property
    def done(self) -> bool:
        """Whether it was answered."""
        return not self._answered.locked()

    def joins(self, head: 'Request') -> bool:
        """Whether it may run in a batch with ``head``: of its params, and of its group or not of its caller."""
        return self.params == head.params and (self in head.group or self.caller is None or
                                               self.caller is not head.caller)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Until answered or ``timeout`` seconds (None: as long as it takes); whether it was answered."""
        if self._answered.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._answered.release()
            return True
        return False

    def cancel(self) -> None:
        """No longer awaited: its owner drops it at its next stage and gives back its cost once its work ends."""
        self.cancelled = True
        self._wake()

    def answer(self, outcome: Any, failed: bool) -> None:
        """(Its owner's threads) its value, or the exception that ended it; once. It then holds no predictor (in
        ``load`` and ``finish``) and no group (a cycle: it is freed by its last reference)."""
        if self.done:
            return
        self.outcome, self.load, self.finish, self.group = outcome, _answered, _answered, []
        self._answered.release()
        (self.future.set_exception if failed else self.future.set_result)(outcome)


def _answered(*args) -> Any:
    raise RuntimeError('this request was answered: it neither reads nor finishes again')


class Stage:
    """A pool of ``workers`` threads named ``name`` fed cheapest first (tasks of ``weight`` bytes); a large task
    (over ``LARGE_BYTES``) never takes the last free worker of several, so a small one never waits behind large
    ones; ``put`` and ``done`` from the owner's thread only."""

    def __init__(self, workers: int, name: str):
        self.pool, self.workers, self.busy = ThreadPoolExecutor(workers, name), workers, 0
        self._waiting: list = []
        self._order = itertools.count()

    def put(self, weight: int, task: Callable[[], None]) -> None:
        heapq.heappush(self._waiting, (weight, next(self._order), task))
        self._start()

    def done(self) -> None:
        """A task it ran has ended."""
        self.busy -= 1
        self._start()

    def _start(self) -> None:
        while self._waiting and self.busy < self.workers:
            weight, _, task = self._waiting[0]
            if weight > LARGE_BYTES and self.workers > 1 and self.busy == self.workers - 1:
                return
            heapq.heappop(self._waiting)
            self.busy += 1
            self.pool.submit(task)

    def __len__(self) -> int:
        return len(self._waiting)


class RequestQueue:
    """The predictor's requests (module docstring): ``submit`` from any thread; the network
    (``network(inputs, params, max_padding)``: a row for each (chw, meta)) runs on its own thread in the batches
    ``backend.share_batches`` forms (a batch gives each picture what it gives alone), those of one call's
    ``params`` together; ``budget``: bytes in flight across callers."""

    def __init__(self, network: Callable[..., list], engine, batching: Batching, readers: int, workers: int,
                 budget: MemoryBudget):
        self.network, self.engine, self.batching, self.budget = network, engine, batching, budget
        self.reading, self.finishing = Stage(readers, 'solov2-read'), Stage(workers, 'solov2-finish')
        self._runner = ThreadPoolExecutor(1, 'solov2-network')
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: Deque[List[Request]] = collections.deque()      # groups waiting for admission
        self._ready: List[Request] = []                                  # read, waiting for a batch
        self._in_flight, self._streams, self._running, self._closing = 0, 0, False, False
        self._order = itertools.count()
        self._deadline: Optional[float] = None     # when the oldest request stops waiting for company
        self.closed = self._stopped = False
        self._thread = threading.Thread(target=self._serve, name='solov2-queue', daemon=True)
        self._thread.start()

    @property
    def threads(self) -> set:
        """The threads it runs now: its own, and its readers', network's and finishing workers'."""
        return {self._thread, *self.reading.pool._threads, *self._runner._threads, *self.finishing.pool._threads}

    @property
    def depth(self) -> int:
        """Requests waiting for the network (read, not yet in a batch)."""
        return len(self._ready)

    def submit(self, group: List[Request], admission: str = WAIT) -> None:
        """Queue ``group`` (requests run as one batch: one, or a caller's ``batch_size``) for admission as one: its
        cost taken once it fits (``WAIT``), or refused at once (``REFUSE``: each answered ``Refused``), or taken
        whatever the others hold (``FORCE``). A picture alone always fits. InputError for another admission."""
        if admission not in ADMISSIONS:
            raise InputError(f"admission is one of {', '.join(ADMISSIONS)}, not {admission!r}")
        for request in group:
            request.group, request._wake = group, self._wake
        self._inbox.put((self._admit, (group, admission)))
        if self._stopped:        # stopped before it took this group (else it answers it)
            self._refuse_closed()

    def stream(self, began: bool) -> None:
        """A caller's stream of requests ``began`` or ended: ``close`` lets running streams finish."""
        self._inbox.put((self._count_stream, 1 if began else -1))

    def close(self) -> None:
        """Stop the threads once every request in flight and every stream running has ended: at once when none
        is (its thread then ended on return, holding nothing), else as the last ends (it does not wait for them).
        Once closed, nothing (its predictor's finalizer closes it again)."""
        if self.closed:
            return
        self.closed, heard = True, threading.Lock()
        heard.acquire()
        self._inbox.put((self._close, heard))
        if threading.current_thread() is not self._thread and heard.acquire(timeout=10) and self._idle():
            self._thread.join(10)

    def _wake(self) -> None:
        """(Any thread) a request was cancelled: its owner drops it now if it waits for admission."""
        self._inbox.put((lambda _: self._admit_waiting(), None))

    def _refuse_closed(self) -> None:
        """(Once stopped, any thread) answer the groups submitted since with InputError: nothing serves them."""
        while True:
            try:
                step, argument = self._inbox.get_nowait()
            except queue.Empty:
                return
            if step == self._admit:
                for request in argument[0]:
                    request.answer(InputError('this predictor is closed'), failed=True)

    # ---- the owner's thread (``solov2-queue``) ----------------------------------------------------------------

    def _serve(self) -> None:
        """Take the next message (a step and its argument) until closed and idle; a step that fails is logged."""
        while not (self._closing and self._idle()):
            try:
                step, argument = self._inbox.get(timeout=None if self._deadline is None else
                                                 max(0.0, self._deadline - time.monotonic()))
            except queue.Empty:          # the oldest request waited long enough for company
                step, argument = (lambda _: None), None
            try:
                step(argument)
                self._start_batch()
            except Exception:  # a bug of the queue's own: logged, the queue serves on
                LOG.exception('the request queue failed a step')
            step = argument = None          # holds no request (its predictor) while it waits for the next
        self._stopped = True
        for pool in (self.reading.pool, self.finishing.pool, self._runner):
            pool.shutdown(wait=False)
        self.network = self.engine = None      # the model is freed with the predictor's last reference
        self._refuse_closed()

    @staticmethod
    def _price(group: List[Request]) -> int:
        """The bytes ``group`` asks of the budget now, each request's ``cost`` (asked when it is a function)."""
        for request in group:
            request.cost = request.asks() if callable(request.asks) else request.asks
        return sum(request.cost for request in group)

    def _admit(self, job) -> None:
        group, admission = job
        cost = self._price(group)
        if admission == FORCE or self.budget.fits(cost) and (admission == REFUSE or not self._waiting):
            return self._start(group, cost)
        if admission == REFUSE:
            refused = Refused(f'the pictures in flight hold {self.budget.used / 2**20:.0f} MB, no room for this '
                              f'one ({cost / 2**20:.0f} MB) in the {self.budget.limit / 2**20:.0f} MB')
            for request in group:
                request.answer(refused, failed=True)
            return
        self._waiting.append(group)

    def _start(self, group: List[Request], cost: int) -> None:
        self.budget.take(cost)
        self._in_flight += len(group)
        for request in group:
            request.arrived, request.order = time.monotonic(), next(self._order)
            self.reading.put(request.cost, lambda request=request: self._read(request))

    def _admit_waiting(self) -> None:
        while self._waiting:
            group = self._waiting[0]
            if all(request.cancelled for request in group):
                self._waiting.popleft()
                for request in group:
                    request.answer(CancelledError(), failed=True)
                continue
            cost = self._price(group)
            if not self.budget.fits(cost):
                return
            self._start(self._waiting.popleft(), cost)

    def _ended(self, request: Request) -> None:
        """``request``'s work has ended (it was answered): its cost back, waiting groups admitted."""
        self._in_flight -= 1
        self.budget.give(request.cost)
        self._admit_waiting()

    def _drop(self, request: Request, reason: BaseException) -> None:
        request.answer(reason, failed=True)
        self._ended(request)

    def _loaded(self, job) -> None:
        request, request.picture = job          # set here: its group leaves only once each is in ``_ready``
        self.reading.done()
        if request.picture is None:        # its read failed or was cancelled: answered
            return self._ended(request)
        self._ready.append(request)        # cancelled meanwhile: ``_start_batch`` drops it

    def _start_batch(self) -> None:
        """Hand the next batch to the network's thread when it is idle: the oldest request whose group is all read
        and those that may join it, once it is full, or nothing more is being read, or it waited ``max_wait_s``."""
        self._deadline = None
        for request in [request for request in self._ready if request.cancelled]:
            self._ready.remove(request)
            self._drop(request, CancelledError())
        leaving = sorted((request for request in self._ready if all(
            member.picture is not None or member.done for member in request.group)), key=lambda one: one.order)
        if self._running or not leaving:
            return
        head = leaving[0]
        most = max(self.batching.max_batch, len(head.group))
        alike = [request for request in leaving if request.joins(head)]
        try:
            sizes = [cast(Prepared, request.picture).chw.shape[1:] for request in alike]
            first = share_batches(sizes, self.engine, most, self.batching.max_padding)[0]
        except Exception as exc:  # a batch that cannot be formed: its oldest request's failure
            self._ready.remove(head)
            return self._drop(head, exc)
        batch = [alike[index] for index in first]
        waited = time.monotonic() - head.arrived
        if len(batch) < most and len(self.reading) + self.reading.busy and waited < self.batching.max_wait_s:
            self._deadline = head.arrived + self.batching.max_wait_s
            return
        for request in batch:
            self._ready.remove(request)
        self._running = True
        self._runner.submit(self._run, batch)

    def _ran(self, job) -> None:
        batch, rows, failure = job
        self._running = False
        for request, row in zip(batch, rows or [None] * len(batch)):
            if failure is not None or request.cancelled:
                self._drop(request, failure or CancelledError())
            else:
                self.finishing.put(cast(Prepared, request.picture).image.nbytes, lambda request=request, row=row:
                                   self._finish(request, row))

    def _finished(self, request: Request) -> None:
        self.finishing.done()
        self._ended(request)

    def _count_stream(self, change: int) -> None:
        self._streams += change

    def _close(self, heard) -> None:
        self._closing = True
        heard.release()

    def _idle(self) -> bool:
        return not (self._in_flight or self._streams)

    # ---- the workers' threads ------------------------------------------------------------------------------------

    def _read(self, request: Request) -> None:
        self._inbox.put((self._loaded, (request, _unless_cancelled(request, request.load))))

    def _run(self, batch: List[Request]) -> None:
        began, rows, failure = time.monotonic(), None, None
        try:
            rows = self.network([cast(Prepared, request.picture)[1:] for request in batch], batch[0].params,
                                self.batching.max_padding)
            if len(rows) != len(batch):
                raise RuntimeError(f'the network gave {len(rows)} results for a batch of {len(batch)} pictures')
            seconds = time.monotonic() - began
            for request in batch:
                request.network_s = seconds / len(batch)
            self.batching.on_batch([began - request.arrived for request in batch], seconds)
        except BaseException as exc:  # the engine's or the hook's failure: its batch's
            failure = exc
        self._inbox.put((self._ran, (batch, rows, failure)))

    def _finish(self, request: Request, row: Any) -> None:
        _unless_cancelled(request, lambda: request.answer(request.finish(cast(Prepared, request.picture), row),
                                                          failed=False))
        self._inbox.put((self._finished, request))


def _unless_cancelled(request: Request, work: Callable[[], Any]) -> Any:
    """(A worker's thread) ``work()`` for ``request`` unless it was cancelled; its failure (or the cancel) is the
    request's answer, None then."""
    try:
        if request.cancelled:
            raise CancelledError()
        return work()
    except BaseException as exc:  # the picture's own failure (a read, finishing): its answer
        request.answer(exc, failed=True)
        return None
