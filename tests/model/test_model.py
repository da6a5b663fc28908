"""Network structure and forward-pass checks for every numbered config (CPU, tiny inputs).

Covers: eval forward shapes for all configs, parameter-structure parity with the
PaddleDetection key lists (no ppdet needed), DCN v1/v2 details, frozen stages and
frozen norm, batch consistency and a training-mode backward pass.
"""
import collections
import threading

import numpy as np
import paddle
import pytest

from solov2.config import CONFIGS, with_overrides
from solov2.model.build import build_model
from solov2.model.checkpoint import save_checkpoint
from solov2.model.inference.dygraph_backend import checkpoint_model
from solov2.model.layers import Conv2D, ConvNormAct, DeformConv, zero_weights
from solov2.model.resnet import ResNet
from tests.helpers import FIXTURES_DIR, get_eval_model

paddle.set_device('cpu')

INPUT_HW = (64, 96)
KEYS_DIR = FIXTURES_DIR / 'ppdet_keys'
# PaddleDetection state_dicts list these tensors twice (submodule aliases)
PPDET_ALIAS_PREFIXES = ('solov2_head.solo_kernel.', 'solov2_head.solo_cate.', 'mask_head.conv_pred.')

# Batch and training checks run on smaller grids (config 7's DCN tower backward on the
# 40x40 grid alone takes ~10 s on CPU); grids change no parameter, so the network is
# still exactly config N's. The eval-forward test above uses every config's real grids.
SMALL_GRIDS = ['num_grids=(8, 6, 4, 3, 2)']


@pytest.fixture
def eval_model(pytestconfig):
    """``eval_model(N)`` -> config N's shared eval-mode model."""
    return lambda number: get_eval_model(pytestconfig, number)


@pytest.fixture(scope='module')
def small_grid_model():
    """``small_grid_model(N)`` -> (config N on SMALL_GRIDS, its model), built once a module (random
    weights, seed N) for the batch and the training checks; each sets the mode it needs."""
    built = {}

    def model(number):
        if number not in built:
            paddle.seed(number)
            cfg = with_overrides(CONFIGS[number], SMALL_GRIDS)
            built[number] = cfg, build_model(cfg)
        return built[number]
    return model


def _images(batch: int, seed: int = 0) -> paddle.Tensor:
    data = np.random.RandomState(seed).standard_normal((batch, 3, *INPUT_HW)).astype(np.float32)
    return paddle.to_tensor(data)


def _deform_convs(layer):
    return [(name, sub) for name, sub in layer.named_sublayers() if isinstance(sub, DeformConv)]


# ---- eval forward for every config ------------------------------------------------------

@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_eval_forward_shapes(number, eval_model):
    cfg = CONFIGS[number]
    model = eval_model(number)
    with paddle.no_grad():
        out = model(_images(1))
    assert set(out) == {'cate_logits', 'kernels', 'mask_feat'}
    grids = cfg.num_grids
    assert len(out['cate_logits']) == len(grids) == len(out['kernels'])
    for level, grid in enumerate(grids):
        assert tuple(out['cate_logits'][level].shape) == (1, cfg.num_classes, grid, grid), level
        assert tuple(out['kernels'][level].shape) == (1, cfg.kernel_channels, grid, grid), level
    assert tuple(out['mask_feat'].shape) == (1, cfg.kernel_channels, INPUT_HW[0] // 4, INPUT_HW[1] // 4)
    for tensor in [*out['cate_logits'], *out['kernels'], out['mask_feat']]:
        assert np.isfinite(tensor.numpy()).all()


# ---- a model built for a checkpoint's weights ------------------------------------------------

@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_a_model_built_for_loading_draws_no_random_numbers(number):
    paddle.seed(11)
    expected = paddle.rand([4]).numpy()
    paddle.seed(11)
    model = build_model(CONFIGS[number], random_weights=False)
    assert np.array_equal(paddle.rand([4]).numpy(), expected)     # the generator did not move
    with paddle.LazyGuard():
        lazy = build_model(CONFIGS[number])
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in lazy.state_dict().items()}
    convs = [v.numpy() for v in model.state_dict().values() if len(v.shape) == 4]
    assert convs and not any(np.any(conv) for conv in convs)


