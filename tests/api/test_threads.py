"""One Segmenter called from several threads at once gives the answers of one thread, on
every backend (docs/api.md, "Threads"): dygraph, Paddle Inference, onnxruntime and OpenVINO
f32 (one and two streams), on the shipped model (at a smaller test size, for speed). The
pictures have four input sizes, all run by OpenVINO's one dynamic-shape model, compiled by
the first call while the other threads wait for it. OpenVINO int8 (a static model per size)
runs the same request pools and compile lock as f32 and is left out: quantizing the model
takes about 40 s on 2 cores.

Tolerances: scores within 1e-3 and masks IoU >= 0.999 (runtimes differ by ~1e-5, and a soft
mask pixel at the 0.5 threshold may land on the other side); a call that got another
call's outputs or overwritten buffers has other labels or other scores."""
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np
import pytest

from solov2.api import Instances, Segmenter
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.model.inference.auto_backend import installed_engines
from tests.helpers import shipped_onnx_export, shipped_paddle_export

THREADS = 4
ROUNDS = 1
SCORE_TOL = 1e-3
MIN_MASK_IOU = 0.999
ONNX_EXPORT = ('paddle2onnx', 'onnx')
SMALLER = {'test_short': 192, 'test_max': 384}


def _pictures():
    """The sample pictures and two resized copies: [H, W, 3] uint8 BGR, network inputs of
    four sizes at ``SMALLER`` (192x192, 192x384, 192x320, 288x192)."""
    pictures = [cv2.imread(str(path)) for path in sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))]
    return pictures + [cv2.resize(pictures[0], (320, 200)), cv2.resize(pictures[1], (200, 300))]


@pytest.fixture(scope='module')
def exported(run_builds):
    """A folder with the shipped model for Paddle Inference (the test run's one: ``shipped_paddle_export``)."""
    return str(shipped_paddle_export(run_builds))


@pytest.fixture(scope='module')
def exported_onnx(tmp_path_factory):
    """A folder with the shipped model in ONNX (the test run's ``auto`` export: ``shipped_onnx_export``)."""
    if not all(find_spec(name) for name in ONNX_EXPORT) or not installed_engines():
        pytest.skip('deploy test: needs requirements-deploy.txt')
    return str(shipped_onnx_export(tmp_path_factory.mktemp('threads') / 'onnx'))


def _from_threads(seg: Segmenter, pictures):
    """[thread][round][picture] instances: ``THREADS`` threads, started together, each
    segmenting every picture ``ROUNDS`` times in its own order."""
    barrier = threading.Barrier(THREADS)

    def work(thread: int):
        orders = [np.random.default_rng([thread, r]).permutation(len(pictures)) for r in range(ROUNDS)]
        barrier.wait(timeout=60)
        results = [[None] * len(pictures) for _ in range(ROUNDS)]
        for r, order in enumerate(orders):
            for index in order:
                results[r][index] = seg(pictures[index])
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(work, range(THREADS)))


def _assert_close(got: Instances, want: Instances, where: str):
    assert got.labels.tolist() == want.labels.tolist(), where
    np.testing.assert_allclose(got.scores, want.scores, atol=SCORE_TOL, err_msg=where)
    assert got.masks.shape == want.masks.shape, where
    for a, b in zip(got.masks, want.masks):
        assert (a & b).sum() >= MIN_MASK_IOU * (a | b).sum(), where


def _check(seg: Segmenter):
    pictures = _pictures()
    alone = [seg(picture) for picture in pictures]
    assert all(len(result) for result in alone)        # something to compare on every picture
    for thread, rounds in enumerate(_from_threads(seg, pictures)):
        for r, results in enumerate(rounds):
            for index, (got, want) in enumerate(zip(results, alone)):
                _assert_close(got, want, f'{seg.backend.name}: thread {thread}, round {r}, picture {index}')


