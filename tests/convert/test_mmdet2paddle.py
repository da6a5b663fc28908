"""mmdetection 2.x / 3.x SOLOv2 checkpoints: random tensors drawn in the original SOLO
layout are written under mmdetection's names (tests/fixtures/mmdet_checkpoints.py),
converted with convert/mmdet2paddle.py and compared with the PyTorch mirror of SOLO
(tests/reference/solo_torch.py, DCNv2 and ResNeXt written from their definitions) on the same input:
head outputs and final instances. The same tensors in the SOLO layout convert to the
same arrays through convert/solo2paddle.py's table.

mmdetection itself is not the reference: it installs (mmdet 3.3, mmengine, mmcv-lite)
but cannot build a model without mmcv's compiled ops, which mmcv-lite lacks."""
import sys
import types

import pytest

pytest.importorskip('torch', reason='reference test: needs PyTorch (requirements-test.txt)')

import numpy as np
import paddle
import torch

from solov2.config import CONFIGS, with_overrides
from solov2.config.sidecar import read_sidecar
from solov2.convert import families
from solov2.convert.common import convert
from solov2.convert.pth_reader import load_state_dict
from solov2.model.build import build_model
from solov2.model.checkpoint import load_paddle_params
from solov2.model.inference.postprocess import InferenceParams
from solov2.tools.convert import run_family
from tests.fixtures.mmdet_checkpoints import ARCHS, build_mirror, mmdet_key, random_solo_layout, write_mmdet_checkpoint
from tests.fixtures.solo_checkpoints import keys_file, read_key_list
from tests.helpers import postprocess

pytestmark = pytest.mark.reference

# (mmdetection config, mmdetection major version of the file written, category bias: tens of
# instances whose scores are 1e-5 or more apart, so that 1e-6 differences cannot reorder them)
CASES = [('solov2-light_r18_fpn_ms-3x_coco', 2, -5.0), ('solov2-light_r50-dcn_fpn_ms-3x_coco', 3, -4.5),
         ('solov2_x101-dcn_fpn_ms-3x_coco', 3, -4.5)]   # R101-DCN: X101's names on a plain R101
IMAGE_HW = (128, 160)
GRIDS = (20, 18, 12, 8, 6)   # half the published grids: a quarter of the head's cost, same weights
TOL = 1e-4


def _with_grids(cfg):
    return with_overrides(cfg, [f'num_grids={GRIDS}'])


def _run_ours(cfg, state, image):
    model = build_model(cfg)
    model.set_state_dict(state)
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(image))


def _run_mirror(mirror, image):
    with torch.no_grad():
        out = mirror(torch.from_numpy(image))
    return {'cate_logits': [paddle.to_tensor(c.numpy()) for c in out['cate']],
            'kernels': [paddle.to_tensor(k.numpy()) for k in out['kernel']],
            'mask_feat': paddle.to_tensor(out['mask_feat'].numpy())}


def _max_diff(a, b) -> float:
    if isinstance(a, list):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    return float(np.abs(a.numpy() - b.numpy()).max())


@pytest.fixture(scope='module')
def make_case(tmp_path_factory):
    """(arch, version, cate_bias) -> (arch, mmdet .pth, SOLO-layout arrays, image, mirror outputs), made once."""
    made = {}

    def make(arch, version, cate_bias):
        if arch not in made:
            made[arch] = _make_case(arch, version, cate_bias, tmp_path_factory.mktemp(arch))
        return made[arch]
    return make


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request, make_case):
    return make_case(*request.param)


def _make_case(arch, version, cate_bias, folder):
    solo_state = random_solo_layout(arch, seed=5, cate_bias=cate_bias)
    path = write_mmdet_checkpoint(solo_state, folder / f'{arch}.pth', version)
    solo_layout = {k: v.numpy() for k, v in solo_state.items()}
    mirror = build_mirror(arch, num_grids=GRIDS)
    mirror.load_state_dict(solo_state, strict=True)
    image = np.random.RandomState(1).standard_normal((1, 3, *IMAGE_HW)).astype(np.float32)
    return arch, path, solo_layout, image, _run_mirror(mirror, image)


def test_converts_detects_config_and_matches_the_mirror(case, tmp_path):
    arch, path, _, image, expected = case
    out = tmp_path / 'ours.pdparams'
    assert run_family('mmdet', [str(path), str(out)]) == 0
    number = read_sidecar(str(out))['config']
    assert number == ARCHS[arch][1]
    cfg = _with_grids(CONFIGS[number])
    ours = _run_ours(cfg, load_paddle_params(str(out)), image)
    diffs = {k: _max_diff(ours[k], expected[k]) for k in expected}
    print(f'\n{arch} max abs diff vs the mirror: ' + ', '.join(f'{k} {v:.2e}' for k, v in diffs.items()))
    assert all(v <= TOL for v in diffs.values()), diffs
    params = InferenceParams.from_config(cfg)
    mine, theirs = postprocess(ours, params)[0], postprocess(expected, params)[0]
    assert len(theirs) >= 3, 'the mirror produced too few instances to compare'
    assert len(mine) == len(theirs)
    np.testing.assert_array_equal(mine.labels, theirs.labels)
    score_diff = np.abs(mine.scores - theirs.scores).max()
    assert score_diff <= TOL
    ious = [np.logical_and(a > 0.5, b > 0.5).sum() / max(np.logical_or(a > 0.5, b > 0.5).sum(), 1)
            for a, b in zip(mine.masks, theirs.masks)]
    print(f'{arch}: {len(mine)} instances, max score diff {score_diff:.1e}, min mask IoU {min(ious):.5f}')
    assert min(ious) >= 0.999


