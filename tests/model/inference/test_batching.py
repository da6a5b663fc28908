"""The predictor's request queue (``model/inference/batching.py``): pictures of two padded sizes run as a batch
per size, each giving what it gives alone; a picture with nothing being read runs at once; a ``Segmenter`` shared
by threads batches their pictures together, each answer the picture's own; a batch leaves with the pictures
that are ready (none waits behind another's read); a failure anywhere in a batch is its pictures' alone; the
finishing workers take the cheapest task first and leave one worker to small ones."""
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from solov2 import ModelSpec, Segmenter
from solov2.api.segmenter import instances_of
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.model.inference import batching
from solov2.model.inference.batching import Batching, Prepared, Request, RequestQueue
from solov2.model.inference.memory import MemoryBudget
from solov2.model.inference.pipeline import PipelineOptions, Predictor
from tests.helpers import REPO_DIR

SMALL_MODEL = ModelSpec(SHIPPED_WEIGHTS, backend='dygraph', threads=1)
NAMES = ['shapes_000023.jpg', 'shapes_wide.jpg', 'shapes_000042.jpg', 'shapes_wide.jpg']


def _batched(batching_options, names=NAMES):
    """Each named picture's row submitted at once through a predictor batching as ``batching_options`` say (the
    runs' waits and seconds in ``runs``), and each picture's (prepared, row) alone; the segmenter."""
    segmenter, runs = Segmenter(SMALL_MODEL), []
    engine = segmenter.backend
    predictor = Predictor(engine, pipeline=PipelineOptions(Batching(*batching_options,
                                                                    on_batch=lambda *run: runs.append(run))))
    pictures, gate = [segmenter.rgb(str(REPO_DIR / SAMPLE_IMAGES / name)) for name in names], threading.Event()
    requests = [predictor.submit(picture, lambda rgb: gate.wait(30) and rgb, lambda _, prepared, row: (prepared, row))
                for picture in pictures]
    gate.set()          # no read ends before every picture is queued (else a loaded machine's batches vary)
    return segmenter, predictor, runs, [request.future.result(30) for request in requests]


def test_sizes_submitted_in_turn_run_a_batch_each_with_the_answers_of_one_at_a_time():
    segmenter, predictor, runs, answers = _batched((4, 1.0))
    assert sorted(len(waits) for waits, _ in runs) == [2, 2]
    assert all(min(waits) >= 0 and seconds > 0 for waits, seconds in runs)
    for prepared, row in answers:
        alone = predictor.network([(prepared.chw, prepared.meta)])[0]
        for got, expected in zip(row, alone):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_sizes_share_a_run_within_max_padding_with_the_answers_of_one_at_a_time():
    """Two squares (320x320) and two wide pictures (320x640) padded to one run: 1.33x their own
    pixels, within ``max_padding`` 0.5; each answer is the picture's own (each field but the score)."""
    segmenter, predictor, runs, answers = _batched((4, 1.0, 0.5))
    assert [len(waits) for waits, _ in runs] == [4]
    for prepared, row in answers:
        own = predictor.network([(prepared.chw, prepared.meta)])[0]
        alone = instances_of(segmenter.class_names, predictor.finish(own, prepared.meta)).to_dict()
        got = instances_of(segmenter.class_names, predictor.finish(row, prepared.meta)).to_dict()
        assert [{**one, 'score': None} for one in got['instances']] == \
            [{**one, 'score': None} for one in alone['instances']]          # every field but the score


def test_a_picture_with_nothing_being_read_runs_at_once():
    began = time.monotonic()
    _batched((4, 30.0), NAMES[:1])
    assert time.monotonic() - began < 10          # not the 30 s it would wait for company


def test_a_segmenter_shared_by_threads_batches_their_pictures_each_answer_its_own():
    """Eight threads calling one ``Segmenter`` on pictures of one size at once: the pictures that
    arrive while a batch runs share the next (fewer network runs than pictures), each thread gets the
    answer of its picture alone; a thread alone runs its picture at once, on the predictor's network thread."""
    segmenter = Segmenter(SMALL_MODEL)
    pictures = [str(REPO_DIR / SAMPLE_IMAGES / name) for name in ('shapes_000023.jpg', 'shapes_000042.jpg',
                                                                   'shapes_000057.jpg', 'shapes_000083.jpg')] * 2
    alone = [segmenter(picture).to_dict() for picture in pictures]
    queue, runs, threads = segmenter.predictor.queue, [], set()
    network = queue.network

    def counted(rows, *args):
        runs.append(len(rows))
        threads.add(threading.current_thread().name)
        return network(rows, *args)
    queue.network = counted
    start = threading.Barrier(len(pictures))
    with ThreadPoolExecutor(len(pictures)) as pool:
        answers = list(pool.map(lambda picture: (start.wait(), segmenter(picture).to_dict())[1], pictures))
    assert sum(runs) == len(pictures) and len(runs) < len(pictures) and max(runs) <= 4, runs
    for got, want in zip(answers, alone):
        assert [{**one, 'score': round(one['score'], 3)} for one in got['instances']] == \
            [{**one, 'score': round(one['score'], 3)} for one in want['instances']]
    runs.clear()
    threads.clear()
    segmenter(pictures[0])
    assert runs == [1] and {name.rsplit('_', 1)[0] for name in threads} == {'solov2-network'}


