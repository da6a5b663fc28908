"""PaddleDetection 0.5 static-graph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x / solov2_r50_fpn_3x (config 0) and
solov2_light_r50_vd_fpn_dcn_512_3x (config 2: ResNet50-vd with DCNv2 in C3-C5, DCNv2
without bias at tower index 2 of both head towers, mask-feature head without DCN).
Not covered: the 0.5 solov2_r101_vd_fpn_3x (its deformable head / mask-feature convs
have no bias, unlike our config 4, which follows PaddleDetection 2.x). Usage:
    python convert/ppdet_static2paddle.py solov2_light_r50_vd_fpn_dcn_512_3x.pdparams \\
        weights/light512_vd_dcn.pdparams

The file is a pickle of {static variable name: numpy array} (``fluid.save``). Besides
the weights such files can hold training bookkeeping, which carries no model weights
and is skipped by name (``is_bookkeeping``); any OTHER unused entry fails the conversion:

* optimizer accumulators ``<param>_velocity_<n>`` (Momentum, the SOLOv2 optimizer),
  ``<param>_moment<k>_<n>`` / ``_moment_<n>``, ``<param>_beta{1,2}_pow_acc_<n>`` (Adam),
  ``<param>_mean_square_<n>`` / ``_mean_grad_<n>`` (RMSProp);
* learning-rate state: ``learning_rate_<n>`` and any name containing ``@LR_DECAY``
  (e.g. ``@LR_DECAY_COUNTER@``);
* EMA state: ``<param>_ema_<n>``, ``scheduled_ema_decay_rate``, ``@EMA_STEP_COUNTER@``.
  PaddleDetection 0.5 saves with the EMA values swapped into the parameters
  (``ema.apply_program`` before ``checkpoint.save``), so the plain names already hold
  the averaged weights and the ``_ema_`` copies are redundant.
"""
import re

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from convert.common import ConversionError, converter_main
from convert.ppdet2paddle import res_block_name
from model.checkpoint import load_paddle_params

BRANCHES = {'conv1': 'branch2a', 'conv2': 'branch2b', 'conv3': 'branch2c',
            'shortcut': 'branch1'}
BN_SUFFIX = {'weight': 'scale', 'bias': 'offset', '_mean': 'mean', '_variance': 'variance'}

BOOKKEEPING = re.compile(
    r'.*_(velocity|moment\d*|beta[12]_pow_acc|mean_square|mean_grad|ema)_\d+'
    r'|learning_rate_\d+|.*@LR_DECAY.*|scheduled_ema_decay_rate|@EMA_STEP_COUNTER@')


def is_bookkeeping(name: str) -> bool:
    """Optimizer, learning-rate and EMA state: no model weights (see the module doc)."""
    return BOOKKEEPING.fullmatch(name) is not None


def static_bn_name(conv: str) -> str:
    """Static BN name of the conv ``conv``: ``bn_conv1`` for the 7x7 stem, else ``bn`` +
    conv[3:] (``conv1_1`` -> ``bnv1_1``, ``res3a_branch2b`` -> ``bn3a_branch2b``)."""
    return 'bn_conv1' if conv == 'conv1' else 'bn' + conv[3:]


def _unit(rest: str, conv: str, norm: str) -> str:
    """One ConvNormAct leaf -> static name: conv weight ``<conv>_weights``, conv bias
    ``<conv>_bias``, DCN offset conv ``<conv>_conv_offset.{w_0,b_0}``, norm
    ``<norm>_{scale,offset,mean,variance}``."""
    if rest == 'conv.weight':
        return f'{conv}_weights'
    if rest == 'conv.bias':
        return f'{conv}_bias'
    m = re.fullmatch(r'conv\.offset\.(weight|bias)', rest)
    if m:
        return f'{conv}_conv_offset.{"w_0" if m.group(1) == "weight" else "b_0"}'
    m = re.fullmatch(r'norm\.(weight|bias|_mean|_variance)', rest)
    if m:
        return f'{norm}_{BN_SUFFIX[m.group(1)]}'
    raise KeyError(f'no static name rule for the leaf {rest}')


