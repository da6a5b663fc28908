"""The predictor's network stage (``model/inference/batching.py``): pictures of two padded sizes queued
in turn run as a batch per size, each giving what it gives alone, saying how long each picture waited
and each run took; a picture with nothing coming runs at once; a ``Segmenter`` shared by threads
batches their pictures together, each answer the picture's own."""
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from solov2 import ModelSpec, Segmenter
from solov2.api.segmenter import instances_of
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.model.inference.batching import Batching, NetworkQueue
from tests.helpers import REPO_DIR

SMALL_MODEL = ModelSpec(SHIPPED_WEIGHTS, backend='dygraph', threads=1)


def test_sizes_queued_in_turn_run_a_batch_each_with_the_answers_of_one_at_a_time():
    segmenter, runs = Segmenter(SMALL_MODEL), []
    predictor, params = segmenter.predictor, segmenter.predictor.params
    names = ['shapes_000023.jpg', 'shapes_wide.jpg', 'shapes_000042.jpg', 'shapes_wide.jpg']
    prepared = [predictor.prepare(segmenter.rgb(str(REPO_DIR / SAMPLE_IMAGES / name))) for name in names]
    queue = NetworkQueue(predictor.network, segmenter.backend, Batching(4, 1.0, on_batch=lambda *run: runs.append(run)),
                         coming=lambda: 1)
    rows = [future.result(30) for future in [queue.submit(chw, meta, params) for chw, meta in prepared]]
    assert sorted(len(waits) for waits, _ in runs) == [2, 2]
    assert all(max(waits) >= 1.0 and min(waits) >= 0 and seconds > 0 for waits, seconds in runs)   # max_wait_s
    for (chw, meta), row in zip(prepared, rows):
        alone = predictor.network([(chw, meta)], params)[0]
        for got, expected in zip(row, alone):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_sizes_share_a_run_within_max_padding_with_the_answers_of_one_at_a_time():
    """Two squares (320x320) and two wide pictures (320x640) padded to one run: 1.33x their own
    pixels, within ``max_padding`` 0.5; each answer is the picture's own (each field but the score)."""
    segmenter, runs = Segmenter(SMALL_MODEL), []
    predictor, params = segmenter.predictor, segmenter.predictor.params
    names = ['shapes_000023.jpg', 'shapes_wide.jpg', 'shapes_000042.jpg', 'shapes_wide.jpg']
    prepared = [predictor.prepare(segmenter.rgb(str(REPO_DIR / SAMPLE_IMAGES / name))) for name in names]
    queue = NetworkQueue(predictor.network, segmenter.backend,
                         Batching(4, 1.0, 0.5, on_batch=lambda *run: runs.append(run)), coming=lambda: 1)
    rows = [future.result(30) for future in [queue.submit(chw, meta, params) for chw, meta in prepared]]
    assert [len(waits) for waits, _ in runs] == [4]
    for (chw, meta), row in zip(prepared, rows):
        own = predictor.network([(chw, meta)], params)[0]
        alone = instances_of(segmenter.class_names, predictor.finish(own, meta, params)).to_dict()
        got = instances_of(segmenter.class_names, predictor.finish(row, meta, params)).to_dict()
        assert [{**one, 'score': None} for one in got['instances']] == \
            [{**one, 'score': None} for one in alone['instances']]          # every field but the score


def test_a_picture_with_nothing_coming_runs_at_once():
    segmenter = Segmenter(SMALL_MODEL)
    chw, meta = segmenter.predictor.prepare(segmenter.rgb(str(REPO_DIR / SAMPLE_IMAGES / 'shapes_000023.jpg')))
    queue = NetworkQueue(segmenter.predictor.network, segmenter.backend, Batching(4, 30.0), coming=lambda: 0)
    began = time.monotonic()
    queue.submit(chw, meta, segmenter.predictor.params).result(30)
    assert time.monotonic() - began < 10          # not the 30 s it would wait for company


def test_a_segmenter_shared_by_threads_batches_their_pictures_each_answer_its_own():
    """Eight threads calling one ``Segmenter`` on pictures of one size at once: the pictures that
    arrive while a batch runs share the next (fewer network runs than pictures), each thread gets the
    answer of its picture alone; a thread alone runs its picture at once, on its own thread."""
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
    assert runs == [1] and threads == {threading.current_thread().name}


