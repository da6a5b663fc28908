"""model/inference/pipeline.py: order, failures, memory in flight; the process's helper threads left alone."""
import threading
import time

import cv2
import numpy as np
import threadpoolctl

from solov2.model.inference.pipeline import array_bytes, default_finish_workers, run_pipeline


def _openblas_threads():
    return [pool['num_threads'] for pool in threadpoolctl.threadpool_info() if pool['internal_api'] == 'openblas']


def test_pipeline_runs_every_item_and_leaves_the_helpers_threads_as_they_are():
    np.ones((64, 64)) @ np.ones((64, 64))                  # numpy's BLAS is loaded
    cv2.setNumThreads(2)
    before = _openblas_threads()
    seen, finished = [], {}

    def load(item):
        if item == 3:
            raise ValueError('unreadable')
        return item * 10

    def model(loaded):
        seen.append(loaded)
        return loaded + 1

    def finish(item, loaded, out):
        finished[item] = (out, cv2.getNumThreads(), _openblas_threads())

    stats = run_pipeline(range(6), load, model, finish, finish_workers=2)
    assert seen == [0, 10, 20, 40, 50]                       # the model stage keeps the item order
    assert stats.done == 5 and stats.failed == [(3, 'unreadable')]
    assert {item: out for item, (out, _, _) in finished.items()} == {0: 1, 1: 11, 2: 21, 4: 41, 5: 51}
    assert all(threads == 2 and blas == before for _, threads, blas in finished.values())
    assert cv2.getNumThreads() == 2 and _openblas_threads() == before


def test_default_finish_workers():
    assert [default_finish_workers(cores) for cores in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]


def _alive_at_most(sizes, in_flight_bytes):
    """The most items loaded and not yet finished at once, running items whose loads hold ``sizes``
    bytes each through a pipeline whose finishing is slow; and the items finished."""
    lock, alive, most, finished = threading.Lock(), [0], [0], []

    def load(item):
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        return np.zeros(sizes[item], np.uint8), ('meta', [np.zeros(1, np.uint8)])

    def finish(item, loaded, out):
        time.sleep(0.05)
        finished.append(item)
        with lock:
            alive[0] -= 1

    run_pipeline(range(len(sizes)), load, lambda loaded: None, finish, in_flight_bytes=in_flight_bytes)
    return most[0], finished


def test_large_items_in_flight_are_bounded_by_bytes_small_ones_are_not():
    assert array_bytes((np.zeros(5), [np.zeros(2, np.uint8), {'a': np.zeros(3, np.int32)}], 'text')) == 40 + 2 + 12
    most, finished = _alive_at_most([1000] * 10, in_flight_bytes=3001)
    assert most <= 3 and sorted(finished) == list(range(10))
    most, finished = _alive_at_most([1000] * 10, in_flight_bytes=10)     # larger than the budget: one at a time
    assert most == 1 and sorted(finished) == list(range(10))
    most, finished = _alive_at_most([10] * 10, in_flight_bytes=3001)
    assert most >= 5 and sorted(finished) == list(range(10))                     # loads run ahead of the slow finishing
