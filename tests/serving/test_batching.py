"""The batcher on its own: pictures of two padded sizes queued in turn run as a batch per size,
each giving what it gives alone, and says how long each picture waited and each run took."""
import os
import time

import numpy as np

from solov2 import Segmenter
from solov2.api.segmenter import instances_of
from solov2.core.paths import SAMPLE_IMAGES
from solov2.serving.batching import Batcher
from tests.helpers import REPO_DIR
from tests.serving.running import SMALL_MODEL


def test_sizes_queued_in_turn_run_a_batch_each_with_the_answers_of_one_at_a_time():
    segmenter, runs = Segmenter(SMALL_MODEL), []
    predictor, params = segmenter.predictor, segmenter.predictor.params
    names = ['shapes_000023.jpg', 'shapes_wide.jpg', 'shapes_000042.jpg', 'shapes_wide.jpg']
    prepared = [predictor.prepare(segmenter.rgb(str(REPO_DIR / SAMPLE_IMAGES / name))) for name in names]
    batcher = Batcher(segmenter, max_batch=4, max_wait_s=1.0, on_batch=lambda *run: runs.append(run))
    try:
        rows = [future.result(30) for future in [batcher.submit(chw, meta, params) for chw, meta in prepared]]
    finally:
        batcher.close()
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
    batcher = Batcher(segmenter, max_batch=4, max_wait_s=1.0, on_batch=lambda *run: runs.append(run),
                      max_padding=0.5)
    try:
        rows = [future.result(30) for future in [batcher.submit(chw, meta, params) for chw, meta in prepared]]
    finally:
        batcher.close()
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
    batcher = Batcher(segmenter, max_batch=4, max_wait_s=30.0, coming=lambda: 0)
    try:
        began = time.monotonic()
        batcher.submit(chw, meta, segmenter.predictor.params).result(30)
        assert time.monotonic() - began < 10          # not the 30 s it would wait for company
    finally:
        batcher.close()


def test_helper_threads_follow_the_one_threads_per_core_rule(monkeypatch):
    """0 helper threads (the default) is one per core this process may use (its CPU affinity,
    ``model.runtime.cpu_threads``), not the machine's count."""
    from solov2.serving.app import ServeSettings, Service
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    service = Service(ServeSettings(SMALL_MODEL))
    assert service.pool._max_workers == 8
    service.pool.shutdown()