def static_backbone_name(key: str, cfg) -> str:
    """backbone.* -> PaddleDetection 0.5 / PaddleClas static ResNet name (no prefix):
    stem ``conv1_weights`` / ``bn_conv1_*`` (vb) or ``conv1_{1,2,3}_weights`` /
    ``bnv1_{1,2,3}_*`` (vd); blocks ``res{2..5}{a,b..}_branch2{a,b,c}``, shortcut
    ``res{s}a_branch1``; DCN offset conv ``<conv>_conv_offset.{w_0,b_0}``."""
    m = re.fullmatch(r'backbone\.stem\.(\d)\.(.+)', key)
    if m:
        conv = 'conv1' if cfg.variant == 'b' else f'conv1_{int(m.group(1)) + 1}'
        return _unit(m.group(2), conv, static_bn_name(conv))
    m = re.fullmatch(r'backbone\.layer(\d)\.(\d+)\.(conv\d|shortcut)\.(.+)', key)
    if not m:
        raise KeyError(f'no static name rule for {key}')
    stage, block, part, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3), m.group(4)
    conv = f'{res_block_name(stage, block, cfg.depth)}_{BRANCHES[part]}'
    return _unit(rest, conv, static_bn_name(conv))


def static_name(key: str, keys: frozenset, cfg) -> str:
    """This project's parameter name -> PaddleDetection 0.5 static name."""
    if key.startswith('backbone.'):
        return static_backbone_name(key, cfg)
    m = re.fullmatch(r'neck\.(lateral|output)\.(\d)\.(weight|bias)', key)
    if m:
        level, leaf = int(m.group(2)) + 2, 'w' if m.group(3) == 'weight' else 'b'
        if m.group(1) == 'output':
            return f'fpn_res{level}_sum_{leaf}'
        suffix = '' if level == 5 else '_lateral'   # the C5 lateral has no suffix
        return f'fpn_inner_res{level}_sum{suffix}_{leaf}'
    m = re.fullmatch(r'head\.(kernel|cate)_tower\.(\d+)\.(.+)', key)
    if m:
        unit = f'bbox_head.{m.group(1)}_convs.{m.group(2)}'
        return _unit(m.group(3), unit, f'{unit}.gn')
    m = re.fullmatch(r'head\.(kernel|cate)_pred\.(weight|bias)', key)
    if m:
        return f'bbox_head.solo_{m.group(1)}.{m.group(2)}'
    m = re.fullmatch(r'mask_head\.levels\.(\d)\.(\d)\.(.+)', key)
    if m:
        unit = f'mask_feat_head.convs_all_levels.{m.group(1)}.conv{m.group(2)}'
        return _unit(m.group(3), unit, f'{unit}.gn')
    m = re.fullmatch(r'mask_head\.pred\.(.+)', key)
    if m:
        return _unit(m.group(1), 'mask_feat_head.conv_pred.0', 'mask_feat_head.conv_pred.0.gn')
    raise KeyError(f'no static name rule for {key}')


def num_classes(source: dict) -> int:
    """Category count from the category-prediction bias (0.5 configs say
    ``num_classes: 81``, background included; the conv has 80 outputs)."""
    name = 'bbox_head.solo_cate.bias'
    if name not in source:
        raise ConversionError(f'{name} not found: not a PaddleDetection 0.5 SOLOv2 checkpoint')
    return source[name].shape[0]


def main(argv=None) -> int:
    return converter_main(__doc__.split('\n')[0], load_paddle_params, static_name,
                          default_configs=(0, 2), num_classes_key=num_classes,
                          ignored=is_bookkeeping, argv=argv)


if __name__ == '__main__':
    raise SystemExit(main())
