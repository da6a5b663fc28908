"""Self-tests of the independent PyTorch SOLOv2 reference
(tests/reference/solo_torch.py) against checkpoints in the original
WXinlong/SOLO (mmdet-1.x) format made by tests/fixtures/solo_checkpoints.py.
"""
import pytest

pytest.importorskip('torch', reason='reference test: needs PyTorch (requirements-test.txt)')

import torch
import torch.nn.functional as F

from tests.fixtures.solo_checkpoints import keys_file, read_key_list, write_solo_checkpoint
from tests.reference.solo_torch import ARCH_ARGS, build_solo_torch, coord_feat, load_solo_checkpoint

pytestmark = pytest.mark.reference

CONFIGS = sorted(ARCH_ARGS)
IMG_SHAPE = (1, 3, 192, 256)  # non-square, multiples of 32
GRIDS = (40, 36, 24, 16, 12)



def _read_keys(cfg):
    return {name: shape for name, shape, _ in read_key_list(keys_file(cfg))}


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp('solo_ckpt')
    paths = {}
    for cfg in CONFIGS:
        out = str(d / (cfg + '.pth'))
        write_solo_checkpoint(cfg, out, seed=11)
        paths[cfg] = out
    return paths


@pytest.fixture(scope='module')
def runs(ckpts):
    """cfg -> (model, img, outputs with intermediates, captured head inputs)."""
    torch.set_num_threads(1)
    res = {}
    for cfg in CONFIGS:
        model = build_solo_torch(**ARCH_ARGS[cfg])
        meta = load_solo_checkpoint(model, ckpts[cfg])
        assert meta['seed'] == 11
        captured = {}

        def hook(name):
            def fn(mod, inp):
                captured.setdefault(name, []).append(inp[0].detach().clone())
            return fn

        hs = [model.bbox_head.kernel_convs[0].conv.register_forward_pre_hook(
                  hook('kernel0')),
              model.bbox_head.cate_convs[0].conv.register_forward_pre_hook(
                  hook('cate0')),
              model.mask_feat_head.convs_all_levels[3].conv0.conv
              .register_forward_pre_hook(hook('mask3'))]
        g = torch.Generator().manual_seed(2024)
        img = torch.randn(*IMG_SHAPE, generator=g)
        with torch.no_grad():
            out = model(img, return_intermediates=True)
        for h in hs:
            h.remove()
        res[cfg] = (model, img, out, captured)
    return res


def _rms(t):
    return float(t.double().pow(2).mean().sqrt())


@pytest.mark.parametrize('cfg', CONFIGS)
def test_module_tree_matches_key_list(cfg):
    keys = _read_keys(cfg)
    model = build_solo_torch(**ARCH_ARGS[cfg])
    sd = model.state_dict()
    assert set(sd) == set(keys)
    for k, shape in keys.items():
        assert tuple(sd[k].shape) == shape, k
    assert not model.training
    assert all(not m.training for m in model.modules())


def test_load_is_strict(tmp_path):
    model = build_solo_torch(**ARCH_ARGS[CONFIGS[0]])
    sd = model.state_dict()
    p = tmp_path / 'partial.pth'
    sd.pop('bbox_head.solo_cate.bias')
    torch.save({'state_dict': sd, 'meta': {}}, str(p))
    with pytest.raises(RuntimeError, match='solo_cate.bias'):
        load_solo_checkpoint(model, str(p))
    sd = model.state_dict()
    sd['bbox_head.extra.weight'] = torch.zeros(1)
    torch.save({'state_dict': sd}, str(p))
    with pytest.raises(RuntimeError, match='extra'):
        load_solo_checkpoint(model, str(p))


