"""model/inference/pipeline.py: order, failures, and helpers on one thread while it runs."""
import cv2
import numpy as np
import threadpoolctl

from solov2.model.inference.pipeline import default_finish_workers, run_pipeline


def _openblas_threads():
    return [pool['num_threads'] for pool in threadpoolctl.threadpool_info() if pool['internal_api'] == 'openblas']


def test_pipeline_runs_every_item_with_single_threaded_helpers():
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
    assert all(threads == 1 and set(blas) <= {1} for _, threads, blas in finished.values())
    assert cv2.getNumThreads() == 2 and _openblas_threads() == before


def test_default_finish_workers():
    assert [default_finish_workers(cores) for cores in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]
