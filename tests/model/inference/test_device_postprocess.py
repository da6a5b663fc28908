"""The device post-processing (Paddle ops, run here on the CPU) against the numpy path."""
import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np
import paddle
import pytest

from solov2 import SHIPPED_WEIGHTS
from solov2.config import get_config
from solov2.core.errors import InputError
from solov2.core.paths import SAMPLE_IMAGES
from solov2.data.masks import CroppedMasks
from solov2.data.transforms import ImageMeta, read_image
from solov2.model.inference import device_postprocess
from solov2.model.inference.device_postprocess import matrix_nms as device_nms
from solov2.model.inference.device_postprocess import (
    paste_on_device,
    paste_step,
    postprocess_on_device,
    product_dtype,
    ranked,
)
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.media import frame_reader
from solov2.model.inference.pipeline import Predictor, default_finish_workers
from solov2.model.inference.postprocess import (
    InferenceParams,
    matrix_nms,
    paste_detections,
    paste_in_boxes,
    postprocess_flat,
)
from tests.model.inference.test_postprocess import _random_case, _soft_masks


def _same_instances(device, numpy_path):
    """Same labels and order, scores within 1e-5."""
    assert len(device) == len(numpy_path)
    np.testing.assert_array_equal(device.labels, numpy_path.labels)
    np.testing.assert_allclose(device.scores, numpy_path.scores, rtol=1e-5, atol=1e-7)


def _on_device(outputs, params):
    """``postprocess_on_device`` of numpy ``outputs``, each picture the whole padded size of its mask features."""
    padded = tuple(4 * side for side in outputs[2].shape[2:])
    metas = [ImageMeta(padded, padded, padded)] * len(outputs[2])
    return postprocess_on_device(*(paddle.to_tensor(a) for a in outputs), params, metas)


@pytest.mark.parametrize('values', [
    [0.5, 0.2, 0.5, 0.9, 0.2, 0.2, 0.0],
    [0.3] * 6,
    list(np.random.default_rng(0).integers(0, 4, 50) / 4),
])
def test_ranked_orders_as_a_stable_sort(values):
    values = np.asarray(values, np.float32)
    want = np.argsort(-values, kind='stable')
    np.testing.assert_array_equal(ranked(paddle.to_tensor(values)).numpy(), want)
    np.testing.assert_array_equal(ranked(paddle.to_tensor(values), 3).numpy(), want[:3])


@pytest.mark.parametrize('kernel', ['gaussian', 'linear'])
def test_matrix_nms_on_one_matrix_equals_the_class_blocks(kernel):
    rng = np.random.default_rng(5)
    masks = rng.random((90, 40)) < 0.3
    masks[7] = masks[3]
    labels = rng.integers(0, 6, 90)
    labels[7] = labels[3]
    scores = np.sort(rng.random(90).astype(np.float32))[::-1].copy()
    areas = masks.sum(1).astype(np.float32)
    want = matrix_nms(masks, labels, scores, areas, kernel, 2.0)
    got = device_nms(paddle.to_tensor(masks.astype(np.float32)), paddle.to_tensor(labels),
                     paddle.to_tensor(scores), paddle.to_tensor(areas), kernel, 2.0).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def _case(seed, grids, **kw):
    scores, kernels, feat = _random_case(seed, grids=grids, **kw)
    return scores[None], kernels[None], feat[None]


@pytest.mark.parametrize('seed, grids, nms_pre, max_per_image, kw', [
    (0, (8, 4), 500, 100, {}),
    (1, (8, 4), 500, 100, {'sharp': 3.0}),
    (2, (12, 8), 30, 20, {'score_power': 1.5, 'sharp': 20.0}),     # more candidates than nms_pre
    (3, (12, 8), 10, 100, {'score_power': 1.0}),                    # over SCAN_LIMIT * nms_pre candidates
    (4, (8, 4), 500, 5, {'classes': 2}),
])
@pytest.mark.parametrize('kernel', ['gaussian', 'linear'])
def test_device_detections_equal_the_numpy_path(seed, grids, nms_pre, max_per_image, kw, kernel):
    outputs = _case(seed, grids, **kw)
    params = InferenceParams(num_grids=grids, segm_strides=(1, 2), nms_pre=nms_pre, max_per_image=max_per_image,
                             nms_kernel=kernel)
    want = postprocess_flat(*outputs, params)[0]
    got = _on_device(outputs, params)[0]
    assert len(want) > 0
    _same_instances(got, want)


