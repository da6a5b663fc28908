"""Original SOLO checkpoints: generate random .pth files in the exact mmdet-1.x
format from the key lists in tests/fixtures, convert them (no torch in the converter) and
compare our network with an independent PyTorch mirror of SOLO's modules."""

import pytest

pytest.importorskip('torch', reason='reference test: needs PyTorch (requirements-test.txt)')

import numpy as np
import paddle
import torch

from solov2.config import CONFIGS, with_overrides
from solov2.config.sidecar import read_sidecar
from solov2.convert import families
from solov2.convert.common import ConversionError, convert
from solov2.convert.pth_reader import load_state_dict
from solov2.model.build import build_model
from solov2.model.checkpoint import load_paddle_params
from solov2.tools.convert import run_family
from tests.fixtures.solo_checkpoints import write_solo_checkpoint
from tests.reference.solo_torch import ARCH_ARGS, build_solo_torch, load_solo_checkpoint

pytestmark = pytest.mark.reference

CASES = {'solov2_light_448_r18_fpn_8gpu_3x': 5, 'solov2_r50_fpn_8gpu_3x': 0}
TOL = 1e-4
# the mask features read no grid: a check of them alone runs the heads on small grids
SMALL_GRIDS = ['num_grids=(8, 6, 4, 3, 2)']


def _generate(name: str, path) -> None:
    write_solo_checkpoint(name, path, seed=11)


def _ours(cfg, state, image):
    model = build_model(cfg)
    model.set_state_dict(state)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(image))
    return {'cate': [c.numpy() for c in out['cate_logits']],
            'kernel': [k.numpy() for k in out['kernels']], 'mask_feat': out['mask_feat'].numpy()}


def _max_diff(a, b) -> float:
    if isinstance(a, list):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    return float(np.abs(a - b).max())


@pytest.fixture(scope='module', params=list(CASES))
def case(request, tmp_path_factory):
    name = request.param
    path = tmp_path_factory.mktemp(name) / f'{name}.pth'
    _generate(name, path)
    mirror = build_solo_torch(**ARCH_ARGS[name])
    load_solo_checkpoint(mirror, str(path))
    image = np.random.RandomState(0).standard_normal((1, 3, 160, 224)).astype(np.float32)
    with torch.no_grad():
        expected = {k: ([t.numpy() for t in v] if isinstance(v, list) else v.numpy())
                    for k, v in mirror(torch.from_numpy(image)).items()}
    return name, path, image, expected


def test_cli_detects_config_and_outputs_match(case, tmp_path):
    name, path, image, expected = case
    out = tmp_path / 'ours.pdparams'
    assert run_family('solo', [str(path), str(out)]) == 0
    assert read_sidecar(str(out))['config'] == CASES[name]
    ours = _ours(CONFIGS[CASES[name]], load_paddle_params(str(out)), image)
    diffs = {k: _max_diff(ours[k], expected[k]) for k in expected}
    print(f'\n{name} max abs diff vs torch mirror: ' +
          ', '.join(f'{k} {v:.2e}' for k, v in diffs.items()))
    assert all(v <= TOL for v in diffs.values()), diffs


def test_a_wrong_mapping_is_caught(case):
    """Swapping two same-shaped tensors in the source (as a wrong rename rule would)
    changes the converted network's outputs beyond tolerance."""
    name, path, image, expected = case
    source = load_state_dict(str(path))
    a, b = 'neck.fpn_convs.1.conv.weight', 'neck.fpn_convs.2.conv.weight'
    source[a], source[b] = source[b], source[a]
    number = CASES[name]
    _, cfg, state, _ = convert(families.CONVERTERS['solo'], source, number)
    ours = _ours(with_overrides(cfg, SMALL_GRIDS), state, image)
    assert _max_diff(ours['mask_feat'], expected['mask_feat']) > 10 * TOL


def test_incomplete_checkpoint_is_refused(case, tmp_path):
    name, path, *_ = case
    source = load_state_dict(str(path))
    del source['bbox_head.solo_kernel.bias']
    source['bbox_head.extra.weight'] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as info:
        convert(families.CONVERTERS['solo'], source, CASES[name])
    message = str(info.value)
    assert 'bbox_head.solo_kernel.bias' in message and 'bbox_head.extra.weight' in message
    assert run_family('solo', [str(path), str(tmp_path / 'x.pdparams'), '--config', '7']) == 2
    assert not (tmp_path / 'x.pdparams').exists()
