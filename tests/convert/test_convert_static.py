"""convert/ppdet_static2paddle.py against an independent static-format file.

No PaddleDetection 0.5 checkpoint or static-graph runtime exists here, so the static
file is made from a REAL PaddleDetection 2.x model (tools/dev/reference/ppdet_ref.py):
``to_static`` below renames its dygraph keys with the 0.5 static naming rules
(SOLOV2_FACTS.md 3b), going from ppdet names to static names, while the converter goes
from OUR names to static names. Converting that file must give bit-identical tensors to
converting the same model's dygraph .pdparams with convert/ppdet2paddle.py.

The 0.5 deformable head convs have no bias while ppdet 2.x's DeformableConvV2 has one
(``conv_dcn.bias``): it has no static name, so it is dropped from both sources (this
test checks names, it does not run the networks).
"""
import json
import pickle
import re

import pytest

pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')

import numpy as np

from solov2.convert import families, ppdet_names
from solov2.convert.common import ConversionError, convert
from solov2.model.checkpoint import load_paddle_params
from solov2.tools.convert import run_family
from solov2.tools.dev.reference import ppdet_ref

pytestmark = pytest.mark.reference

FAMILIES = {'r50_fpn': 0, 'light_r50_vd_dcn_v05': 2}
BN = {'weight': 'scale', 'bias': 'offset', '_mean': 'mean', '_variance': 'variance'}
GN = {'weight': 'gn_scale', 'bias': 'gn_offset'}
OFFSET = {'weight': 'w_0', 'bias': 'b_0'}
# training bookkeeping a fluid.save file may hold; the converter must skip it
JUNK = {'res2a_branch2a_weights_velocity_0': (64, 64, 1, 1), 'learning_rate_0': (1,),
        '@LR_DECAY_COUNTER@': (1,), 'fpn_res5_sum_w_moment1_0': (256, 256, 3, 3)}


def to_static(name: str):
    """PaddleDetection 2.x dygraph name -> 0.5 static name; None: no static counterpart
    (2.x duplicate registrations, the 2.x-only head DCN bias)."""
    if name.startswith(('solov2_head.solo_', 'mask_head.conv_pred.')):
        return None                                   # duplicates of bbox_head.* / conv_pred.0
    m = re.fullmatch(r'backbone\.conv1\.(conv1(?:_(\d))?)\.(conv|norm)\.(\w+)', name)
    if m:
        conv, k, part, leaf = m.groups()
        if part == 'conv':
            return f'{conv}_weights'
        return f'{"bn_conv1" if k is None else f"bnv1_{k}"}_{BN[leaf]}'
    m = re.fullmatch(r'backbone\.res\d\.res(\d\w+)\.(branch2[abc]|short)\.(?:conv\.)?'
                     r'(conv|norm|conv_offset)\.(\w+)', name)
    if m:
        block, branch, part, leaf = m.groups()
        branch = 'branch1' if branch == 'short' else branch
        if part == 'conv':
            return f'res{block}_{branch}_weights'
        if part == 'conv_offset':
            return f'res{block}_{branch}_conv_offset.{OFFSET[leaf]}'
        return f'bn{block}_{branch}_{BN[leaf]}'
    m = re.fullmatch(r'neck\.(fpn_\w+)\.(weight|bias)', name)
    if m:
        return f'{m.group(1)}_{m.group(2)[0]}'
    m = re.fullmatch(r'solov2_head\.(bbox_head\.(?:kernel|cate)_convs\.\d+)\.'
                     r'(conv|conv\.conv_dcn|conv\.conv_offset|norm)\.(weight|bias)', name)
    if m:
        unit, part, leaf = m.groups()
        if part == 'conv.conv_dcn' and leaf == 'bias':
            return None
        if part == 'norm':
            return f'{unit}.{GN[leaf]}'
        if part == 'conv.conv_offset':
            return f'{unit}_conv_offset.{OFFSET[leaf]}'
        return f'{unit}_weights'
    m = re.fullmatch(r'solov2_head\.(bbox_head\.solo_(?:kernel|cate)\.(?:weight|bias))', name)
    if m:
        return m.group(1)
    m = re.fullmatch(r'mask_head\.(?:conv_pre_feat\d\.)?(mask_feat_head\.'
                     r'(?:convs_all_levels\.\d\.conv\d|conv_pred\.0))\.(conv|norm)\.(weight|bias)',
                     name)
    if m:
        unit, part, leaf = m.groups()
        return f'{unit}_weights' if part == 'conv' else f'{unit}.{GN[leaf]}'
    raise KeyError(f'test has no static rule for {name}')


def _dcn_bias(name: str) -> bool:
    return re.fullmatch(r'.*_convs\.\d+\.conv\.conv_dcn\.bias', name) is not None


def _save_static(arrays: dict, path, protocol: int = 4) -> None:
    """Like fluid.save: a plain pickle of {name: numpy array} (fluid.save wrote
    protocol 2, paddle.save writes 4; same reader, 4 is much faster for big arrays)."""
    with open(path, 'wb') as f:
        pickle.dump(arrays, f, protocol=protocol)


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype == np.float32, key
        assert np.array_equal(a[key], b[key]), key


_BUILT = {}


