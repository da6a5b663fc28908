"""SOLOv2 losses: focal and dice against direct numpy formulas, and the full loss
on a tiny hand-made batch (B=2, grids (4, 2), E=3, C=2, 8x8 mask features)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from solov2.model.training.losses import dice_loss, gather_positive_masks, sigmoid_focal_loss, solov2_loss
from solov2.model.training.targets import BatchTargets


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_focal(logits, labels, alpha=0.25, gamma=2.0):
    """Direct formula, float64; label -1 = background (no positive channel)."""
    logits = np.asarray(logits, np.float64)
    total = 0.0
    for row, label in zip(logits, labels):
        for c, x in enumerate(row):
            p = _sigmoid(x)
            if c == label:
                total += -alpha * (1 - p) ** gamma * np.log(p)
            else:
                total += -(1 - alpha) * p ** gamma * np.log(1 - p)
    return total


def _np_dice(logits, target):
    p = _sigmoid(np.asarray(logits, np.float64)).reshape(len(logits), -1)
    t = np.asarray(target, np.float64).reshape(len(target), -1)
    return 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + 0.001 + (t * t).sum(1) + 0.001)


def _t(x, dtype='float32'):
    return paddle.to_tensor(np.asarray(x), dtype=dtype)


# ---------------------------------------------------------------------------
# focal


def test_focal_matches_numpy_formula_with_background_and_positive_rows():
    logits = np.array([[2.0, -1.0, 0.3],     # background row: all three channels negative
                       [0.5, 0.0, -3.0],     # class 0 positive
                       [-2.0, 1.5, 4.0]],    # class 2 positive
                      np.float32)
    labels = np.array([-1, 0, 2])
    got = float(sigmoid_focal_loss(_t(logits), _t(labels, 'int64')))
    np.testing.assert_allclose(got, _np_focal(logits, labels), rtol=1e-5)
    # same value as paddle's op fed the one-hot built from labels + 1 (PaddleDetection style)
    one_hot = np.eye(4, dtype=np.float32)[labels + 1][:, 1:]
    ref = F.sigmoid_focal_loss(_t(logits), _t(one_hot), reduction='sum', alpha=0.25, gamma=2.0)
    np.testing.assert_allclose(got, float(ref), rtol=1e-5)


def test_focal_label_convention():
    """Label 0 makes channel 0 positive; -1 makes every channel negative."""
    logits = _t([[6.0, -6.0]])
    as_class0 = float(sigmoid_focal_loss(logits, _t([0], 'int64')))
    as_background = float(sigmoid_focal_loss(logits, _t([-1], 'int64')))
    assert as_class0 < 1e-4                  # confident and right
    assert as_background > 3.0               # channel 0 confidently wrong
    np.testing.assert_allclose(as_class0, _np_focal([[6.0, -6.0]], [0]), rtol=1e-4)
    np.testing.assert_allclose(as_background, _np_focal([[6.0, -6.0]], [-1]), rtol=1e-5)
    # label 1 makes channel 1 positive
    np.testing.assert_allclose(float(sigmoid_focal_loss(logits, _t([1], 'int64'))),
                               _np_focal([[6.0, -6.0]], [1]), rtol=1e-5)


def test_focal_is_stable_for_large_logits():
    logits = _t([[100.0, -100.0], [-100.0, 100.0]])
    loss = float(sigmoid_focal_loss(logits, _t([1, -1], 'int64')))
    assert np.isfinite(loss)
    # row 0: ch0 negative with p=1: 0.75 * 1 * 100; ch1 positive with p=0: 0.25 * 1 * 100
    # row 1: ch1 negative with p=1: 0.75 * 100; ch0 ~0
    np.testing.assert_allclose(loss, 75 + 25 + 75, rtol=1e-5)


# ---------------------------------------------------------------------------
# dice


def test_dice_perfect_disjoint_and_partial():
    target = np.zeros((3, 2, 2), np.float32)
    target[0, 0, :] = 1          # perfect prediction below
    target[1, 0, :] = 1          # disjoint prediction below
    target[2, 0, :] = 1          # logits 0 -> p = 0.5 everywhere
    logits = np.zeros((3, 2, 2), np.float32)
    logits[0] = np.where(target[0] > 0, 50, -50)
    logits[1] = np.where(target[1] > 0, -50, 50)
    got = dice_loss(_t(logits), _t(target)).numpy()
    assert got.shape == (3,)
    # perfect: 1 - 2*2 / (2 + 0.001 + 2 + 0.001) = 0.002 / 4.002
    np.testing.assert_allclose(got[0], 0.002 / 4.002, rtol=1e-3)
    # disjoint: no overlap -> 1
    np.testing.assert_allclose(got[1], 1.0, atol=1e-6)
    # partial: sum pt = 0.5*2 = 1, sum p^2 = 4*0.25 = 1, sum t^2 = 2 -> 1 - 2 / 3.002
    np.testing.assert_allclose(got[2], 1 - 2 / 3.002, rtol=1e-6)
    np.testing.assert_allclose(got, _np_dice(logits, target), rtol=1e-4, atol=1e-7)


def test_dice_accepts_uint8_targets():
    logits = np.random.default_rng(0).normal(size=(2, 5, 5)).astype(np.float32)
    target = (np.random.default_rng(1).random((2, 5, 5)) > 0.5).astype(np.uint8)
    got = dice_loss(_t(logits), paddle.to_tensor(target)).numpy()
    np.testing.assert_allclose(got, _np_dice(logits, target), rtol=1e-5)


# ---------------------------------------------------------------------------
# full loss on a tiny batch

GRIDS = (4, 2)
B, E, C, HF, WF = 2, 3, 2, 8, 8


def _outputs(seed=0):
    rng = np.random.default_rng(seed)
    tensors = {
        'cate_logits': [_t(rng.normal(size=(B, C, s, s))) for s in GRIDS],
        'kernels': [_t(rng.normal(size=(B, E, s, s))) for s in GRIDS],
        'mask_feat': _t(rng.normal(size=(B, E, HF, WF))),
    }
    for t in tensors['cate_logits'] + tensors['kernels'] + [tensors['mask_feat']]:
        t.stop_gradient = False
    return tensors


def _targets(with_positives=True):
    rng = np.random.default_rng(5)
    cate = [np.full((B, s, s), -1, np.int64) for s in GRIDS]
    if not with_positives:
        empty = np.zeros(0, np.int64)
        return BatchTargets(cate, [np.zeros((0, HF, WF), np.uint8)] * 2, [empty, empty],
                            [empty, empty], 0)
    # level 0: image 1 cells 5 (1,1) and 6 (1,2) class 1; image 0 cell 15 (3,3) class 0;
    #          image 1 cell 6 twice (two instances sharing it, label of the later one)
    # level 1: image 0 cell 2 (1,0) class 1
    cate[0][1, 1, 1] = 1
    cate[0][1, 1, 2] = 0
    cate[0][0, 3, 3] = 0
    cate[1][0, 1, 0] = 1
    images = [np.array([1, 1, 0, 1]), np.array([0])]
    cells = [np.array([5, 6, 15, 6]), np.array([2])]
    masks = [(rng.random((4, HF, WF)) > 0.5).astype(np.uint8),
             (rng.random((1, HF, WF)) > 0.5).astype(np.uint8)]
    return BatchTargets(cate, masks, images, cells, num_positives=4)


def _naive_positive_masks(outputs, targets):
    preds, gts = [], []
    feat = outputs['mask_feat'].numpy()
    for level, grid in enumerate(GRIDS):
        kernels = outputs['kernels'][level].numpy()
        for image, cell, mask in zip(targets.ins_images[level], targets.ins_cells[level],
                                     targets.ins_masks[level]):
            kernel = kernels[image, :, cell // grid, cell % grid]               # [E]
            preds.append(np.tensordot(kernel, feat[image], axes=(0, 0)))       # [Hf, Wf]
            gts.append(mask)
    return np.array(preds), np.array(gts)


def _naive_loss(outputs, targets):
    preds, gts = _naive_positive_masks(outputs, targets)
    loss_ins = _np_dice(preds, gts).mean() * 3.0 if len(preds) else 0.0
    focal = 0.0
    for level, grid in enumerate(GRIDS):
        logits = outputs['cate_logits'][level].numpy()
        for b in range(B):
            for i in range(grid):
                for j in range(grid):
                    focal += _np_focal(logits[b, :, i, j][None], [targets.cate_labels[level][b, i, j]])
    return loss_ins, focal / (targets.num_positives + 1)


def test_gather_positive_masks_equals_naive_loop():
    outputs, targets = _outputs(), _targets()
    preds, gts = gather_positive_masks(outputs['kernels'], outputs['mask_feat'], targets)
    naive_preds, naive_gts = _naive_positive_masks(outputs, targets)
    assert preds.shape == [5, HF, WF]
    np.testing.assert_allclose(preds.numpy(), naive_preds, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gts.numpy(), naive_gts.astype(np.float32))


def test_solov2_loss_with_positives_matches_naive_and_backpropagates():
    outputs, targets = _outputs(), _targets()
    losses = solov2_loss(outputs, targets)
    naive_ins, naive_cate = _naive_loss(outputs, targets)
    assert set(losses) == {'loss_ins', 'loss_cate', 'loss'}
    for value in losses.values():
        assert np.isfinite(float(value))
    assert float(losses['loss_ins']) > 0
    np.testing.assert_allclose(float(losses['loss_ins']), naive_ins, rtol=1e-5)
    np.testing.assert_allclose(float(losses['loss_cate']), naive_cate, rtol=1e-5)
    np.testing.assert_allclose(float(losses['loss']), naive_ins + naive_cate, rtol=1e-5)

    losses['loss'].backward()
    for t in outputs['cate_logits'] + [outputs['mask_feat']]:
        assert t.grad is not None and np.abs(t.grad.numpy()).sum() > 0
    # kernel gradients only at positive cells
    grad0 = np.abs(outputs['kernels'][0].grad.numpy()).sum(axis=1)              # [B, 4, 4]
    assert set(map(tuple, np.argwhere(grad0 > 0))) == {(1, 1, 1), (1, 1, 2), (0, 3, 3)}
    grad1 = np.abs(outputs['kernels'][1].grad.numpy()).sum(axis=1)
    assert set(map(tuple, np.argwhere(grad1 > 0))) == {(0, 1, 0)}


def test_ins_weight_scales_only_the_instance_loss():
    outputs, targets = _outputs(), _targets()
    base = solov2_loss(outputs, targets)
    heavy = solov2_loss(outputs, targets, ins_weight=6.0)
    np.testing.assert_allclose(float(heavy['loss_ins']), 2 * float(base['loss_ins']), rtol=1e-6)
    np.testing.assert_allclose(float(heavy['loss_cate']), float(base['loss_cate']), rtol=1e-6)


def test_solov2_loss_without_positives_is_exact_zero_and_connected():
    outputs, targets = _outputs(1), _targets(with_positives=False)
    losses = solov2_loss(outputs, targets)
    assert float(losses['loss_ins']) == 0.0
    assert not losses['loss_ins'].stop_gradient
    _, naive_cate = _naive_loss(outputs, targets)          # normaliser 0 + 1
    np.testing.assert_allclose(float(losses['loss_cate']), naive_cate, rtol=1e-5)
    assert np.isfinite(float(losses['loss']))
    losses['loss'].backward()
    assert np.all(outputs['mask_feat'].grad.numpy() == 0)
    for k in outputs['kernels']:
        assert k.grad is not None and np.all(k.grad.numpy() == 0)
    for c in outputs['cate_logits']:
        assert c.grad is not None and np.abs(c.grad.numpy()).sum() > 0


def test_solov2_loss_rejects_level_mismatch():
    outputs, targets = _outputs(), _targets()
    outputs['cate_logits'] = outputs['cate_logits'][:1]
    with pytest.raises(ValueError):
        solov2_loss(outputs, targets)


def test_solov2_loss_given_positives_divides_by_them():
    """Data-parallel training passes the positives averaged over the processes."""
    outputs, targets = _outputs(), _targets()
    own = solov2_loss(outputs, targets)
    same = solov2_loss(outputs, targets, positives=(targets.num_masks, targets.num_positives))
    doubled = (2 * targets.num_masks, 2 * targets.num_positives + 1)      # cate: (2n + 1) + 1
    halved = solov2_loss(outputs, targets, positives=doubled)
    for key in ('loss_ins', 'loss_cate'):
        np.testing.assert_allclose(float(same[key]), float(own[key]), rtol=1e-6)
        np.testing.assert_allclose(float(halved[key]), float(own[key]) / 2, rtol=1e-5)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
@pytest.mark.parametrize('all_half', [False, True])
def test_solov2_loss_takes_half_precision_heads_and_stays_float32(dtype, all_half):
    """Mixed precision (O1) gives the category and kernel heads in float16 or bfloat16 (conv2d
    is white-listed) and the mask features in float32 (group_norm is black-listed), or all in
    the half type: the losses are float32, equal to the float32 loss of the same (rounded)
    values, close to that of the unrounded ones, and each head's gradient comes back in its
    own dtype."""
    reference, targets = _outputs(), _targets()
    half = {'cate_logits': [_t(t.numpy()).astype(dtype) for t in reference['cate_logits']],
            'kernels': [_t(t.numpy()).astype(dtype) for t in reference['kernels']],
            'mask_feat': _t(reference['mask_feat'].numpy()).astype(dtype if all_half else 'float32')}
    heads = half['cate_logits'] + half['kernels'] + [half['mask_feat']]
    for t in heads:
        t.stop_gradient = False
    rounded = {k: ([t.astype('float32') for t in v] if isinstance(v, list) else v.astype('float32'))
               for k, v in half.items()}
    losses = solov2_loss(half, targets)
    exact, unrounded = solov2_loss(rounded, targets), solov2_loss(reference, targets)
    for key, value in losses.items():
        assert value.dtype == paddle.float32 and np.isfinite(float(value))
        np.testing.assert_allclose(float(value), float(exact[key]), rtol=1e-6)
        np.testing.assert_allclose(float(value), float(unrounded[key]), rtol=2e-2)
    losses['loss'].backward()
    assert all(t.grad is not None and t.grad.dtype == t.dtype for t in heads)