def test_zero_weights_hold_in_their_own_thread_only():
    drawn = {}
    with zero_weights():
        other = threading.Thread(target=lambda: drawn.update(weight=Conv2D(4, 4, 3).weight.numpy()))
        other.start()
        other.join()
        inside = Conv2D(4, 4, 3).weight.numpy()
    assert not np.any(inside)
    assert np.any(drawn['weight']) and np.any(Conv2D(4, 4, 3).weight.numpy())


def test_a_loaded_checkpoint_runs_as_the_model_it_was_saved_from(tmp_path):
    cfg = with_overrides(CONFIGS[9], ["head_dcn='v2'", 'head_dcn_indices=(1,)', 'dcn_bias=True', 'mask_feat_dcn=True'])
    paddle.seed(2)
    original = build_model(cfg)                # DCNv2 in the towers and the mask-feature head, BN and GN
    original.eval()
    weights = str(tmp_path / 'random.pdparams')
    save_checkpoint(original.state_dict(), weights, 9, cfg, source='random')
    _, loaded = checkpoint_model(cfg, weights)
    with paddle.no_grad():
        got, want = loaded(_images(1, seed=5)), original(_images(1, seed=5))
    for a, b in zip(_flat_outputs(got, 0), _flat_outputs(want, 0)):
        np.testing.assert_array_equal(a, b)


# ---- structure parity with PaddleDetection (key lists, aliases dropped) ---------------------

def _ppdet_unique_shapes(filename: str):
    rows = [line.rstrip('\n').split('\t') for line in (KEYS_DIR / filename).read_text().splitlines()
            if line.strip()]
    unique = [row for row in rows if not row[0].startswith(PPDET_ALIAS_PREFIXES)]
    assert len(rows) - len(unique) in (7, 10)   # the documented alias keys are there
    return [tuple(int(v) for v in row[1].strip('[]').split(',') if v.strip()) for row in unique]


@pytest.mark.parametrize('number, filename', [
    (0, 'ppdet_solov2_r50_keys.txt'),
    (3, 'ppdet_solov2_light_r50vd_dcn_keys.txt'),
])
def test_state_dict_matches_ppdet_structure(number, filename, eval_model):
    theirs = _ppdet_unique_shapes(filename)
    ours = [tuple(v.shape) for v in eval_model(number).state_dict().values()]
    assert len(ours) == len(theirs)
    assert sum(int(np.prod(s)) for s in ours) == sum(int(np.prod(s)) for s in theirs)
    assert collections.Counter(ours) == collections.Counter(theirs)


# ---- deformable convolution details ----------------------------------------------------------

def test_dcn_v1_config7_has_18_offset_channels_and_no_mask(eval_model):
    model = eval_model(7)
    dcns = _deform_convs(model)
    # C3-C5 conv2 of every block (4 + 6 + 3) + tower conv 2 of both towers
    assert len(dcns) == 13 + 2
    for name, dcn in dcns:
        assert not dcn.modulated, name
        assert tuple(dcn.offset.weight.shape)[:1] == (18,), name
        assert tuple(dcn.offset.bias.shape) == (18,), name
        assert dcn.bias is None, name                      # dcn_bias False
    names = {name for name, _ in dcns}
    assert not any(name.startswith('backbone.layer1.') for name in names)
    assert {'head.kernel_tower.2.conv', 'head.cate_tower.2.conv'} <= names
    assert not any(name.startswith('mask_head.') for name in names)