@pytest.mark.parametrize('cfg', CONFIGS)
def test_output_shapes_and_ranges(runs, cfg):
    _, img, out, _ = runs[cfg]
    a = ARCH_ARGS[cfg]
    B, _, H, W = img.shape
    E = a['kernel_out_channels']
    assert a['mask_out_channels'] == E
    assert len(out['cate']) == 5 and len(out['kernel']) == 5
    for c, k, s in zip(out['cate'], out['kernel'], GRIDS):
        assert tuple(c.shape) == (B, 80, s, s)
        assert tuple(k.shape) == (B, E, s, s)
        assert torch.isfinite(c).all() and torch.isfinite(k).all()
        # raw logits (not sigmoid): the category bias is -4 in these weights
        assert c.min() < 0 and -5.5 < float(c.mean()) < -2.5
        assert 0.3 < _rms(k) < 3.0
    mf = out['mask_feat']
    assert tuple(mf.shape) == (B, E, H // 4, W // 4)
    assert torch.isfinite(mf).all()
    assert mf.min() >= 0  # conv_pred ends with GN + ReLU
    assert 0.2 < _rms(mf) < 3.0
    # backbone / FPN strides
    for i, c in enumerate(out['backbone']):
        assert c.shape[-2:] == (H // 2 ** (i + 2), W // 2 ** (i + 2))
    for i, p in enumerate(out['fpn']):
        assert p.shape[1] == 256
        assert p.shape[-2:] == (H // 2 ** (i + 2), W // 2 ** (i + 2))


@pytest.mark.parametrize('cfg', CONFIGS)
def test_fpn_hand_computed(runs, cfg):
    model, _, out, _ = runs[cfg]
    c2, c3, c4, c5 = out['backbone']
    p2, p3, p4, p5, p6 = out['fpn']
    neck = model.neck
    with torch.no_grad():
        lat5 = neck.lateral_convs[3].conv(c5)
        lat4 = neck.lateral_convs[2].conv(c4) + \
            lat5.repeat_interleave(2, 2).repeat_interleave(2, 3)
        torch.testing.assert_close(neck.fpn_convs[3].conv(lat5), p5)
        torch.testing.assert_close(neck.fpn_convs[2].conv(lat4), p4,
                                   rtol=1e-4, atol=1e-4)
    # P6 = max_pool2d(P5, kernel 1, stride 2) = every other pixel of P5
    torch.testing.assert_close(p6, p5[:, :, ::2, ::2])
    # C2 channel counts: 64 (BasicBlock) / 256 (Bottleneck)
    assert c2.shape[1] == (64 if ARCH_ARGS[cfg]['depth'] < 50 else 256)
    assert c5.shape[1] == (512 if ARCH_ARGS[cfg]['depth'] < 50 else 2048)


@pytest.mark.parametrize('cfg', CONFIGS)
def test_head_inputs_and_coords(runs, cfg):
    _, _, out, cap = runs[cfg]
    p2, p3, p4, p5, p6 = out['fpn']
    k0, c0 = cap['kernel0'], cap['cate0']
    assert len(k0) == 5 and len(c0) == 5
    level_feats = [F.interpolate(p2, scale_factor=0.5, mode='bilinear',
                                 align_corners=False), p3, p4, p5,
                   F.interpolate(p6, size=p5.shape[-2:], mode='bilinear',
                                 align_corners=False)]
    assert level_feats[0].shape[-2:] == p3.shape[-2:]
    for lvl, (kin, cin, s) in enumerate(zip(k0, c0, GRIDS)):
        # the first kernel-tower conv sees 256 + 2 coord channels, the first
        # category-tower conv the same tensor without the coords
        assert tuple(kin.shape) == (1, 258, s, s)
        assert tuple(cin.shape) == (1, 256, s, s)
        torch.testing.assert_close(kin[:, :256], cin, rtol=0, atol=0)
        # the 256 feature channels are the level feature resized to S x S
        want = F.interpolate(level_feats[lvl], size=(s, s), mode='bilinear',
                             align_corners=False)
        torch.testing.assert_close(cin, want, rtol=1e-5, atol=1e-5)
        x, y = kin[0, 256], kin[0, 257]
        # x varies along columns only, y along rows only, both in [-1, 1]
        # (bilinear weights sum to 1 only up to rounding -> tiny tolerance)
        torch.testing.assert_close(x, x[:1].expand_as(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(y, y[:, :1].expand_as(y), rtol=0, atol=1e-6)
        assert x.abs().max() <= 1 + 1e-6 and y.abs().max() <= 1 + 1e-6
        assert (x[0, 1:] > x[0, :-1]).all() and (y[1:, 0] > y[:-1, 0]).all()
        # symmetric about the centre (linspace(-1, 1) resized, corners False)
        torch.testing.assert_close(x[0], -x[0].flip(0), rtol=0, atol=1e-6)
        torch.testing.assert_close(y[:, 0], -y[:, 0].flip(0), rtol=0,
                                   atol=1e-6)
        # the original feature map is non-square, so x and y ranges differ
        # unless they're resized from the same length
        h, w = level_feats[lvl].shape[-2:]
        if h != w:
            assert not torch.allclose(x[0], y[:, 0])
    # mask-feature head: only level 3 (P5) gets coords, exact linspaces
    (m3,) = cap['mask3']
    h5, w5 = p5.shape[-2:]
    assert tuple(m3.shape) == (1, 258, h5, w5)
    torch.testing.assert_close(m3[:, :256], p5, rtol=0, atol=0)
    torch.testing.assert_close(m3[0, 256], torch.linspace(-1, 1, w5)
                               .expand(h5, w5), rtol=0, atol=0)
    torch.testing.assert_close(m3[0, 257], torch.linspace(-1, 1, h5)[:, None]
                               .expand(h5, w5), rtol=0, atol=0)


def test_coord_feat_layout():
    t = torch.zeros(2, 5, 3, 4)
    c = coord_feat(t)
    assert tuple(c.shape) == (2, 2, 3, 4)
    torch.testing.assert_close(c[1, 0, 2], torch.tensor([-1., -1 / 3, 1 / 3, 1.]))
    torch.testing.assert_close(c[0, 1, :, 3], torch.tensor([-1., 0., 1.]))


def test_mask_feat_head_structure():
    model = build_solo_torch(**ARCH_ARGS[CONFIGS[0]])
    levels = model.mask_feat_head.convs_all_levels
    names = [[n for n, _ in lvl.named_children()] for lvl in levels]
    assert names == [['conv0'],
                     ['conv0', 'upsample0'],
                     ['conv0', 'upsample0', 'conv1', 'upsample1'],
                     ['conv0', 'upsample0', 'conv1', 'upsample1', 'conv2',
                      'upsample2']]
    assert levels[3].conv0.conv.in_channels == 258
    assert levels[2].conv0.conv.in_channels == 256
    assert model.bbox_head.kernel_convs[0].conv.in_channels == 258
    assert model.bbox_head.cate_convs[0].conv.in_channels == 256
    assert model.bbox_head.kernel_convs[0].conv.bias is None
    assert model.bbox_head.kernel_convs[0].gn.num_groups == 32


def test_batch_consistency(runs):
    cfg = CONFIGS[0]
    model, img, out, _ = runs[cfg]
    g = torch.Generator().manual_seed(7)
    img2 = torch.cat([torch.randn(*IMG_SHAPE, generator=g), img], 0)
    with torch.no_grad():
        o2 = model(img2)
    for a, b in zip(o2['cate'] + o2['kernel'] + [o2['mask_feat']],
                    out['cate'] + out['kernel'] + [out['mask_feat']]):
        torch.testing.assert_close(a[1:], b, rtol=1e-4, atol=1e-4)