def test_a_caller_running_the_queue_leaves_once_its_own_pictures_are_done():
    """The caller that waits for its picture (``serve`` within ``hosting``) runs the queue on its own thread,
    only until its own picture is done: pictures that other callers queued meanwhile (one a run here, 0.2 s
    each) run on a thread of the queue's, so the first caller answers after its own run, not after theirs."""
    engine = types.SimpleNamespace(mixes_sizes=False, run_size=lambda hw: hw, max_batch=0)

    def network(rows, params, max_padding):
        time.sleep(0.2)
        return [threading.current_thread().name] * len(rows)
    queue = NetworkQueue(network, engine, Batching(max_batch=1), coming=lambda: 0)
    picture = np.zeros((3, 64, 64), np.float32)
    others = []

    def caller():
        with queue.hosting():
            mine = queue.submit(picture, None, None)
            queue.serve(mine)
        others.append(mine.result())
    first = threading.Thread(target=caller)
    began = time.monotonic()
    first.start()
    time.sleep(0.05)                                         # its run has begun
    late = [queue.submit(picture, None, None) for _ in range(3)]
    first.join()
    took = time.monotonic() - began
    assert took < 0.5 and others[0] == first.name, (took, others)
    assert {future.result(5) for future in late} == {'solov2-network'}


def test_a_failure_anywhere_in_a_batch_fails_its_pictures_and_the_queue_keeps_serving(monkeypatch):
    """A failure injected at each stage of a batch (forming it, the engine, a wrong count of rows, the
    ``on_batch`` hook) fails that batch's pictures with its reason; pictures submitted after each
    still run (the queue never stays claimed by a runner that died)."""
    from solov2.model.inference import batching
    engine = types.SimpleNamespace(mixes_sizes=False, run_size=lambda hw: hw, max_batch=0)
    faults = {'take': 0, 'engine': 0, 'rows': 0, 'hook': 0}

    def fault(stage):
        if faults[stage]:
            faults[stage] -= 1
            raise RuntimeError(f'injected in {stage}')

    def network(rows, params, max_padding):
        fault('engine')
        return [float(chw[0, 0, 0]) for chw, _ in rows] + ([None] if faults['rows'] and not faults.update(rows=0)
                                                           else [])
    share = batching.share_batches
    monkeypatch.setattr(batching, 'share_batches', lambda *args: fault('take') or share(*args))
    queue = NetworkQueue(network, engine, Batching(max_batch=4, on_batch=lambda *run: fault('hook')),
                         coming=lambda: 0)
    picture = np.zeros((3, 32, 32), np.float32)
    for stage in faults:
        faults[stage] = 1
        failed = queue.submit(picture, None, None)
        reason = 'results for a batch of 1' if stage == 'rows' else f'injected in {stage}'
        with pytest.raises(RuntimeError, match=reason):
            failed.result(10)
        assert [future.result(10) for future in [queue.submit(picture + k, None, None) for k in range(3)]] == \
            [0.0, 1.0, 2.0]
        with queue.hosting():
            mine = queue.submit(picture + 5, None, None)
            assert queue.serve(mine) > 0 and mine.result() == 5.0


def test_the_queue_and_the_budget_are_held_only_by_c_locks_which_an_interrupt_cannot_leave_held():
    """Ctrl-C raises in the caller's thread right after a call returns: after a Condition's ``__enter__`` (a
    Python function) took its lock, the ``with`` block is not yet set up and the lock stays held for good,
    every other thread of the predictor then waiting on it (the demo hung so once in about 20 interrupts).
    The queue and the budget are entered only through their C lock's own ``with``, whose acquire and set-up
    are one step."""
    import inspect

    from solov2.model.inference import batching, memory
    queue = NetworkQueue(lambda *args: [], None, Batching(), coming=lambda: 0)
    budget = memory.MemoryBudget(10)
    for holder, condition in ((queue, queue._wake), (budget, budget._room)):
        assert not isinstance(type(holder._lock).__enter__, types.FunctionType)        # a C lock's own
        assert condition._lock is holder._lock                                   # the one the Condition waits on
    for module, condition in ((batching, 'self._wake'), (memory, 'self._room')):
        assert f'with {condition}' not in inspect.getsource(module)