def test_dcn_v1_forward_uses_no_mask(monkeypatch):
    """DCNv1 passes mask=None to deform_conv; DCNv2 passes a sigmoid mask."""
    import solov2.model.layers as layers
    seen = []
    real = layers.deform_conv

    def spy(*args, **kwargs):
        seen.append(kwargs.get('mask'))
        return real(*args, **kwargs)

    monkeypatch.setattr(layers, 'deform_conv', spy)
    x = paddle.to_tensor(np.random.RandomState(1).standard_normal((1, 8, 6, 7)).astype(np.float32))
    v1 = DeformConv(8, 4, 3, modulated=False)
    v2 = DeformConv(8, 4, 3, modulated=True)
    assert tuple(v1(x).shape) == (1, 4, 6, 7)
    assert tuple(v2(x).shape) == (1, 4, 6, 7)
    assert seen[0] is None
    assert seen[1] is not None and tuple(seen[1].shape) == (1, 9, 6, 7)
    # zero-initialised offset branch: DCNv2's mask is sigmoid(0) = 0.5
    np.testing.assert_allclose(seen[1].numpy(), 0.5)


@pytest.mark.parametrize('number', [2, 3])
def test_dcn_v2_configs_have_27_offset_channels(number, eval_model):
    model = eval_model(number)
    dcns = _deform_convs(model)
    expected = 13 + 2 + (8 if CONFIGS[number].mask_feat_dcn else 0)
    assert len(dcns) == expected
    for name, dcn in dcns:
        assert dcn.modulated, name
        taps = dcn.weight.shape[2] * dcn.weight.shape[3]
        assert dcn.offset.weight.shape[0] == 3 * taps, name
        if taps == 9:
            assert dcn.offset.weight.shape[0] == 27, name


def test_head_dcn_bias_config3_but_not_config2(eval_model):
    for number, has_bias in ((3, True), (2, False)):
        model = eval_model(number)
        keys = model.state_dict()
        for tower in ('kernel_tower', 'cate_tower'):
            conv = getattr(model.head, tower)[2].conv
            assert isinstance(conv, DeformConv)
            assert (conv.bias is not None) == has_bias, (number, tower)
            assert (f'head.{tower}.2.conv.bias' in keys) == has_bias, (number, tower)
        # backbone DCN never has a bias
        for name, dcn in _deform_convs(model.backbone):
            assert dcn.bias is None, (number, name)
    # config 3's mask-feature DCN convs carry a bias too
    for name, dcn in _deform_convs(eval_model(3).mask_head):
        assert dcn.bias is not None, name


# ---- frozen stages and frozen norm -----------------------------------------------------------

def test_frozen_stages_config0(eval_model):
    cfg = CONFIGS[0]
    assert cfg.frozen_stages == 1 and cfg.freeze_norm
    backbone = eval_model(0).backbone
    for layer in (backbone.stem, backbone.layer1):
        assert all(p.stop_gradient for p in layer.parameters())
    conv_weights = [p for name, p in backbone.layer2.named_parameters() if name.endswith('conv.weight')]
    assert conv_weights and not any(p.stop_gradient for p in conv_weights)


@pytest.mark.parametrize('frozen_stages, frozen', [(-1, []), (0, ['stem']), (1, ['stem', 'layer1']),
                                                   (2, ['stem', 'layer1', 'layer2'])])
def test_frozen_stages_without_frozen_norm(frozen_stages, frozen):
    backbone = ResNet(depth=18, frozen_stages=frozen_stages, freeze_norm=False)
    for part in ('stem', 'layer1', 'layer2', 'layer3', 'layer4'):
        # BN running statistics are never trained; look at weights and biases
        flags = {p.stop_gradient for name, p in getattr(backbone, part).named_parameters()
                 if not name.endswith(('_mean', '_variance'))}
        assert flags == {part in frozen}, part


