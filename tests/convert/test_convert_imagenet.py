"""ImageNet backbones -> backbone-only checkpoints: convert/torchvision2paddle.py and
convert/paddleclas2paddle.py.

The sources are made independently of the converters: a small torchvision-layout ResNet
written in torch (real ``state_dict`` names, ``num_batches_tracked`` and ``fc`` included),
and PaddleClas static names enumerated here from the ResNet-vd layout. Every source
tensor holds its own constant, so each converted tensor shows where it came from.
"""
import json
import pickle
import re

import pytest

pytest.importorskip('torch', reason='reference test: needs PyTorch (requirements-test.txt)')

import numpy as np
import torch

from solov2.convert import families
from solov2.convert.common import ConversionError, convert
from solov2.model.checkpoint import load_paddle_params
from solov2.tools.convert import run_family

pytestmark = pytest.mark.reference

tnn = torch.nn

STAGES = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
WIDTHS = (64, 128, 256, 512)
BN_TV = {'weight': 'weight', 'bias': 'bias', 'running_mean': '_mean', 'running_var': '_variance'}
BN_PC = {'scale': 'weight', 'offset': 'bias', 'mean': '_mean', 'variance': '_variance'}


# ---------------------------------------------------------------- torchvision layout
class _Block(tnn.Module):
    """torchvision BasicBlock (``bottleneck=False``) or Bottleneck (stride on conv2)."""

    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool):
        super().__init__()
        cout = width * 4 if bottleneck else width
        if bottleneck:
            specs = [(cin, width, 1, 1), (width, width, 3, stride), (width, cout, 1, 1)]
        else:
            specs = [(cin, width, 3, stride), (width, width, 3, 1)]
        for i, (a, b, k, s) in enumerate(specs, 1):
            setattr(self, f'conv{i}', tnn.Conv2d(a, b, k, s, k // 2, bias=False))
            setattr(self, f'bn{i}', tnn.BatchNorm2d(b))
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                             tnn.BatchNorm2d(cout))


class _TorchvisionResNet(tnn.Module):
    def __init__(self, depth: int):
        super().__init__()
        bottleneck = depth >= 50
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        cin = 64
        for s, (n, width) in enumerate(zip(STAGES[depth], WIDTHS)):
            blocks = []
            for b in range(n):
                blocks.append(_Block(cin, width, 2 if (b == 0 and s > 0) else 1, bottleneck))
                cin = width * 4 if bottleneck else width
            setattr(self, f'layer{s + 1}', tnn.Sequential(*blocks))
        self.fc = tnn.Linear(cin, 1000)


def torchvision_to_ours(name: str):
    """torchvision name -> our name; None for what a backbone has no place for."""
    if name.startswith('fc.') or name.endswith('num_batches_tracked'):
        return None
    if name == 'conv1.weight':
        return 'backbone.stem.0.conv.weight'
    m = re.fullmatch(r'bn1\.(\w+)', name)
    if m:
        return f'backbone.stem.0.norm.{BN_TV[m.group(1)]}'
    m = re.fullmatch(r'(layer\d\.\d+)\.(?:conv(\d)|downsample\.0)\.weight', name)
    if m:
        part = f'conv{m.group(2)}' if m.group(2) else 'shortcut'
        return f'backbone.{m.group(1)}.{part}.conv.weight'
    m = re.fullmatch(r'(layer\d\.\d+)\.(?:bn(\d)|downsample\.1)\.(\w+)', name)
    part = f'conv{m.group(2)}' if m.group(2) else 'shortcut'
    return f'backbone.{m.group(1)}.{part}.norm.{BN_TV[m.group(3)]}'


def _torchvision_pth(depth: int, path: str) -> dict:
    """Save a torchvision-layout ResNet whose tensor i is filled with i + 1; return
    {our name: (constant, shape)} for the tensors a backbone takes."""
    state = _TorchvisionResNet(depth).state_dict()
    expected = {}
    with torch.no_grad():
        for i, (name, tensor) in enumerate(state.items()):
            tensor.fill_(i + 1)
            ours = torchvision_to_ours(name)
            if ours is not None:
                expected[ours] = (float(i + 1), tuple(tensor.shape))
    assert any(k.endswith('num_batches_tracked') for k in state) and 'fc.weight' in state
    torch.save(state, path)
    return expected


@pytest.fixture(scope='module')
def r50_pth(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('tv') / 'resnet50.pth')
    return path, _torchvision_pth(50, path)


def _check_backbone_only(out: str, number: int, expected: dict, zero_keys=()):
    """The checkpoint holds exactly the expected backbone keys, each with its constant
    and source shape (``expected``: {our name: (constant, shape)}), or zeros."""
    state = load_paddle_params(out)
    assert set(state) == set(expected) | set(zero_keys)
    for key, value in state.items():
        assert value.dtype == np.float32, key
        if key in zero_keys:
            assert not value.any(), key
        else:
            assert value.shape == expected[key][1] and np.all(value == expected[key][0]), key
    meta = json.load(open(out.replace('.pdparams', '.json')))
    assert meta['config'] == number and meta['part'] == 'backbone'
    return meta


def test_torchvision_r50_lands_tensor_by_tensor(r50_pth, tmp_path, capsys):
    src, expected = r50_pth
    out = str(tmp_path / 'r50.pdparams')
    assert run_family('torchvision', [src, out]) == 0
    assert 'config 0 ' in capsys.readouterr().out
    meta = _check_backbone_only(out, 0, expected)
    assert 'initialised' not in meta
    assert len(expected) == 265        # 53 convs + 53 BNs x 4; fc and 53 counters skipped


def test_torchvision_detects_r18(tmp_path):
    src, out = str(tmp_path / 'resnet18.pth'), str(tmp_path / 'r18.pdparams')
    expected = _torchvision_pth(18, src)
    assert run_family('torchvision', [src, out]) == 0
    _check_backbone_only(out, 5, expected)


def test_torchvision_dcn_config_zero_offsets_listed(r50_pth, tmp_path, capsys):
    src, expected = r50_pth
    out = str(tmp_path / 'r50dcn.pdparams')
    assert run_family('torchvision', [src, out, '--config', '7']) == 0
    offsets = {f'backbone.layer{s + 1}.{b}.conv2.conv.offset.{leaf}'
               for s in (1, 2, 3) for b in range(STAGES[50][s]) for leaf in ('weight', 'bias')}
    meta = _check_backbone_only(out, 7, expected, zero_keys=offsets)
    assert set(meta['initialised']) == offsets
    assert all('DCNv1' in why for why in meta['initialised'].values())
    assert 'WARNING: 26 tensors INITIALISED, NOT CONVERTED' in capsys.readouterr().out


def test_torchvision_unknown_key_fails(tmp_path):
    source = {'conv1.weight': np.zeros((64, 3, 7, 7), np.float32),
              'layer5.0.conv1.weight': np.zeros(1, np.float32)}
    with pytest.raises(ConversionError, match=r'unused source keys:\n  layer5\.0\.conv1\.weight'):
        convert(families.CONVERTERS['torchvision'], source, 5)


# ---------------------------------------------------------------- PaddleClas layout
def paddleclas_resnet_vd(depth: int):
    """[(PaddleClas static name, our name or None, shape)] of ResNet{depth}-vd + fc."""
    entries = []

    def unit(conv, bn, ours, cout, cin, k):
        entries.append((f'{conv}_weights', f'{ours}.conv.weight', (cout, cin, k, k)))
        entries.extend((f'{bn}_{leaf}', f'{ours}.norm.{our}', (cout,)) for leaf, our in BN_PC.items())

    for i, (cin, cout) in enumerate(((3, 32), (32, 32), (32, 64)), 1):
        unit(f'conv1_{i}', f'bnv1_{i}', f'backbone.stem.{i - 1}', cout, cin, 3)
    cin = 64
    for s, (n, width) in enumerate(zip(STAGES[depth], WIDTHS)):
        for b in range(n):
            letter = 'a' if b == 0 else (f'b{b}' if depth == 101 and s == 2 else 'abcdef'[b])
            name, ours = f'{s + 2}{letter}', f'backbone.layer{s + 1}.{b}'
            unit(f'res{name}_branch2a', f'bn{name}_branch2a', f'{ours}.conv1', width, cin, 1)
            unit(f'res{name}_branch2b', f'bn{name}_branch2b', f'{ours}.conv2', width, width, 3)
            unit(f'res{name}_branch2c', f'bn{name}_branch2c', f'{ours}.conv3', 4 * width, width, 1)
            if b == 0:
                unit(f'res{name}_branch1', f'bn{name}_branch1', f'{ours}.shortcut', 4 * width, cin, 1)
            cin = 4 * width
    entries += [('fc_0.w_0', None, (2048, 1000)), ('fc_0.b_0', None, (1000,))]
    return entries


def _paddleclas_file(depth: int, path=None):
    """Static-named arrays (tensor i filled with i + 1, plus bookkeeping), written as a
    plain pickle to ``path`` if given; {our name: (constant, shape)}; DCN offset keys."""
    entries = paddleclas_resnet_vd(depth)
    arrays = {name: np.full(shape, i + 1, np.float32) for i, (name, _, shape) in enumerate(entries)}
    arrays['@LR_DECAY_COUNTER@'] = np.zeros(1, np.float32)     # bookkeeping, skipped
    if path:
        with open(path, 'wb') as f:
            pickle.dump(arrays, f, protocol=4)
    expected = {ours: (float(i + 1), shape) for i, (_, ours, shape) in enumerate(entries) if ours}
    offsets = {f'backbone.layer{s + 1}.{b}.conv2.conv.offset.{leaf}'
               for s in (1, 2, 3) for b in range(STAGES[depth][s]) for leaf in ('weight', 'bias')}
    return arrays, expected, offsets


@pytest.mark.parametrize('depth, number', [(50, 2), (101, 4)])
def test_paddleclas_vd_lands_and_dcn_offsets_are_zero(depth, number, tmp_path, capsys):
    """The config is detected (R101-vd after R50-vd's config 2 fails)."""
    src, out = str(tmp_path / 'pc.pdparams'), str(tmp_path / 'ours.pdparams')
    _, expected, offsets = _paddleclas_file(depth, src)
    assert run_family('paddleclas', [src, out]) == 0
    printed = capsys.readouterr().out
    assert f'config {number} ' in printed
    assert f'WARNING: {len(offsets)} tensors INITIALISED, NOT CONVERTED' in printed
    meta = _check_backbone_only(out, number, expected, zero_keys=offsets)
    assert set(meta['initialised']) == offsets
    assert all('sigmoid(0) = 0.5' in why for why in meta['initialised'].values())
    assert len(offsets) == {50: 26, 101: 60}[depth]


def test_paddleclas_missing_key_is_named():
    arrays, _, _ = _paddleclas_file(50)
    del arrays['bn4f_branch2c_variance']
    with pytest.raises(ConversionError, match=r'bn4f_branch2c_variance'):
        convert(families.CONVERTERS['paddleclas'], arrays, 2)
