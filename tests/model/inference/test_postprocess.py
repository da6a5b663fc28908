"""Hand-built cases for the pure post-processing functions."""
import math

import numpy as np
import paddle
import pytest

import solov2.model.inference.postprocess as postprocess_module
from solov2.data.masks import mask_to_box
from solov2.data.transforms import ImageMeta
from solov2.model.inference.postprocess import (
    Detections,
    InferenceParams,
    checked_strides,
    decays,
    flatten_levels,
    matrix_nms,
    paste_detections,
    paste_in_boxes,
    points_nms,
    segment_image,
)
from tests.fixtures import paste_v2, postprocess_v1
from tests.helpers import postprocess


def _t(array, dtype='float32'):
    return paddle.to_tensor(np.asarray(array), dtype=dtype)


def _line_masks(*spans, length=10):
    """1-D pixel masks [N, length] with ones on [start, stop)."""
    masks = np.zeros((len(spans), length), np.float32)
    for i, (start, stop) in enumerate(spans):
        masks[i, start:stop] = 1
    return masks


def _nms(masks, labels, scores, kernel='gaussian', sigma=2.0):
    return matrix_nms(masks, np.array(labels), np.array(scores, np.float32), masks.sum(1), kernel, sigma)


def test_points_nms_keeps_only_local_maxima():
    heat = np.array([[0.1, 0.2, 0.1],
                     [0.2, 0.9, 0.3],
                     [0.1, 0.3, 0.8]], np.float32)[None, None]
    kept = points_nms(_t(heat)).numpy()[0, 0]
    # a cell survives when it is the max of the 2x2 window ending at it (top-left padded)
    expected = np.array([[0.1, 0.2, 0.0],
                         [0.2, 0.9, 0.0],
                         [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(kept, expected)


def test_identical_masks_same_class_decay_by_the_gaussian_kernel():
    masks = _line_masks((0, 4), (0, 4))
    decayed = _nms(masks, [3, 3], [0.9, 0.8])
    np.testing.assert_allclose(decayed, [0.9, 0.8 * math.exp(-2.0)], rtol=1e-6)


def test_other_classes_do_not_decay():
    masks = _line_masks((0, 4), (0, 4))
    np.testing.assert_allclose(_nms(masks, [3, 4], [0.9, 0.8]), [0.9, 0.8], rtol=1e-6)


def test_linear_kernel():
    masks = _line_masks((0, 4), (2, 6))          # IoU 2/6
    decayed = _nms(masks, [1, 1], [0.9, 0.8], kernel='linear')
    np.testing.assert_allclose(decayed, [0.9, 0.8 * (1 - 1 / 3)], rtol=1e-6)


def test_compensation_by_the_decayer_own_overlap():
    """C overlaps only B, and B is overlapped by A exactly as much, so B's
    suppression of C is fully compensated: C keeps its score."""
    masks = _line_masks((0, 4), (2, 6), (4, 8))   # IoU(A,B) = IoU(B,C) = 1/3, IoU(A,C) = 0
    decayed = _nms(masks, [0, 0, 0], [0.9, 0.8, 0.7])
    np.testing.assert_allclose(decayed, [0.9, 0.8 * math.exp(-2.0 / 9), 0.7], rtol=1e-6)


@pytest.mark.parametrize('classes', [1, 3, 40])
@pytest.mark.parametrize('kernel', ['gaussian', 'linear'])
def test_matrix_nms_by_class_blocks_equals_all_pairs(classes, kernel):
    """Blocks of whole classes (some above NMS_BLOCK masks, single-mask classes skipped)
    give the decays of the all-pairs computation of tests/fixtures/postprocess_v1.py."""
    rng = np.random.default_rng(classes)
    masks = rng.random((150, 200)) > 0.6
    labels = rng.integers(0, classes, 150)
    scores = np.sort(rng.random(150).astype(np.float32))[::-1].copy()
    areas = masks.sum(1).astype(np.float32)
    expected = postprocess_v1._matrix_nms(_t(masks.astype(np.float32)), _t(labels, 'int64'), _t(scores),
                                          _t(areas), kernel, 2.0).numpy()
    np.testing.assert_allclose(matrix_nms(masks, labels, scores, areas, kernel), expected, rtol=1e-6)


def test_unknown_kernel_is_refused():
    """By ``matrix_nms`` and by the decay the device path shares (``decays``), never run as 'linear'."""
    with pytest.raises(ValueError, match='kernel'):
        _nms(_line_masks((0, 4)), [0], [0.5], kernel='box')
    with pytest.raises(ValueError, match="kernel 'box'"):
        decays(np.zeros((2, 2), np.float32), np.exp, 'box', 2.0)


# ---- segment_image on hand-built mask features ------------------------------------------
HF, WF = 8, 8


def _regions():
    """Four basis masks on an 8x8 map: a big square, a copy of it, a 2-pixel blob,
    and a disjoint rectangle."""
    regions = np.zeros((4, HF, WF), bool)
    regions[0, 0:4, 0:4] = True
    regions[1, 0:4, 0:4] = True
    regions[2, 6, 6:8] = True
    regions[3, 5:8, 0:3] = True
    return regions


def _feat():
    """mask_feat [E=4, 8, 8]: logit +8 inside region e, -8 outside."""
    return np.where(_regions(), 8.0, -8.0).astype(np.float32)


def _params(**kw):
    return InferenceParams(num_grids=(2,), segm_strides=(1,), **kw)


def _segment(scores, params):
    """K=4 cells (2x2 grid), kernel of cell k selects basis mask k."""
    return segment_image(_t(scores), _t(np.eye(4)), _t(_feat()), _t(np.ones(4)), params)


def test_no_candidates_gives_empty_detections():
    result = _segment(np.full((4, 3), 0.05, np.float32), _params())
    assert isinstance(result, Detections) and len(result) == 0
    assert result.masks.shape == (0, HF, WF)


def test_thresholds_area_filter_maskness_and_duplicates():
    scores = np.zeros((4, 3), np.float32)
    scores[0, 1] = 0.9      # big square, class 1
    scores[1, 1] = 0.6      # the same square again: decayed by exp(-2), ranked last
    scores[2, 2] = 0.95     # 2-pixel blob: area 2 > stride 1, kept
    scores[3, 0] = 0.7      # rectangle, class 0
    result = _segment(scores, _params())
    maskness = 1 / (1 + math.exp(-8.0))
    assert result.labels.tolist() == [2, 1, 0, 1]
    expected = np.array([0.95, 0.9, 0.7, 0.6 * math.exp(-2.0)]) * maskness
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)
    np.testing.assert_array_equal(result.masks > 0.5, _regions()[[2, 0, 3, 1]])


def test_masks_not_larger_than_their_stride_are_dropped():
    scores = np.zeros((4, 3), np.float32)
    scores[2, 2] = 0.95
    result = segment_image(_t(scores), _t(np.eye(4)), _t(_feat()), _t(np.full(4, 2.0)), _params())
    assert len(result) == 0    # area 2 is not > stride 2


def test_top_k_limits():
    scores = np.zeros((4, 3), np.float32)
    scores[0, 1], scores[2, 2], scores[3, 0] = 0.9, 0.95, 0.7
    assert _segment(scores, _params(max_per_image=2)).labels.tolist() == [2, 1]
    assert _segment(scores, _params(nms_pre=1)).labels.tolist() == [2]


def test_update_threshold_drops_decayed_duplicates():
    scores = np.zeros((4, 3), np.float32)
    scores[0, 1], scores[1, 1] = 0.9, 0.3    # 0.3 * e^-2 = 0.04 < 0.05
    assert _segment(scores, _params()).labels.tolist() == [1]
    assert len(_segment(scores, _params(update_threshold=0.01))) == 2


# ---- batching, flattening, pasting ------------------------------------------------------
def test_checked_strides_cover_every_grid_cell():
    params = InferenceParams(num_grids=(40, 36, 24, 16, 12), segm_strides=(8, 8, 16, 32, 32))
    strides = checked_strides(3872, 3872, params)
    assert strides.shape == (3872,)
    assert strides[0] == 8 and strides[1600 + 1296] == 16 and strides[-1] == 32


def test_flatten_levels_orders_cells_row_major():
    logits = np.full((1, 2, 2, 2), -10.0, np.float32)
    logits[0, 1, 1, 0] = 10.0                           # class 1 at row 1, col 0 -> cell 2
    kernels = np.arange(1 * 3 * 2 * 2, dtype=np.float32).reshape(1, 3, 2, 2)
    scores, flat = flatten_levels([_t(logits)], [_t(kernels)])
    assert scores.shape == [1, 4, 2] and flat.shape == [1, 4, 3]
    assert int(scores.numpy()[0, :, 1].argmax()) == 2
    np.testing.assert_array_equal(flat.numpy()[0, 2], kernels[0, :, 1, 0])


def test_batch_equals_single_images():
    rng = np.random.RandomState(0)
    grids, e = (4, 2), 6
    outs = {'cate_logits': [_t(rng.normal(-1, 2, (2, 3, s, s))) for s in grids],
            'kernels': [_t(rng.normal(0, 1, (2, e, s, s))) for s in grids],
            'mask_feat': _t(rng.normal(0, 1, (2, e, 8, 12)))}
    params = InferenceParams(num_grids=grids, segm_strides=(1, 2))
    batched = postprocess(outs, params)
    for b in range(2):
        single = postprocess({k: ([x[b:b + 1] for x in v] if isinstance(v, list) else v[b:b + 1])
                              for k, v in outs.items()}, params)[0]
        assert len(single) == len(batched[b]) > 0
        np.testing.assert_array_equal(single.labels, batched[b].labels)
        np.testing.assert_allclose(single.scores, batched[b].scores, rtol=1e-5)


PASTE_META = ImageMeta(orig_hw=(56, 72), resized_hw=(28, 36), padded_hw=(32, 40))


def test_paste_detections_crops_padding_and_resizes_to_the_original():
    soft = np.zeros((1, 8, 10), np.float32)     # padded input 32x40, image resized to 28x36
    soft[0, 2:6, 3:7] = 1.0                     # 16x16 square at (8..24, 12..28) of the input
    pasted = paste_detections(Detections(soft, np.array([3]), np.array([0.9], np.float32)), PASTE_META)
    masks = np.asarray(pasted.masks)
    assert masks.shape == pasted.masks.shape == (1, 56, 72) and masks.dtype == bool
    ys, xs = np.nonzero(masks[0])
    assert abs(ys.min() - 16) <= 2 and abs(ys.max() - 47) <= 2   # doubled coordinates
    assert abs(xs.min() - 24) <= 2 and abs(xs.max() - 55) <= 2
    assert tuple(pasted.masks.boxes[0]) == mask_to_box(masks[0]) and pasted.labels.tolist() == [3]


def test_paste_detections_of_nothing():
    empty = Detections(np.zeros((0, 8, 10), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))
    pasted = paste_detections(empty, PASTE_META)
    assert pasted.masks.shape == (0, 56, 72) and pasted.masks.boxes.shape == (0, 4)


# ---- the same results as before candidate pruning (tests/fixtures/postprocess_v1.py) ----
def _random_case(seed, grids=(8, 4), classes=5, channels=8, feat_hw=(16, 16), score_power=4.0, sharp=1.0):
    """Random scores [K, C], kernels [K, E], mask_feat [E, Hf, Wf]; larger ``score_power``
    gives fewer candidates, larger ``sharp`` masks whose maskness is nearer 1."""
    rng = np.random.default_rng(seed)
    cells = sum(s * s for s in grids)
    scores = (rng.random((cells, classes)) ** score_power).astype(np.float32)
    kernels = (sharp * rng.normal(0, 1, (cells, channels))).astype(np.float32)
    feat = rng.normal(0, 1, (channels, *feat_hw)).astype(np.float32)
    return scores, kernels, feat


def _assert_same_as_before(scores, kernels, feat, params):
    strides = checked_strides(len(scores), len(kernels), params)
    soft, labels, decayed = postprocess_v1.segment_image(scores, kernels, feat, strides, params)
    ours = segment_image(scores, kernels, feat, strides, params)
    assert len(ours) == len(labels)
    np.testing.assert_array_equal(ours.labels, labels)
    np.testing.assert_allclose(ours.scores, decayed, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.masks, soft, atol=1e-5)
    near_threshold = np.abs(soft - params.mask_threshold) < 1e-5
    np.testing.assert_array_equal((ours.masks > 0.5)[~near_threshold], (soft > 0.5)[~near_threshold])
    return len(ours)


@pytest.mark.parametrize('sparse_share', [0.0, 1.0], ids=['sigmoid-in-place', 'sigmoid-of-inside-pixels'])
@pytest.mark.parametrize('seed', range(6))
def test_same_as_before_when_candidates_fit_nms_pre(seed, sparse_share, monkeypatch):
    """Both routes of the maskness (in place over all logits, or of the inside pixels only)."""
    monkeypatch.setattr(postprocess_module, 'SPARSE_MASK_SHARE', sparse_share)
    scores, kernels, feat = _random_case(seed)
    params = InferenceParams(num_grids=(8, 4), segm_strides=(1, 2), nms_pre=500)
    assert 20 < int((scores > params.score_threshold).sum()) <= params.nms_pre
    assert _assert_same_as_before(scores, kernels, feat, params) > 0


@pytest.mark.parametrize('kernel, count', [('gaussian', 5), ('linear', 4)])
def test_same_as_before_on_hand_built_masks(kernel, count):
    """As test_thresholds_area_filter_maskness_and_duplicates, plus the rectangle's cell
    as a class-1 candidate; the linear kernel decays the exact duplicate to 0."""
    scores = np.zeros((4, 3), np.float32)
    scores[0, 1], scores[1, 1], scores[2, 2], scores[3, 0], scores[3, 1] = 0.9, 0.6, 0.95, 0.7, 0.3
    params = _params(nms_kernel=kernel)
    assert _assert_same_as_before(scores, np.eye(4, dtype=np.float32), _feat(), params) == count


@pytest.mark.parametrize('seed', range(4))
def test_same_as_before_with_more_candidates_than_nms_pre(seed, monkeypatch):
    """Sharp masks (maskness near 1): the visit stops early, yet the result is unchanged."""
    scores, kernels, feat = _random_case(seed, grids=(12, 8), score_power=1.5, sharp=20.0)
    params = InferenceParams(num_grids=(12, 8), segm_strides=(1, 2), nms_pre=30, max_per_image=20)
    count = int((scores > params.score_threshold).sum())
    visited = _count_visited(monkeypatch)
    assert _assert_same_as_before(scores, kernels, feat, params) == 20
    assert count > 300 and params.nms_pre <= sum(visited) < count / 4


def test_same_as_before_when_the_best_instances_are_decided_early(monkeypatch):
    """A few confident candidates above many weak ones, soft masks: after the first block
    no other candidate can reach the top ``max_per_image``, so the visit stops there,
    although the top ``nms_pre`` are not known yet."""
    scores, kernels, feat = _random_case(3, grids=(24, 12), classes=8, score_power=1.0)
    scores *= 0.35
    scores[[5, 50, 100, 300, 500], [0, 1, 2, 3, 4]] = [0.99, 0.98, 0.97, 0.96, 0.95]
    params = InferenceParams(num_grids=(24, 12), segm_strides=(1, 2), nms_pre=200, max_per_image=5)
    visited = _count_visited(monkeypatch)
    assert _assert_same_as_before(scores, kernels, feat, params) == 5
    assert visited == [params.nms_pre] and (scores > params.score_threshold).sum() > 1000


def _count_visited(monkeypatch):
    visited, statistics = [], postprocess_module._mask_statistics

    def counting(kernels, *args):
        visited.append(len(kernels))
        return statistics(kernels, *args)
    monkeypatch.setattr(postprocess_module, '_mask_statistics', counting)
    return visited


def test_mask_statistics_are_bounded_by_nms_pre(monkeypatch):
    """Soft masks (maskness far from 1) would need every candidate: the visit stops at
    SCAN_LIMIT * nms_pre."""
    scores, kernels, feat = _random_case(0, grids=(12, 8), score_power=1.0)
    params = InferenceParams(num_grids=(12, 8), segm_strides=(1, 2), nms_pre=20)
    visited = _count_visited(monkeypatch)
    result = segment_image(scores, kernels, feat, checked_strides(len(scores), len(kernels), params), params)
    assert len(result) > 0
    assert sum(visited) == postprocess_module.SCAN_LIMIT * params.nms_pre < (scores > 0.1).sum()


@pytest.mark.parametrize('feat_hw, resized_hw, orig_hw', [
    ((28, 28), (112, 112), (160, 160)),     # a 640x640 picture at 1/4 scale, resized 448 -> 640
    ((8, 10), (28, 36), (56, 72)),          # upscaled, padding cropped
    ((8, 10), (28, 36), (28, 36)),          # no second resize
    ((30, 40), (118, 160), (59, 80)),       # exactly halved
    ((28, 36), (112, 144), (300, 200)),     # non-uniform
])
@pytest.mark.parametrize('whole_share', [0.4, 0.0, 1.0], ids=['by-window-size', 'always-whole', 'always-window'])
def test_paste_in_boxes_equals_the_opencv_paste(feat_hw, resized_hw, orig_hw, whole_share, monkeypatch):
    """Masks reaching over WHOLE_PASTE_SHARE of the picture are resized whole, the others
    in their window: both give the reference paste."""
    monkeypatch.setattr(postprocess_module, 'WHOLE_PASTE_SHARE', whole_share)
    rng = np.random.default_rng(sum(orig_hw))
    ys, xs = np.mgrid[:feat_hw[0], :feat_hw[1]]
    soft = np.stack([np.exp(-((ys - rng.uniform(0, feat_hw[0])) ** 2 + (xs - rng.uniform(0, feat_hw[1])) ** 2)
                            / rng.uniform(1, 40)) for _ in range(12)]).astype(np.float32)
    soft[3] = rng.random(feat_hw) * 0.8 + 0.1                      # scattered over the whole picture
    soft[0] = 0.0                                                   # an empty mask
    padded = (feat_hw[0] * 4 > resized_hw[0] + 8)
    if padded:
        soft[1] = 0.0
        soft[1, -1:, :] = 0.9                                       # a strip in the padding only
    ref = postprocess_v1.paste_soft(soft, resized_hw, orig_hw)
    cropped = paste_in_boxes(soft, resized_hw, orig_hw, 0.5)
    masks, boxes = np.asarray(cropped), cropped.boxes
    assert masks.shape == (12, *orig_hw) and masks.dtype == bool
    certain = np.abs(ref - 0.5) > 1e-5
    np.testing.assert_array_equal(masks[certain], (ref > 0.5)[certain])
    assert masks[2:].any(axis=(1, 2)).sum() >= 8 and not masks[0].any() and masks[1].any() != padded
    for mask, box in zip(masks, boxes):
        assert tuple(box) == (mask_to_box(mask) or (0, 0, 0, 0))


def _soft_masks(rng, feat_hw, count=14):
    """[count, Hf, Wf] float32 soft masks of every kind the paste meets: Gaussian blobs, sharp
    discs (values far from 0.5 inside and out), noise over the whole picture, blobs on an
    edge and in a corner, one just above the threshold everywhere, an empty one."""
    ys, xs = np.mgrid[:feat_hw[0], :feat_hw[1]]
    masks = []
    for k in range(count):
        cy, cx = rng.uniform(0, feat_hw[0]), rng.uniform(0, feat_hw[1])
        if k % 7 == 3:
            cy, cx = (0.0, rng.uniform(0, feat_hw[1])) if k % 2 else (feat_hw[0] - 1.0, feat_hw[1] - 1.0)
        distance = ((ys - cy) ** 2 + (xs - cx) ** 2) / rng.uniform(1, 60)
        masks.append(np.exp(-distance) if k % 2 else 1 / (1 + np.exp(np.minimum(8 * (distance - 1), 60))))
    masks[1] = rng.random(feat_hw) * 0.8 + 0.1
    masks[2] = np.full(feat_hw, 0.5 + 1e-7)
    masks[0] = np.zeros(feat_hw)
    return np.stack(masks).astype(np.float32)


@pytest.mark.parametrize('feat_hw, resized_hw, orig_hw', [
    ((28, 28), (112, 112), (160, 160)),
    ((8, 10), (28, 36), (56, 72)),
    ((30, 40), (118, 160), (59, 80)),
    ((28, 36), (112, 144), (300, 200)),
    ((20, 27), (80, 107), (750, 1000)),     # a photo: each feature pixel covers ~37 x 37 picture pixels
])
@pytest.mark.parametrize('whole_share', [0.4, 0.0, 1.0], ids=['by-window-size', 'always-whole', 'always-window'])
def test_cropped_paste_holds_the_pixels_of_the_full_paste(feat_hw, resized_hw, orig_hw, whole_share, monkeypatch):
    """The crops of ``paste_in_boxes`` pasted back are bit for bit the [N, H, W] masks of
    the paste before cropped masks (tests/fixtures/paste_v2.py), on both branches."""
    monkeypatch.setattr(postprocess_module, 'WHOLE_PASTE_SHARE', whole_share)
    monkeypatch.setattr(paste_v2, 'WHOLE_PASTE_SHARE', whole_share)
    soft = _soft_masks(np.random.default_rng(sum(orig_hw)), feat_hw)
    want_masks, want_boxes = paste_v2.paste_in_boxes(soft, resized_hw, orig_hw, 0.5)
    cropped = paste_in_boxes(soft, resized_hw, orig_hw, 0.5)
    assert cropped.image_size == orig_hw and len(cropped) == len(soft)
    np.testing.assert_array_equal(cropped.boxes, want_boxes)
    np.testing.assert_array_equal(np.asarray(cropped), want_masks)
    assert want_masks[1:].any(axis=(1, 2)).all() and not want_masks[0].any()


@pytest.mark.parametrize('feat_hw, resized_hw, orig_hw', [
    ((28, 28), (112, 112), (160, 160)),
    ((8, 10), (28, 36), (56, 72)),
    ((30, 40), (118, 160), (59, 80)),
    ((20, 27), (80, 107), (750, 1000)),
])
@pytest.mark.parametrize('work, tile', [(1 << 18, 64), (300, 3), (1 << 18, 16), (1 << 18, 1000)],
                         ids=['default-bands', 'narrow-bands-and-tiles', 'narrow-tiles', 'one-tile'])
def test_a_box_read_alone_is_the_pasted_masks_box_without_a_paste(feat_hw, resized_hw, orig_hw, work, tile,
                                                                 monkeypatch):
    """``boxes`` of masks not read (an answer without masks) are measured from the window's edges,
    bit for bit the boxes of the pasted crops, and no mask is pasted for them; the paste in
    other bands and tiles gives the same masks."""
    monkeypatch.setattr(postprocess_module, 'WHOLE_PASTE_SHARE', 1.0)
    soft = _soft_masks(np.random.default_rng(sum(orig_hw) + 1), feat_hw)
    want = np.asarray(paste_in_boxes(soft, resized_hw, orig_hw, 0.5))
    monkeypatch.setattr(postprocess_module, 'PRODUCT_WORK', work)
    monkeypatch.setattr(postprocess_module, 'TILE_COLUMNS', tile)
    pasted = paste_in_boxes(soft, resized_hw, orig_hw, 0.5)
    np.testing.assert_array_equal(np.asarray(pasted), want)
    pastes, paste = [], postprocess_module._paste_pending
    monkeypatch.setattr(postprocess_module, '_paste_pending', lambda pending: pastes.append(1) or paste(pending))
    measured = paste_in_boxes(soft, resized_hw, orig_hw, 0.5)
    np.testing.assert_array_equal(measured.boxes, pasted.boxes)
    assert pastes == [] and (pasted.boxes[1:, 2:] > 0).all()
    np.testing.assert_array_equal(np.asarray(measured), want)
    assert len(pastes) == len(soft)