def test_freeze_norm_uses_global_stats(eval_model):
    frozen = ResNet(depth=18, frozen_stages=-1, freeze_norm=True)
    bns = [m for m in frozen.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert bns and all(bn._use_global_stats for bn in bns)
    assert all(p.stop_gradient for bn in bns for p in bn.parameters())
    # the config 0 model too
    assert all(m._use_global_stats for m in eval_model(0).backbone.sublayers()
               if isinstance(m, paddle.nn.BatchNorm2D))

    # behaviour: training mode gives eval-mode outputs and leaves running stats alone
    x = _images(2, seed=5)
    frozen.eval()
    with paddle.no_grad():
        expected = [f.numpy() for f in frozen(x)]
    means = [bn._mean.numpy().copy() for bn in bns]
    frozen.train()
    with paddle.no_grad():
        got = [f.numpy() for f in frozen(x)]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    for bn, mean in zip(bns, means):
        np.testing.assert_array_equal(bn._mean.numpy(), mean)

    live = ResNet(depth=18, frozen_stages=-1, freeze_norm=False)
    live_bns = [m for m in live.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert not any(bn._use_global_stats for bn in live_bns)
    live.train()
    with paddle.no_grad():
        live(x)
    assert not np.allclose(live_bns[0]._mean.numpy(), 0.0)   # running mean moved


# ---- batch consistency ----------------------------------------------------------------------

def _flat_outputs(out, index):
    return ([t[index].numpy() for t in out['cate_logits']] + [t[index].numpy() for t in out['kernels']]
            + [out['mask_feat'][index].numpy()])


@pytest.mark.parametrize('number', [5, 7])
def test_batch_matches_single_images(number, small_grid_model):
    _, model = small_grid_model(number)
    model.eval()
    pair = _images(2, seed=11)
    with paddle.no_grad():
        batched = model(pair)
        singles = [model(pair[i:i + 1]) for i in range(2)]
    for i in range(2):
        for got, expected in zip(_flat_outputs(batched, i), _flat_outputs(singles[i], 0)):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # the two images are different, so their outputs must be too
    assert not np.allclose(batched['mask_feat'][0].numpy(), batched['mask_feat'][1].numpy())


# ---- training mode ---------------------------------------------------------------------------

@pytest.mark.parametrize('number', [5, 7])
def test_training_forward_backward_reaches_heads(number, small_grid_model):
    cfg, model = small_grid_model(number)
    for param in model.parameters():             # no gradient left from another check (Paddle 2.6 and 3.x)
        param.clear_gradient(False)
    model.train()
    out = model(_images(2, seed=3))
    for level, grid in enumerate(cfg.num_grids):
        assert tuple(out['cate_logits'][level].shape) == (2, cfg.num_classes, grid, grid)
    loss = (sum(t.mean() for t in out['cate_logits']) + sum(t.mean() for t in out['kernels'])
            + out['mask_feat'].mean())
    loss.backward()

    for part in (model.head, model.mask_head):
        trainable = [(n, p) for n, p in part.named_parameters() if not p.stop_gradient]
        assert trainable
        missing = [n for n, p in trainable if p.grad is None]
        assert not missing, missing
        assert any(float(np.abs(p.grad.numpy()).sum()) > 0 for _, p in trainable)
    # trainable backbone stages get gradients, frozen ones none
    assert model.backbone.layer4[0].conv1.conv.weight.grad is not None
    assert all(p.grad is None for p in model.backbone.stem.parameters())
    if number == 7:
        dcns = _deform_convs(model)
        assert dcns
        for name, dcn in dcns:
            assert dcn.weight.grad is not None, name
            assert dcn.offset.weight.grad is not None, name


@pytest.mark.parametrize('build, words', [
    (lambda: ResNet(depth=18, variant='c'), "variant 'c'"),          # no deep-stem/plain-shortcut hybrid
    (lambda: ResNet(depth=152), 'depth 152'),                        # no bare KeyError
    (lambda: ConvNormAct(4, 4, 3, dcn='v3'), "unknown dcn 'v3'"),       # no DCN v1 in its place
    (lambda: ConvNormAct(4, 4, 3, norm='ln'), "unknown norm 'ln'"),    # no BatchNorm in its place
])
def test_a_network_part_refuses_a_choice_it_has_not(build, words):
    """A config class, helper or script naming a choice the network lacks gets a ValueError naming it,
    not another network (the config's rules refuse the user's values first)."""
    with pytest.raises(ValueError, match=words):
        build()
