"""The service on the exported engines, with the shipped model: concurrent pictures of six padded
sizes, two of each, share network runs and each gets the answer ``Segmenter`` gives it alone on that engine
(labels, boxes, RLE exact; scores within 1e-4), on onnxruntime (sizes mixed within
``max_padding``, through the regions graph) and on OpenVINO with size buckets (a bucket a run),
whose static models are all compiled before ``/readyz`` says ready and none after."""
import logging
from concurrent.futures import ThreadPoolExecutor

import cv2
import pytest

from solov2 import ModelSpec, Segmenter
from tests.model.inference.test_mixed_batches import pictures
from tests.serving.running import ServeSettings, metric_families, serving
from tests.serving.test_service import same_answer

pytestmark = pytest.mark.deploy
COMPILED = 'compiled for'          # OpenVINO's line for each static model


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    pytest.importorskip('onnxruntime', reason='deploy test: needs requirements-deploy.txt')
    pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
    from tests.helpers import shipped_onnx_export
    return str(shipped_onnx_export(tmp_path_factory.mktemp('engines') / 'export'))


def runs(client) -> float:
    families = metric_families(client)
    return next(s.value for s in families['solov2_stage_seconds'].samples
                if s.name == 'solov2_stage_seconds_count' and s.labels['stage'] == 'network')


# onnxruntime mixes every size: fewer runs than padded sizes. OpenVINO runs a size bucket a run:
# five buckets, the first picture run alone as it arrives, so at most 8 runs leaves room for one straggler
@pytest.mark.parametrize('engine, overrides, max_padding, most_runs',
                         [('onnx', (), 2.0, 5), ('openvino', ('openvino_buckets=all',), 0.0, 8)])
def test_pictures_of_several_sizes_share_runs_with_their_own_answers(folder, engine, overrides, max_padding, most_runs,
                                                                     caplog):
    model = ModelSpec(backend=engine, model_dir=folder, threads=1, overrides=overrides)
    distinct = [cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes() for rgb in pictures()]
    bodies = distinct * 2
    settings = ServeSettings(model, max_batch=4, max_wait_ms=1000, max_padding=max_padding)
    with caplog.at_level(logging.INFO, logger='solov2.model.inference.openvino_backend'), serving(settings) as client:
        compiled = caplog.text.count(COMPILED)
        before = runs(client)
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda data: client.post('/v1/segment', content=data), bodies))
        assert [answer.status_code for answer in answers] == [200] * len(bodies)
        assert runs(client) - before <= most_runs     # twelve pictures: sizes shared runs
        assert caplog.text.count(COMPILED) == compiled      # nothing compiled once ready
    assert compiled == (7 if engine == 'openvino' else 0)   # each bucket of 320/640, before ready
    with Segmenter(model) as alone:                   # each distinct picture's answer alone, once
        expected = [alone(data).to_dict() for data in distinct]
    for index, answer in enumerate(answers):
        same_answer(answer.json(), expected[index % len(distinct)])