def test_same_arrays_as_the_solo_layout(case):
    arch, path, solo, *_ = case
    number = ARCHS[arch][1]
    mmdet = load_state_dict(str(path))
    _, _, from_mmdet, _ = convert(families.CONVERTERS['mmdet'], mmdet, number)
    _, _, from_solo, _ = convert(families.CONVERTERS['solo'], solo, number)
    assert from_mmdet.keys() == from_solo.keys()
    assert all(np.array_equal(from_mmdet[k], from_solo[k]) for k in from_mmdet)


def test_a_wrong_mapping_is_caught(make_case):
    """Two same-shaped mask-feature convs swapped (as a wrong level order would) change
    the mask features beyond tolerance."""
    arch, path, _, image, expected = make_case(*CASES[0])
    source = load_state_dict(str(path))
    a = 'mask_head.mask_feature_head.convs_all_levels.2.conv1.conv.weight'
    b = 'mask_head.mask_feature_head.convs_all_levels.3.conv1.conv.weight'
    source[a], source[b] = source[b], source[a]
    number = ARCHS[arch][1]
    _, cfg, state, _ = convert(families.CONVERTERS['mmdet'], source, number)
    ours = _run_ours(_with_grids(cfg), state, image)
    assert _max_diff(ours['mask_feat'], expected['mask_feat']) > 10 * TOL


@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_every_mmdet_config_is_detected(arch):
    with torch.device('meta'):
        names = {k: tuple(v.shape) for k, v in build_mirror(arch).state_dict().items()}
    source = {mmdet_key(k): np.zeros(s, np.float32) for k, s in names.items()}
    number, *_ = convert(families.CONVERTERS['mmdet'], source)
    assert number == ARCHS[arch][1]


@pytest.mark.parametrize('name', ['solov2_light_448_r18_fpn_8gpu_3x', 'solov2_r50_fpn_8gpu_3x'])
def test_the_mirror_has_the_released_solo_keys(name):
    """The key lists above come from the mirror; for two configs it is checked against
    the state_dict of the released SOLO checkpoints."""
    arch = {'solov2_light_448_r18_fpn_8gpu_3x': 'solov2-light_r18_fpn_ms-3x_coco',
            'solov2_r50_fpn_8gpu_3x': 'solov2_r50_fpn_1x_coco'}[name]
    with torch.device('meta'):
        mirror = [(k, tuple(v.shape)) for k, v in build_mirror(arch).state_dict().items()]
    assert sorted(mirror) == sorted((k, s) for k, s, _ in read_key_list(keys_file(name)))


def test_a_training_checkpoint_with_mmengine_objects_is_refused(tmp_path, capsys, monkeypatch):
    """mmdetection 3.x training checkpoints hold mmengine objects (message_hub); they are
    never unpickled, and the error says how to keep only the weights."""
    module = types.ModuleType('mmengine.logging.history_buffer')

    class HistoryBuffer:
        pass
    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = module.__name__, 'HistoryBuffer'
    module.HistoryBuffer = HistoryBuffer
    for name in ('mmengine', 'mmengine.logging'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    src = tmp_path / 'epoch_36.pth'
    torch.save({'meta': {}, 'state_dict': {'mask_head.conv_cls.bias': torch.zeros(80)},
                'message_hub': {'log_scalars': {'loss': HistoryBuffer()}}}, str(src))
    out = tmp_path / 'out.pdparams'
    assert run_family('mmdet', [str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'publish_model.py' in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_mmengine_hint_is_for_mmengine_objects_only(tmp_path, capsys):
    """A file refused for another reason gets no publish_model hint, even from a folder
    whose name says mmengine (the hint follows the refused global, not the message text)."""
    src = tmp_path / 'mmengine_runs' / 'evil.pth'
    src.parent.mkdir()
    torch.save({'state_dict': {}, 'x': print}, str(src))
    assert run_family('mmdet', [str(src), str(tmp_path / 'out.pdparams')]) == 2
    err = capsys.readouterr().err
    assert 'refused to load: it asks for' in err and 'print' in err and 'publish_model.py' not in err


def test_a_solo_checkpoint_is_refused(tmp_path, capsys):
    src = tmp_path / 'solo.pth'
    torch.save({'meta': {}, 'state_dict': random_solo_layout('solov2-light_r18_fpn_ms-3x_coco')}, str(src))
    assert run_family('mmdet', [str(src), str(tmp_path / 'x.pdparams')]) == 2
    assert 'error: ' in capsys.readouterr().err
    assert not (tmp_path / 'x.pdparams').exists()
