"""Pictures of several sizes in one network run (``model/region.py``): which pictures share a run
(``share_batches``, hand-built cases), and that one run of pictures of six padded sizes gives
each the answer it gets alone, exactly as users see it (labels, boxes, COCO RLE masks; scores
within 1e-4), on every engine that mixes sizes: dygraph, onnxruntime (the regions graph) and
OpenVINO with size buckets, with the shipped model on crops of the sample pictures."""
from pathlib import Path

import cv2
import pytest

from solov2.api.segmenter import instances_of
from solov2.config import get_config
from solov2.core.cache import compiled_cache
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.model.inference.backend import share_batches
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.pipeline import Predictor
from tests.helpers import REPO_DIR


class StandIn:
    """A backend as ``share_batches`` sees it: whether it mixes sizes, and its run sizes."""

    def __init__(self, mixes_sizes: bool, buckets=()):
        self.mixes_sizes, self.buckets = mixes_sizes, buckets

    def run_size(self, hw):
        return next((bucket for bucket in self.buckets if bucket[0] >= hw[0] and bucket[1] >= hw[1]), tuple(hw))


SIZES = [(320, 320), (320, 448), (320, 320), (448, 320), (320, 576), (320, 448)]


@pytest.mark.parametrize('backend, max_batch, max_padding, groups', [
    (StandIn(False), 0, 9.0, [[0, 2], [1, 5], [3], [4]]),                       # one padded size a run
    (StandIn(True), 0, 0.0, [[0, 2], [1, 5], [3], [4]]),                        # no padding allowed
    (StandIn(True), 2, 0.0, [[0, 2], [1, 5], [3], [4]]),
    (StandIn(True), 0, 0.25, [[0, 1, 2, 5], [3], [4]]),  # 4 x 320x448: 1.17x their own pixels; 5 x 320x576: 1.38x
    (StandIn(True), 0, 0.5, [[0, 1, 2, 4, 5], [3]]),     # 448x576 with 448x320: 1.63x
    (StandIn(True), 3, 0.5, [[0, 1, 2], [3, 5], [4]]),   # 448x448 with 448x320 + 320x448: 1.4x
    (StandIn(True), 0, 9.0, [[0, 1, 2, 3, 4, 5]]),
    (StandIn(True, [(320, 448), (448, 320), (320, 576)]), 0, 0.0, [[0, 1, 2, 5], [3], [4]]),    # a bucket a run
    (StandIn(False, [(320, 448), (448, 320), (320, 576)]), 0, 0.0, [[0, 2], [1, 5], [3], [4]]),
])
def test_which_pictures_share_a_run(backend, max_batch, max_padding, groups):
    assert share_batches(SIZES, backend, max_batch, max_padding) == groups


def pictures() -> list:
    """RGB crops of the sample pictures that preprocess (320/640) to six padded sizes: 320x320,
    320x640, 320x448, 448x320, 320x576 and 320x416 (the last in 320x448's size bucket)."""
    square, wide = (cv2.cvtColor(cv2.imread(str(REPO_DIR / SAMPLE_IMAGES / name)), cv2.COLOR_BGR2RGB)
                    for name in ('shapes_000023.jpg', 'shapes_wide.jpg'))
    return [square, wide, square[32:224], square[:, 32:224], wide[:, :450], wide[:, :320]]


def engines(folder: Path) -> dict:
    """The engines that mix sizes, each on the shipped model; OpenVINO's compiled models in the
    session's cache (``compiled_cache``, as the service keeps them: tests/serving/test_engines.py
    compiles the same buckets)."""
    from solov2.model.inference.onnxruntime_backend import OnnxBackend
    from solov2.model.inference.openvino_backend import OpenVinoBackend
    return {'dygraph': lambda: DygraphBackend(get_config(9), str(SHIPPED_WEIGHTS), device='cpu', threads=1),
            'onnx': lambda: OnnxBackend(str(folder), threads=1),
            'openvino': lambda: OpenVinoBackend(str(folder), threads=1, buckets=True, compiled_cache=compiled_cache())}


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    pytest.importorskip('onnxruntime', reason='deploy test: needs requirements-deploy.txt')
    pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
    from tests.helpers import shipped_onnx_export
    return shipped_onnx_export(tmp_path_factory.mktemp('mixed') / 'export')


@pytest.mark.deploy
@pytest.mark.parametrize('engine', ['dygraph', 'onnx', 'openvino'])
def test_one_run_of_several_sizes_gives_each_picture_its_own_answer(folder, engine, monkeypatch):
    backend = engines(folder)[engine]()
    assert backend.mixes_sizes
    predictor = Predictor(backend)
    ready = [predictor.prepare(rgb) for rgb in pictures()]
    assert len({chw.shape for chw, _ in ready}) == 6
    params, runs, run = predictor.params, [], backend.run
    monkeypatch.setattr(backend, 'run', lambda batch, *rest: runs.append(len(batch)) or run(batch, *rest))
    rows = predictor.network(ready, params, max_padding=9.0)
    assert runs == [6]
    for (chw, meta), row in zip(ready, rows):
        alone = predictor.network([(chw, meta)], params)[0]
        got = instances_of(backend.class_names, predictor.finish(row, meta, params)).to_dict()
        want = instances_of(backend.class_names, predictor.finish(alone, meta, params)).to_dict()
        assert len(got['instances']) == len(want['instances']) > 0
        for one, other in zip(got['instances'], want['instances']):
            assert {**one, 'score': None} == {**other, 'score': None}        # every field but the score
            assert one['score'] == pytest.approx(other['score'], abs=1e-4)
