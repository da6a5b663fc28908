"""Parity with PaddleDetection 2.x (an independent, executable reference).

For each PaddleDetection SOLOv2 family: build it with random but active weights,
save a real .pdparams, convert it with convert/ppdet2paddle.py, run both on the same
non-square image and compare the category maps, kernel maps, mask features and the
final masks, labels and scores. The reference that runs is a fresh PaddleDetection model
loaded from the saved file, so the same build also checks the harness
(tools/dev/reference/ppdet_ref.py): its file round trip and what its run returns.
"""
import json
from typing import NamedTuple

import pytest

pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')

import numpy as np
import paddle

from solov2.config import CONFIGS
from solov2.convert import families
from solov2.convert.common import convert
from solov2.model.checkpoint import load_paddle_params, save_checkpoint
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.postprocess import flatten_levels, paste_in_boxes
from solov2.tools.convert import run_family
from solov2.tools.dev.reference import ppdet_ref
from tests.helpers import postprocess

pytestmark = pytest.mark.reference

FEATURE_TOL = 1e-4
SCORE_TOL = 1e-4
MIN_MASK_IOU = 0.999
IMAGE_HW = (128, 160)
# ppdet family -> our config; None = the converter CLI must detect it
FAMILIES = {'r50_fpn': 0, 'r50_enhance': 3, 'r101_vd_dcn': 4, 'light_r50_vd_dcn_v05': 2,
            'light448_r50': 1}
CLI_CONFIGS = (0, 3, 4)


def _image(seed: int = 3) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal((1, 3, *IMAGE_HW)).astype(np.float32)


def _is_head_dcn_bias(name: str) -> bool:
    return name.startswith('solov2_head.') and name.endswith('conv_dcn.bias')


def _emulate_v05(reference) -> None:
    """PaddleDetection 0.5's head DCN has no bias; 2.x modules always add one. Zero it
    so the 2.x-built network computes exactly the 0.5 function."""
    for name, param in reference.state_dict().items():
        if _is_head_dcn_bias(name):
            param.set_value(paddle.zeros_like(param))


def _convert(family: str, src: str, out: str) -> int:
    """Convert with the user-facing CLI when the family is a published 2.x config;
    the 0.5 architecture (config 2) drops the zeroed head DCN biases first."""
    if FAMILIES[family] in CLI_CONFIGS:
        assert run_family('ppdet', [src, out]) == 0
        return json.load(open(out.replace('.pdparams', '.json')))['config']
    source = {k: v for k, v in load_paddle_params(src).items() if not _is_head_dcn_bias(k)}
    number, cfg, state, _ = convert(families.CONVERTERS['ppdet'], source, FAMILIES[family])
    save_checkpoint(state, out, number, cfg, source=src)
    return number


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


class Pair(NamedTuple):
    family: str
    number: int                # the config the converter chose
    expected: dict             # ppdet_ref.run of the reference on _image()
    predictor: Predictor       # ours, on the converted file
    outputs: dict              # our network's outputs on _image()
    built: paddle.nn.Layer     # ppdet_ref.build's model
    saved: dict                # the .pdparams ppdet_ref.save wrote, as paddle.load reads it
    reference: paddle.nn.Layer  # a fresh PaddleDetection model that loaded ``saved``
    not_loaded: tuple          # (missing, unexpected) keys of that load


@pytest.fixture(scope='module', params=list(FAMILIES))
def pair(request, tmp_path_factory):
    family = request.param
    folder = tmp_path_factory.mktemp(family)
    built = ppdet_ref.build(family, seed=1)
    if family == 'light_r50_vd_dcn_v05':
        _emulate_v05(built)
    src, out = str(folder / 'ppdet.pdparams'), str(folder / 'ours.pdparams')
    ppdet_ref.save(built, src)
    saved = paddle.load(src)
    reference = ppdet_ref.FAMILIES[family]()
    not_loaded = reference.set_state_dict(saved)
    reference.eval()
    number = _convert(family, src, out)
    image = _image()
    expected = ppdet_ref.run(reference, image)
    predictor = Predictor(DygraphBackend(CONFIGS[number], out, device='cpu'))
    with paddle.no_grad():
        outputs = predictor.engine.model(paddle.to_tensor(image))
    return Pair(family, number, expected, predictor, outputs, built, saved, reference, tuple(not_loaded))


def test_converter_detects_the_config(pair):
    family, number, *_ = pair
    assert number == FAMILIES[family]