def _queue(network, batching_options=Batching(max_batch=4), readers=2, workers=1) -> RequestQueue:
    engine = types.SimpleNamespace(mixes_sizes=False, run_size=lambda hw: hw, max_batch=0)
    return RequestQueue(network, engine, batching_options, readers, workers, MemoryBudget(0))


def _request(value, read_s=0.0, finish=lambda picture, row: row, caller=None) -> Request:
    """A request whose picture's value is ``value`` (its read taking ``read_s``); its row is that value."""
    def load():
        time.sleep(read_s)
        return Prepared(np.zeros((1, 1, 3), np.uint8), np.full((3, 32, 32), value, np.float32), None)
    return Request(load, finish, None, caller=caller)


def _values(rows, params, max_padding):
    return [float(chw[0, 0, 0]) for chw, _ in rows]


class _SlowFile:
    """A binary file object whose ``read`` takes ``seconds`` (a slow upload, a network disk)."""

    def __init__(self, data: bytes, seconds: float):
        self.data, self.seconds = data, seconds

    def read(self):
        time.sleep(self.seconds)
        return self.data


def test_a_batch_leaves_with_the_pictures_that_are_ready_none_waits_behind_anothers_read():
    """One thread's list of two (one batch) whose second picture takes 2 s to read: another thread's picture,
    read at once, is answered within a second, not after that read; the list's answers are its pictures' own.
    Before, the batch of the oldest list waited for its reads with no bound (another call waited 1.8 s)."""
    segmenter = Segmenter(SMALL_MODEL)
    path = REPO_DIR / SAMPLE_IMAGES / 'shapes_000023.jpg'
    segmenter(str(path))
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(segmenter, [str(path), _SlowFile(path.read_bytes(), 2.0)], batch_size=2)
        time.sleep(0.3)
        began = time.monotonic()
        segmenter(str(path))
        took = time.monotonic() - began
        assert len(slow.result(30)) == 2
    assert took < 1.0, took


def test_finishing_takes_the_cheapest_task_first_and_leaves_a_worker_to_small_ones(monkeypatch):
    """Issue 83 item 2, the service's finishing fair by cost: three large pictures finishing slowly (0.6 s each)
    and then a small one; with two finishing workers the small one never waits behind them (a large task never
    takes the last free worker), with one it waits at most one of them (cheapest first, not first come)."""
    monkeypatch.setattr(batching, 'LARGE_BYTES', 100)
    for workers, most in ((2, 0.4), (1, 1.0)):
        ended = []

        def finish(picture, row):
            time.sleep(0.6 if picture.image.size > 100 else 0.0)
            ended.append(row)
            return row
        queue = _queue(_values, Batching(max_batch=1), workers=workers)

        def request(value, side):
            def load():
                return Prepared(np.zeros((side, side, 3), np.uint8), np.full((3, 32, 32), value, np.float32), None)
            return Request(load, finish, None)
        large = [request(float(value), 64) for value in range(3)]
        for one in large:
            queue.submit([one])
        time.sleep(0.2)
        began, small = time.monotonic(), request(9.0, 4)
        queue.submit([small])
        assert small.future.result(10) == 9.0 and time.monotonic() - began < most, (workers, ended)
        assert sorted(one.future.result(10) for one in large) == [0.0, 1.0, 2.0] and ended.index(9.0) < 3
        queue.close()


def test_a_failure_anywhere_in_a_batch_fails_its_pictures_and_the_queue_keeps_serving(monkeypatch):
    """A failure injected at each stage of a batch (forming it, the engine, a wrong count of rows, the
    ``on_batch`` hook) fails that batch's pictures with its reason; pictures submitted after each still run."""
    faults = {'take': 0, 'engine': 0, 'rows': 0, 'hook': 0}

    def fault(stage):
        if faults[stage]:
            faults[stage] -= 1
            raise RuntimeError(f'injected in {stage}')

    def network(rows, params, max_padding):
        fault('engine')
        return _values(rows, params, max_padding) + ([None] if faults['rows'] and not faults.update(rows=0) else [])
    share = batching.share_batches
    monkeypatch.setattr(batching, 'share_batches', lambda *args: fault('take') or share(*args))
    queue = _queue(network, Batching(max_batch=4, on_batch=lambda *run: fault('hook')))
    for stage in faults:
        faults[stage] = 1
        failed = _request(0.0)
        queue.submit([failed])
        reason = 'results for a batch of 1' if stage == 'rows' else f'injected in {stage}'
        with pytest.raises(RuntimeError, match=reason):
            failed.future.result(10)
        later = [_request(float(k)) for k in range(3)]
        for request in later:
            queue.submit([request])
        assert [request.future.result(10) for request in later] == [0.0, 1.0, 2.0]
    queue.close()


def test_a_caller_touches_no_lock_of_the_queue_only_its_inbox_and_its_requests_c_lock():
    """An interrupt lands in the caller's thread: what the caller calls (``submit``, ``Request.wait``,
    ``cancel``) takes no lock the queue's threads need. The queue and the budget hold no lock at all (their
    state is the queue thread's alone); a request's answer is a C lock its owner releases once."""
    import _thread
    import queue as queues
    queue = _queue(_values)
    assert isinstance(queue._inbox, queues.SimpleQueue)
    kinds = (type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Event)
    for holder in (queue, queue.budget, queue.reading, _request(0.0)):
        assert not [name for name, value in vars(holder).items() if isinstance(value, kinds) and name != '_answered']
    assert isinstance(_request(0.0)._answered, _thread.LockType)
    queue.close()