class FakeSwitch:
    """Stands in for Paddle's cuBLAS TF32 switch on a GPU (``core.get_cublas_switch`` and
    ``set_cublas_switch``), starting ``on``, with ``paddle.matmul`` as a GPU's cuBLAS runs it:
    float32 operands cut to TF32's 10-bit mantissa first while the switch is on (read at each
    call), other dtypes as they are; ``dtypes``: the dtype of each product's operands."""

    def __init__(self, monkeypatch, on: bool):
        self.on, self.dtypes, matmul = on, [], paddle.matmul
        from paddle.base import core
        monkeypatch.setattr(core, 'get_cublas_switch', lambda: self.on, raising=False)
        monkeypatch.setattr(core, 'set_cublas_switch', lambda on: setattr(self, 'on', on), raising=False)

        def run(x, y, *args, **kwargs):
            self.dtypes.append(str(x.dtype).replace('paddle.', ''))
            if x.dtype == paddle.float32 and self.on:
                x, y = (paddle.to_tensor((t.numpy().view(np.uint32) & 0xFFFFE000).view(np.float32)) for t in (x, y))
            return matmul(x, y, *args, **kwargs)
        monkeypatch.setattr(paddle, 'matmul', run)


@pytest.mark.parametrize('capability, dtype', [((8, 9), 'float32'), ((7, 5), 'float32'), ((9, 0), 'float64'),
                                               ((8, 0), 'float64')])
def test_tf32_leaves_the_gpu_instances_as_they_are_at_the_right_cost(monkeypatch, capability, dtype):
    """On a GPU (a stand-in: its compute capability, its TF32 switch and products) with TF32 on:
    float32 products with the switch off for the block where FP64 is slow (L40S 8.9, T4 7.5),
    float64 where it is fast (H100 9.0, A100 8.0); the same instances, to the bit, as with TF32
    off, and the switch on again after."""
    outputs = [paddle.to_tensor(a) for a in _case(1, (12, 8), sharp=3.0)]
    params = InferenceParams(num_grids=(12, 8), segm_strides=(1, 2), nms_pre=30)
    metas = [ImageMeta((50, 60), (48, 64), (48, 64))]
    monkeypatch.setattr(device_postprocess, 'device_capability', lambda place: capability)
    FakeSwitch(monkeypatch, on=False)
    exact = postprocess_on_device(*outputs, params, metas)[0]
    switch = FakeSwitch(monkeypatch, on=True)
    got = postprocess_on_device(*outputs, params, metas)[0]
    assert len(exact) > 5 and switch.on and ('float64' in switch.dtypes) == (dtype == 'float64')
    np.testing.assert_array_equal(got.labels, exact.labels)
    np.testing.assert_array_equal(got.scores, exact.scores)
    np.testing.assert_array_equal(np.asarray(got.masks), np.asarray(exact.masks))
    monkeypatch.setattr(device_postprocess, 'tf32_off', lambda *names: contextlib.nullcontext())
    if dtype == 'float32':    # the switch left on: the stand-in's TF32 moves the scores
        assert not np.array_equal(postprocess_on_device(*outputs, params, metas)[0].scores, exact.scores)


def test_the_products_dtype_per_device_and_the_paste_by_bytes():
    """float32 on the CPU and, with TF32 off, on GPUs of slow FP64; float64 where FP64 is fast or
    no switch can turn TF32 off. The paste takes as many masks as 1 GiB holds at the picture's
    size: 8 at 12 MP, one (1 GB) at the 100 MP limit, which an 8 GB card holds with the network."""
    assert product_dtype(None, True) == product_dtype(None, False) == 'float32'
    assert [product_dtype(c, True) for c in ((7, 5), (8, 6), (8, 9), (12, 0))] == ['float32'] * 4
    assert [product_dtype(c, True) for c in ((6, 0), (7, 0), (8, 0), (9, 0))] == ['float64'] * 4
    assert product_dtype((8, 9), False) == 'float64'
    assert paste_step(3000, 4000) == 8 and paste_step(800, 1333) == 100
    assert paste_step(10000, 10000) == 1 and 10000 * 10000 * device_postprocess.PASTE_PIXEL_BYTES < 1.1e9
    assert paste_step(40000, 40000) == 1