def _family(name: str, tmp_path_factory):
    """(name, config number, static dict, static path, dygraph conversion, folder),
    built once per module."""
    if name in _BUILT:
        return _BUILT[name]
    number = FAMILIES[name]
    folder = tmp_path_factory.mktemp(name)
    model = ppdet_ref.build(name, seed=2, calibrated=False)
    dygraph = str(folder / 'ppdet.pdparams')
    ppdet_ref.save(model, dygraph)
    raw = load_paddle_params(dygraph)
    assert (name == 'light_r50_vd_dcn_v05') == any(map(_dcn_bias, raw))
    source = {k: v for k, v in raw.items() if not _dcn_bias(k)}
    static = {}
    for key, value in source.items():
        target = to_static(key)
        if target is not None:
            assert target not in static, f'{key} -> {target} twice'
            static[target] = value
    _, _, expected, _ = convert(families.CONVERTERS['ppdet'], source, number)
    junk = {k: np.full(s, 0.5, np.float32) for k, s in JUNK.items()}
    static_path = str(folder / 'static.pdparams')
    _save_static({**static, **junk}, static_path)
    _BUILT[name] = name, number, static, static_path, expected, folder
    return _BUILT[name]


@pytest.fixture(scope='module', autouse=True)
def _release_built():
    yield
    _BUILT.clear()


@pytest.fixture(scope='module', params=list(FAMILIES))
def family(request, tmp_path_factory):
    return _family(request.param, tmp_path_factory)


@pytest.fixture(scope='module')
def light(tmp_path_factory):
    """The light DCN family only: the failure checks run on it (keeps the suite fast)."""
    return _family('light_r50_vd_dcn_v05', tmp_path_factory)


def test_static_names_look_like_release_0_5(family):
    _, number, static, *_ = family
    assert 'fpn_inner_res5_sum_w' in static and 'fpn_inner_res2_sum_lateral_b' in static
    assert 'bbox_head.kernel_convs.0.gn_scale' in static
    assert 'mask_feat_head.conv_pred.0_weights' in static
    if number == 2:
        assert {'conv1_1_weights', 'bnv1_3_variance', 'res5c_branch2b_conv_offset.w_0',
                'bbox_head.cate_convs.2_conv_offset.b_0', 'res4a_branch1_weights'} <= set(static)
    else:
        assert {'conv1_weights', 'bn_conv1_mean', 'bn2a_branch1_scale'} <= set(static)


def test_cli_matches_the_dygraph_conversion_bit_for_bit(family, capsys):
    """The CLI detects the config, skips the junk, and every tensor is bit-identical
    to the ppdet2paddle conversion of the same PaddleDetection model."""
    _, number, _, static_path, expected, folder = family
    out = str(folder / 'ours.pdparams')
    assert run_family('ppdet-static', [static_path, out]) == 0
    assert f'config {number} ' in capsys.readouterr().out
    meta = json.load(open(str(folder / 'ours.json')))
    assert meta['config'] == number and meta['num_classes'] == 80
    assert 'part' not in meta and 'initialised' not in meta
    _assert_same(load_paddle_params(out), expected)


def test_swapped_tensors_change_exactly_those_keys(light):
    _, number, static, _, expected, _ = light
    swaps = [('fpn_inner_res4_sum_lateral_b', 'fpn_inner_res3_sum_lateral_b'),
             ('bbox_head.kernel_convs.2_conv_offset.b_0', 'bbox_head.cate_convs.2_conv_offset.b_0')]
    wrong = dict(static)
    for a, b in swaps:
        assert wrong[a].shape == wrong[b].shape and not np.array_equal(wrong[a], wrong[b])
        wrong[a], wrong[b] = wrong[b], wrong[a]
    _, _, state, _ = convert(families.CONVERTERS['ppdet-static'], wrong, number)
    differ = {k for k in expected if not np.array_equal(state[k], expected[k])}
    assert differ == {'neck.lateral.2.bias', 'neck.lateral.1.bias',
                      'head.kernel_tower.2.conv.offset.bias', 'head.cate_tower.2.conv.offset.bias'}


def test_missing_key_is_named(light):
    _, number, static, *_ = light
    source = {k: v for k, v in static.items() if k != 'res4f_branch2b_conv_offset.w_0'}
    with pytest.raises(ConversionError, match=r'res4f_branch2b_conv_offset\.w_0'):
        convert(families.CONVERTERS['ppdet-static'], source, number)


def test_unknown_extra_key_fails(light):
    _, number, static, *_ = light
    source = {**static, 'bbox_head.kernel_convs.3_weights': static['bbox_head.kernel_convs.2_weights']}
    with pytest.raises(ConversionError, match=r'unused source keys:\n  bbox_head\.kernel_convs\.3_weights'):
        convert(families.CONVERTERS['ppdet-static'], source, number)


def test_cli_refuses_a_bad_file(tmp_path, capsys):
    bad = str(tmp_path / 'bad.pdparams')
    _save_static({'something_else': np.zeros(3, np.float32)}, bad, protocol=2)
    assert run_family('ppdet-static', [bad, str(tmp_path / 'o.pdparams')]) == 2
    assert 'not a PaddleDetection 0.5 SOLOv2 checkpoint' in capsys.readouterr().err
    assert not (tmp_path / 'o.pdparams').exists()


@pytest.mark.parametrize('name, skipped', [
    ('res2a_branch2a_weights_velocity_0', True), ('conv1_1_weights_moment2_0', True),
    ('bn2a_branch2a_scale_beta1_pow_acc_0', True), ('learning_rate_0', True),
    ('@LR_DECAY_COUNTER@', True), ('fpn_res5_sum_w_ema_0', True),
    ('scheduled_ema_decay_rate', True), ('@EMA_STEP_COUNTER@', True),
    ('bn2a_branch2a_mean', False), ('bn2a_branch2a_variance', False),
    ('res3a_branch2b_conv_offset.w_0', False), ('bbox_head.solo_cate.bias', False),
    ('fpn_inner_res5_sum_w', False), ('mask_feat_head.conv_pred.0.gn_offset', False)])
def test_bookkeeping_patterns(name, skipped):
    assert ppdet_names.is_bookkeeping(name) is skipped
