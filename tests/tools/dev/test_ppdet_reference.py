"""Smoke tests of the PaddleDetection reference harness (tools/dev/reference/ppdet_ref.py).

Its file round trip (build, save, a fresh model loads it) and what its run returns are checked
on every family by tests/convert/test_parity_ppdet.py, on the models its parity test builds."""

import pytest

pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')

import numpy as np

from solov2.tools.dev.reference import ppdet_ref

pytestmark = pytest.mark.reference


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