def test_the_cpu_products_are_float32_and_leave_the_switch_alone(monkeypatch):
    switch = FakeSwitch(monkeypatch, on=False)
    monkeypatch.setattr(device_postprocess, 'tf32_off', lambda *names: pytest.fail('TF32 switched on the CPU'))
    _on_device(_case(1, (12, 8), sharp=3.0), InferenceParams(num_grids=(12, 8), segm_strides=(1, 2), nms_pre=30))
    assert set(switch.dtypes) == {'float32'}


def test_no_candidates_gives_empty_detections():
    scores, kernels, feat = _case(0, (8, 4))
    params = InferenceParams(num_grids=(8, 4), segm_strides=(1, 2), score_threshold=1.5)
    tensors = [paddle.to_tensor(a) for a in (scores, kernels, feat)]
    pasted = postprocess_on_device(*tensors, params, [ImageMeta((60, 64), (64, 64), (64, 64))])[0]
    assert len(pasted) == 0 and pasted.masks.image_size == (60, 64)


@pytest.mark.parametrize('feat_hw, resized_hw, orig_hw, step', [
    ((28, 28), (112, 112), (160, 160), None),
    ((8, 10), (28, 36), (56, 72), None),
    ((30, 40), (118, 160), (59, 80), 1),
    ((20, 27), (80, 107), (750, 1000), 3),
])
def test_paste_on_device_equals_paste_in_boxes(monkeypatch, feat_hw, resized_hw, orig_hw, step):
    """Crops and boxes as ``paste_in_boxes``'s, but at threshold ties, whatever masks a step takes."""
    if step:
        monkeypatch.setattr(device_postprocess, 'paste_step', lambda height, width: step)
    soft = _soft_masks(np.random.default_rng(sum(orig_hw)), feat_hw)
    want = paste_in_boxes(soft, resized_hw, orig_hw, 0.5)
    got = paste_on_device(paddle.to_tensor(soft), resized_hw, orig_hw, 0.5)
    tie = (np.asarray(paste_in_boxes(soft, resized_hw, orig_hw, 0.5 - 1e-5))
           != np.asarray(paste_in_boxes(soft, resized_hw, orig_hw, 0.5 + 1e-5)))     # within 1e-5 of 0.5
    assert len(got) == len(want) and got.image_size == tuple(orig_hw)
    full_got, full_want = np.asarray(got), np.asarray(want)
    assert not (full_got != full_want)[~tie].any()
    for i in range(len(got)):
        box = got.box(i)
        assert got.crop(i).shape == (box[3] - box[1], box[2] - box[0])
        if not (full_got[i] != full_want[i]).any():
            assert box == want.box(i)


def test_pasted_detections_equal_the_numpy_path():
    outputs = _case(1, (8, 4), sharp=3.0)
    params = InferenceParams(num_grids=(8, 4), segm_strides=(1, 2))
    meta = ImageMeta((40, 60), (62, 64), (64, 64))
    want_soft = postprocess_flat(*outputs, params)[0]
    want = paste_detections(want_soft, meta)
    got = postprocess_on_device(*(paddle.to_tensor(a) for a in outputs), params, [meta])[0]
    _same_instances(got, want)
    np.testing.assert_array_equal(got.masks.boxes, want.masks.boxes)
    np.testing.assert_array_equal(np.asarray(got.masks), np.asarray(want.masks))