def test_dygraph():
    _check(Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu', threads=2, overrides=SMALLER))


def test_paddle_inference(exported):
    _check(Segmenter(model_dir=exported, backend='inference', threads=2, overrides=SMALLER))


@pytest.mark.deploy
def test_onnxruntime(exported_onnx):
    pytest.importorskip('onnxruntime', reason='deploy test: needs requirements-deploy.txt')
    for name in ONNX_EXPORT:
        pytest.importorskip(name, reason='deploy test: needs requirements-deploy.txt')
    _check(Segmenter(model_dir=exported_onnx, backend='onnx', threads=2, overrides=SMALLER))


@pytest.mark.deploy
@pytest.mark.parametrize('streams', [1, 2])
def test_openvino_f32(exported_onnx, streams):
    """The default (one request per compiled model, one stream) and ``openvino_streams=2``
    (two requests of a compiled model running at once)."""
    pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
    for name in ONNX_EXPORT:
        pytest.importorskip(name, reason='deploy test: needs requirements-deploy.txt')
    seg = Segmenter(model_dir=exported_onnx, backend='openvino', threads=2,
                    overrides={**SMALLER, 'openvino_streams': streams})
    _check(seg)
    assert {pool.size for pool in seg.backend.compiled.values()} == {streams}


def test_a_segmenter_beside_training_waits_a_step_not_the_run(tmp_path):
    """``train`` holds Paddle's device and threads a step at a time: a dygraph ``Segmenter``
    built and called from another thread while it trains answers while the run goes on (it
    waited for the whole run before, 49.6 s for a 0.34 s call)."""
    import dataclasses

    from solov2 import TrainOptions, train
    from tests.helpers import TINY_TRAINING, make_tiny_shapes
    shapes = make_tiny_shapes(tmp_path / 'shapes', val=1)
    started, trainers = threading.Event(), []

    def on_start(trainer, folder) -> None:
        trainers.append(trainer)
        started.set()
    options = TrainOptions(config=9, output=str(tmp_path / 'run'), device='cpu', threads=1, eval_every=0,
                           overrides=(f'dataset_dir={shapes}', *TINY_TRAINING, 'epochs=1000'), max_iters=2000)
    training = threading.Thread(target=train, args=(options,), kwargs={'on_start': on_start}, daemon=True)
    training.start()
    assert started.wait(120), 'training did not start'
    answered = []
    call = threading.Thread(target=lambda: answered.append(Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu',
                                                                     threads=1)(_pictures()[0])), daemon=True)
    call.start()
    call.join(60)
    trainer = trainers[0]
    during = training.is_alive() and trainer.state.iteration < 2000
    trainer.schedule = dataclasses.replace(trainer.schedule, stop_at=0)       # ends the run at its next step
    training.join(120)
    assert answered and len(answered[0]) > 0 and during, 'the call waited for the training run to end'
    assert not training.is_alive()


def test_a_segmenter_beside_training_does_not_wait_for_its_evaluation(tmp_path):
    """The run's evaluation takes Paddle's settings one network call at a time, not for the whole
    evaluation: a dygraph ``Segmenter`` called from another thread while training evaluates
    answers before that evaluation ends (the evaluation here waits for the answer; before, the
    call waited for the evaluation, a 0.20 s call took 4.31 s with 100 validation pictures)."""
    import dataclasses

    from solov2 import TrainOptions, train
    from solov2.model.training.hooks import EvalHook
    from tests.helpers import TINY_TRAINING, make_tiny_shapes
    shapes = make_tiny_shapes(tmp_path / 'shapes', val=2)
    segmenter = Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu', threads=1)
    answered, during = threading.Event(), []

    def on_start(trainer, folder) -> None:
        evaluation = next(hook for hook in trainer.hooks if isinstance(hook, EvalHook))
        real = evaluation.evaluate

        def evaluate_after_an_answer(*args):
            threading.Thread(target=lambda: (segmenter(_pictures()[0]), answered.set()), daemon=True).start()
            during.append(answered.wait(30))          # the evaluation goes on once the call answered
            trainer.schedule = dataclasses.replace(trainer.schedule, stop_at=0)
            return real(*args)
        evaluation.evaluate = evaluate_after_an_answer
    options = TrainOptions(config=9, output=str(tmp_path / 'run'), device='cpu', threads=1, eval_every=1,
                           overrides=(f'dataset_dir={shapes}', *TINY_TRAINING, 'epochs=1000'), max_iters=2000)
    summary = train(options, on_start=on_start)
    assert during and during[0], 'the call waited for the evaluation to end'
    assert summary.best_ap is not None
