"""Smoke tests of the PaddleDetection reference harness (tools/dev/reference/ppdet_ref.py)."""

import time

import pytest

pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')

import numpy as np
import paddle

from solov2.tools.dev.reference import ppdet_ref

pytestmark = pytest.mark.reference

# (H, W) per family: small inputs (the heads run on their fixed grids whatever the size)
SIZES = {
    'r50_fpn': (128, 160),
    'r50_enhance': (128, 160),
    'light_r50_vd_dcn_v05': (128, 160),
    'r101_vd_dcn': (128, 160),
    'light448_r50': (128, 160),
}
# (solo_kernel E, mask-feature E) per family
WIDTHS = {
    'r50_fpn': 256,
    'r50_enhance': 128,
    'light_r50_vd_dcn_v05': 128,
    'r101_vd_dcn': 256,
    'light448_r50': 128,
}
ALIASES = [
    ('solov2_head.solo_cate.bias', 'solov2_head.bbox_head.solo_cate.bias'),
    ('solov2_head.solo_kernel.weight', 'solov2_head.bbox_head.solo_kernel.weight'),
]


def test_families_listed():
    assert set(ppdet_ref.FAMILIES) == set(SIZES)


def test_patch_is_idempotent():
    ppdet_ref.patch_postprocess()
    from ppdet.modeling.heads.solov2_head import SOLOv2Head
    from ppdet.modeling.layers import MaskMatrixNMS
    f1, f2 = SOLOv2Head.get_seg_single, MaskMatrixNMS.__call__
    ppdet_ref.patch_postprocess()
    assert SOLOv2Head.get_seg_single is f1 and MaskMatrixNMS.__call__ is f2
    assert f1._ppdet_ref_patched and f2._ppdet_ref_patched


def test_clean_rule():
    masks = np.zeros((5, 4, 4), np.uint8)
    masks[0, :2] = 1
    masks[1, 2:] = 1
    masks[4, :2] = 1  # exact duplicate of entry 0
    labels = np.array([3, 7, 7, 0, 3])
    scores = np.array([0.9, 0.4, 0.01, 0.0, 0.9], np.float32)
    m, lab, s = ppdet_ref.clean_ppdet_detections(masks, labels, scores)
    assert lab.tolist() == [3, 7] and s.tolist() == pytest.approx([0.9, 0.4])
    assert np.array_equal(m, masks[:2])
    m, lab, s = ppdet_ref.clean_ppdet_detections(masks[:0], labels[:0], scores[:0])
    assert m.shape == (0, 4, 4) and lab.shape == (0,) and s.shape == (0,)


def _snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_weights_are_deterministic():
    # one construction (cheap); randomize + calibrate twice with the same seed
    model = ppdet_ref.FAMILIES['light_r50_vd_dcn_v05']()
    model.eval()
    ppdet_ref.randomize(model, 3)
    plain = _snapshot(model)
    np.testing.assert_array_equal(plain['solov2_head.solo_cate.bias'],
                                  np.full([ppdet_ref.NUM_CLASSES], ppdet_ref.CATE_BIAS,
                                          np.float32))
    # DCN offset convs are randomised (ppdet zero-initialises them)
    off = plain['backbone.res3.res3a.branch2b.conv_offset.weight']
    assert 0 < np.abs(off).max() < 0.05
    ppdet_ref.calibrate(model, 3)
    a = _snapshot(model)
    ppdet_ref.randomize(model, 3)
    ppdet_ref.calibrate(model, 3)
    b = _snapshot(model)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        # calibrate only touches the two head output biases
        if not key.endswith(('solo_cate.bias', 'solo_kernel.bias')):
            np.testing.assert_array_equal(a[key], plain[key], err_msg=key)
    assert not np.array_equal(a['solov2_head.solo_cate.bias'],
                              plain['solov2_head.solo_cate.bias'])


@pytest.mark.parametrize('family', list(SIZES))
def test_family_roundtrip_and_run(family, tmp_path):
    t0 = time.perf_counter()
    model = ppdet_ref.build(family, seed=0)
    assert not model.training

    sd = model.state_dict()
    assert np.isfinite(sd['solov2_head.solo_cate.bias'].numpy()).all()

    path = tmp_path / f'{family}.pdparams'
    ppdet_ref.save(model, path)
    loaded = paddle.load(str(path))
    assert set(loaded) == set(sd)
    for a, b in ALIASES:  # PaddleDetection writes both alias names
        assert a in loaded and b in loaded
        np.testing.assert_array_equal(np.asarray(loaded[a]), np.asarray(loaded[b]))

    fresh = ppdet_ref.FAMILIES[family]()
    missing, unexpected = fresh.set_state_dict(loaded)
    assert not missing and not unexpected
    fresh.eval()
    fsd = fresh.state_dict()
    for key in sd:
        np.testing.assert_array_equal(fsd[key].numpy(), sd[key].numpy(), err_msg=key)
    del model, sd, loaded

    h, w = SIZES[family]
    img = np.random.RandomState(1).standard_normal((1, 3, h, w)).astype(np.float32)
    t1 = time.perf_counter()
    out = ppdet_ref.run(fresh, img)
    t_run = time.perf_counter() - t1

    e = WIDTHS[family]
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

    masks, labels, scores = ppdet_ref.clean_ppdet_detections(
        out['masks'], out['labels'], out['scores'])
    assert 1 <= len(scores) <= 100
    assert ((labels >= 0) & (labels < ppdet_ref.NUM_CLASSES)).all()
    assert (scores >= ppdet_ref.UPDATE_THRESHOLD).all()
    assert (np.diff(scores) <= 0).all()  # ppdet sorts by score, descending
    assert set(np.unique(masks)) <= {0, 1}
    print(f'\n{family} {h}x{w}: candidates={candidates} raw={n} clean={len(scores)} '
          f'forward+post={t_run:.2f}s total={time.perf_counter() - t0:.2f}s')