def test_only_the_best_category_scores_are_candidates():
    """A sharp mask (maskness near 1) whose category score is the ninth best: with
    ``nms_pre`` 2 only the 8 best scores are visited (``SCAN_LIMIT``), so it is left out,
    on both paths, though its rescored value would lead."""
    scores, kernels, feat = _random_case(0, grids=(8, 4), score_power=8.0)
    scores[:] = 0.0
    scores[:9, 0] = np.linspace(0.99, 0.91, 9)
    kernels[8] *= 50
    params = InferenceParams(num_grids=(8, 4), segm_strides=(1, 2), nms_pre=2)
    outputs = scores[None], kernels[None], feat[None]
    want = postprocess_flat(*outputs, params)[0]
    got = _on_device(outputs, params)[0]
    uncapped = postprocess_flat(*outputs, InferenceParams(num_grids=(8, 4), segm_strides=(1, 2), nms_pre=3))[0]
    assert uncapped.scores[0] > 0.9 > want.scores[0]
    _same_instances(got, want)


@pytest.fixture(scope='module')
def shipped():
    """The shipped model (config 9) on the CPU, with the device post-processing and without."""
    engine = DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=2)
    return Predictor(engine, on_device=True), Predictor(engine)


@pytest.mark.parametrize('name', ['shapes_000023.jpg', 'shapes_wide.jpg'])
def test_the_shipped_models_instances_are_the_numpy_paths(shipped, name):
    """Real outputs: the predictor's network stage with the device post-processing gives the
    numpy path's instances (labels, scores within 1e-5, masks but at threshold ties)."""
    on_device, on_host = shipped
    chw, meta = on_host.prepare(read_image(str(Path(SAMPLE_IMAGES) / name)))
    want = on_host.finish(on_host.network([(chw, meta)])[0], meta)
    staged = on_device.network([(chw, meta)])[0]
    assert isinstance(staged.masks, CroppedMasks)          # pasted and cropped on the device already
    got = on_device.finish(staged, meta)
    assert len(want) >= 3
    _same_instances(got, want)
    differ = (np.asarray(got.masks) != np.asarray(want.masks)).sum(axis=(1, 2))
    assert differ.sum() <= 4 * len(want)
    np.testing.assert_array_equal(got.masks.boxes[differ == 0], want.masks.boxes[differ == 0])


def test_finishing_workers_by_where_the_network_runs(shipped, monkeypatch):
    """Sized by where the network runs (``network_on_gpu``), not by where the post-processing does:
    the CPU's share for the Paddle model on the CPU, post-processed there with Paddle ops or not."""
    assert [default_finish_workers(cores) for cores in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]
    assert [default_finish_workers(cores, network_on_gpu=True) for cores in (1, 2, 4, 8, 16)] == [1, 1, 1, 5, 13]
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(16)), raising=False)
    on_device, on_host = shipped
    workers = [Predictor(on_device.engine, on_device=True).queue.finishing.workers,
               Predictor(on_host.engine).queue.finishing.workers]
    assert not on_device.engine.network_on_gpu and workers == [4, 4]
    assert not on_host.on_device
    monkeypatch.setattr(on_host.engine, 'network_on_gpu', True)
    assert Predictor(on_host.engine).queue.finishing.workers == 13
    assert Predictor(on_host.engine).on_device       # the engine's outputs on its GPU: post-processed there


def test_outputs_of_another_grid_are_refused_as_on_the_numpy_path():
    with pytest.raises(InputError, match='the network outputs 80 grid cells but num_grids'):
        _on_device(_case(0, (8, 4)), InferenceParams(num_grids=(8, 5), segm_strides=(1, 2)))


def test_the_runner_takes_the_calls_thresholds_on_the_device(shipped):
    """The runner's network stage post-processes on the device with the thresholds it is given
    (the API's per-call ones), and the backend's own without."""
    on_device, _ = shipped
    frames = [(0, read_image(str(Path(SAMPLE_IMAGES) / 'shapes_000023.jpg'))[:, :, ::-1].copy())]
    _, everything = next(on_device.run_pictures(frames, frame_reader(on_device.read)))
    assert isinstance(everything.masks, CroppedMasks) and len(everything) >= 3
    one = dataclasses.replace(on_device.params, max_per_image=1)
    assert len(next(on_device.run_pictures(frames, frame_reader(on_device.read), params=one))[1]) == 1