def test_head_and_mask_features_match(pair):
    family, _, expected, predictor, outputs, *_ = pair
    scores, _ = flatten_levels(outputs['cate_logits'], outputs['kernels'])
    ref_scores = np.concatenate([c.reshape(1, -1, c.shape[-1]) for c in expected['cate']], axis=1)
    diffs = {'cate': np.abs(scores.numpy() - ref_scores).max(),
             'kernel': max(np.abs(k.numpy() - r).max()
                           for k, r in zip(outputs['kernels'], expected['kernel'])),
             'mask_feat': np.abs(outputs['mask_feat'].numpy() - expected['mask_feat']).max()}
    print(f'\n{family} max abs diff: ' + ', '.join(f'{k} {v:.2e}' for k, v in diffs.items()))
    assert all(v <= FEATURE_TOL for v in diffs.values()), diffs


def test_final_instances_match(pair):
    family, _, expected, predictor, outputs, *_ = pair
    ref_masks, ref_labels, ref_scores = ppdet_ref.clean_ppdet_detections(
        expected['masks'], expected['labels'], expected['scores'])
    with paddle.no_grad():
        ours = postprocess(outputs, predictor.params)[0]
    masks = np.asarray(paste_in_boxes(ours.masks, IMAGE_HW, IMAGE_HW))
    assert len(ref_scores) > 5, 'the reference produced too few instances to compare'
    assert len(ours) == len(ref_scores)
    np.testing.assert_array_equal(ours.labels, ref_labels)
    score_diff = np.abs(ours.scores - ref_scores).max()
    ious = [_iou(m, r.astype(bool)) for m, r in zip(masks, ref_masks)]
    print(f'\n{family}: {len(ours)} instances, max score diff {score_diff:.2e}, '
          f'min mask IoU {min(ious):.5f}')
    assert score_diff <= SCORE_TOL
    assert min(ious) >= MIN_MASK_IOU


# (solo_kernel E, mask-feature E) per family
WIDTHS = {'r50_fpn': 256, 'r50_enhance': 128, 'light_r50_vd_dcn_v05': 128, 'r101_vd_dcn': 256, 'light448_r50': 128}
ALIASES = [
    ('solov2_head.solo_cate.bias', 'solov2_head.bbox_head.solo_cate.bias'),
    ('solov2_head.solo_kernel.weight', 'solov2_head.bbox_head.solo_kernel.weight'),
]


def test_every_family_is_covered():
    assert set(ppdet_ref.FAMILIES) == set(FAMILIES) == set(WIDTHS)


def test_the_harness_file_round_trip(pair):
    """ppdet_ref.build gives an eval-mode model; ppdet_ref.save writes every key with
    PaddleDetection's alias names, and a fresh model loads it exactly."""
    built, saved, reference = pair.built, pair.saved, pair.reference
    assert not built.training
    sd = built.state_dict()
    assert np.isfinite(sd['solov2_head.solo_cate.bias'].numpy()).all()
    assert set(saved) == set(sd)
    for a, b in ALIASES:  # PaddleDetection writes both alias names
        assert a in saved and b in saved
        np.testing.assert_array_equal(np.asarray(saved[a]), np.asarray(saved[b]))
    missing, unexpected = pair.not_loaded
    assert not missing and not unexpected
    fsd = reference.state_dict()
    for key in sd:
        np.testing.assert_array_equal(fsd[key].numpy(), sd[key].numpy(), err_msg=key)


def test_the_harness_run_returns_what_it_says(pair):
    """ppdet_ref.run's outputs: head maps on the published grids, mask features at 1/4,
    raw detections, and the cleaned ones (clean_ppdet_detections) within bounds."""
    out, (h, w), e = pair.expected, IMAGE_HW, WIDTHS[pair.family]
    assert len(out['cate']) == len(out['kernel']) == 5
    for s, cate, kern in zip(ppdet_ref.NUM_GRIDS, out['cate'], out['kernel']):
        assert cate.shape == (1, s, s, ppdet_ref.NUM_CLASSES)
        assert kern.shape == (1, e, s, s)
        assert np.isfinite(cate).all() and np.isfinite(kern).all()
    assert out['mask_feat'].shape == (1, e, h // 4, w // 4)
    assert (out['mask_feat'] >= 0).all() and out['mask_feat'].max() > 0
    n = len(out['scores'])
    assert out['masks'].shape == (n, h, w) and out['masks'].dtype == np.uint8
    assert out['labels'].shape == (n,) and out['scores'].shape == (n,)
    candidates = sum(int((c > ppdet_ref.SCORE_THRESHOLD).sum()) for c in out['cate'])
    assert 30 <= candidates <= 300
    masks, labels, scores = ppdet_ref.clean_ppdet_detections(out['masks'], out['labels'], out['scores'])
    assert 1 <= len(scores) <= 100
    assert ((labels >= 0) & (labels < ppdet_ref.NUM_CLASSES)).all()
    assert (scores >= ppdet_ref.UPDATE_THRESHOLD).all()
    assert (np.diff(scores) <= 0).all()  # ppdet sorts by score, descending
    assert set(np.unique(masks)) <= {0, 1}
