"""PaddleDetection's parameter names: 2.x dygraph (``ppdet_name``, both ways: convert/ppdet2paddle.py
and convert/paddle2ppdet.py) and 0.5 static / PaddleClas (``static_name``,
``static_backbone_name``: convert/ppdet_static2paddle.py, convert/paddleclas2paddle.py)."""
import functools
import re
from typing import Tuple

from solov2.convert.names import SOLO_MODULES, Family, source_name

BRANCHES = {'conv1': 'branch2a', 'conv2': 'branch2b', 'conv3': 'branch2c', 'shortcut': 'branch1'}
BACKBONE_BLOCK = re.compile(r'backbone\.layer(\d)\.(\d+)\.(conv\d|shortcut)\.(.+)')
BACKBONE_STEM = re.compile(r'backbone\.stem\.(\d)\.(.+)')


def backbone_block(key: str, cfg, label: str) -> Tuple[int, str, str, str]:
    """(stage 0..3, block name, ``conv1|2|3|shortcut``, leaf) of our ``backbone.layer*`` ``key``, the
    block named as PaddleDetection/PaddleClas do: stage 0..3 -> res2..res5, blocks a, b, c...;
    ResNet-101's res4 counts a, b1, b2, ..., b22. KeyError naming the family ``label`` for any other key."""
    m = BACKBONE_BLOCK.fullmatch(key)
    if not m:
        raise KeyError(f'no {label} name rule for {key}')
    stage, block, part, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3), m.group(4)
    if cfg.depth == 101 and stage == 2 and block > 0:
        return stage, f'res4b{block}', part, rest
    return stage, f'res{stage + 2}{chr(ord("a") + block)}', part, rest


def stem_conv(index: int, cfg) -> str:
    """Stem conv ``index`` of our ``backbone.stem``: ``conv1`` (7x7, variant b) or
    ``conv1_{1,2,3}`` (three 3x3, variant d)."""
    if cfg.variant not in ('b', 'd'):
        raise ValueError(f"a ResNet stem variant is 'b' or 'd', not {cfg.variant!r}")
    return 'conv1' if cfg.variant == 'b' else f'conv1_{index + 1}'


def fpn_name(kind: str, index: int) -> str:
    """PaddleDetection FPN conv of our neck ``lateral|output`` ``index`` (C2..C5)."""
    level = index + 2
    if kind == 'output':
        return f'fpn_res{level}_sum'
    return f'fpn_inner_res{level}_sum{"" if level == 5 else "_lateral"}'   # the C5 lateral has no suffix


# ---- 2.x dygraph ------------------------------------------------------------------------------

def _conv_leaf(rest: str, deformable: bool) -> str:
    """ConvNormAct leaf (``conv.weight``, ``conv.offset.bias``, ``norm._mean``) ->
    PaddleDetection head/mask-head leaf (DeformableConvV2: conv_dcn / conv_offset)."""
    if deformable and rest.startswith('conv.offset.'):
        return 'conv.conv_offset.' + rest[len('conv.offset.'):]
    if deformable and rest.startswith('conv.'):
        return 'conv.conv_dcn.' + rest[len('conv.'):]
    return rest


def backbone_name(key: str, cfg) -> str:
    """backbone.* -> PaddleDetection ResNet names (``backbone.res3.res3a.branch2b...``)."""
    if m := BACKBONE_STEM.fullmatch(key):
        return f'backbone.conv1.{stem_conv(int(m.group(1)), cfg)}.{m.group(2)}'
    stage, name, part, rest = backbone_block(key, cfg, 'PaddleDetection')
    rest = rest.replace('conv.offset.', 'conv_offset.')   # backbone DCN: offset conv beside conv
    if part == 'shortcut':
        pooled = cfg.variant == 'd' and stage > 0
        return f'backbone.res{stage + 2}.{name}.short.{"conv." if pooled else ""}{rest}'
    return f'backbone.res{stage + 2}.{name}.{BRANCHES[part]}.{rest}'


PPDET = Family(
    label='PaddleDetection', backbone=backbone_name,
    neck=lambda kind, index, leaf: f'neck.{fpn_name(kind, index)}.{leaf}',
    modules={**{part: f'solov2_head.{module}' for part, module in SOLO_MODULES.items()},     # SOLO's, nested
             'level': 'mask_head.conv_pre_feat{level}.' + SOLO_MODULES['level'],
             'pred': 'mask_head.' + SOLO_MODULES['pred']},
    unit=lambda rest, module, deformable: f'{module}.{_conv_leaf(rest, deformable)}')

ppdet_name = functools.partial(source_name, family=PPDET)      # our parameter name -> PaddleDetection 2.x dygraph's
ALIAS_PREFIXES = (('solov2_head.solo_', 'solov2_head.bbox_head.solo_'),
                  ('mask_head.conv_pred.', 'mask_head.mask_feat_head.conv_pred.0.'))


def duplicate_aliases(source: dict) -> dict:
    """{duplicate key: the primary key it repeats} for the primary keys of ``source``: PaddleDetection
    registers three layers twice, ``ALIAS_PREFIXES`` (duplicate prefix, primary prefix)."""
    return {dup + key[len(primary):]: key for key in source
            for dup, primary in ALIAS_PREFIXES if key.startswith(primary)}


def with_duplicates(params: dict) -> dict:
    """``params`` (PaddleDetection names) plus the duplicate keys PaddleDetection's own
    state_dict holds (``ALIAS_PREFIXES``), sharing the primary keys' values."""
    return {**params, **{dup: params[key] for dup, key in duplicate_aliases(params).items()}}


# ---- 0.5 static and PaddleClas ----------------------------------------------------------------

STATIC_LEAVES = {'conv.weight': '{conv}_weights', 'conv.bias': '{conv}_bias',
                 'conv.offset.weight': '{conv}_conv_offset.w_0', 'conv.offset.bias': '{conv}_conv_offset.b_0',
                 'norm.weight': '{norm}_scale', 'norm.bias': '{norm}_offset', 'norm._mean': '{norm}_mean',
                 'norm._variance': '{norm}_variance'}
BOOKKEEPING = re.compile(
    r'.*_(velocity|moment\d*|beta[12]_pow_acc|mean_square|mean_grad|ema)_\d+'
    r'|learning_rate_\d+|.*@LR_DECAY.*|scheduled_ema_decay_rate|@EMA_STEP_COUNTER@')


def is_bookkeeping(name: str) -> bool:
    """Optimizer, learning-rate and EMA state of a static file: no model weights (the list is
    in docs/checkpoints.md)."""
    return BOOKKEEPING.fullmatch(name) is not None


def static_bn_name(conv: str) -> str:
    """Static BN name of the conv ``conv``: ``bn_conv1`` for the 7x7 stem, else ``bn`` +
    conv[3:] (``conv1_1`` -> ``bnv1_1``, ``res3a_branch2b`` -> ``bn3a_branch2b``)."""
    return 'bn_conv1' if conv == 'conv1' else 'bn' + conv[3:]


def static_unit(rest: str, conv: str, norm: str) -> str:
    """One ConvNormAct leaf -> static name: conv weight ``<conv>_weights``, conv bias
    ``<conv>_bias``, DCN offset conv ``<conv>_conv_offset.{w_0,b_0}``, norm
    ``<norm>_{scale,offset,mean,variance}`` (``STATIC_LEAVES``)."""
    if rest not in STATIC_LEAVES:
        raise KeyError(f'no static name rule for the leaf {rest}')
    return STATIC_LEAVES[rest].format(conv=conv, norm=norm)


def static_backbone_name(key: str, cfg) -> str:
    """backbone.* -> PaddleDetection 0.5 / PaddleClas static ResNet name (no prefix):
    stem ``conv1_weights`` / ``bn_conv1_*`` (vb) or ``conv1_{1,2,3}_weights`` /
    ``bnv1_{1,2,3}_*`` (vd); blocks ``res{2..5}{a,b..}_branch2{a,b,c}``, shortcut
    ``res{s}a_branch1``; DCN offset conv ``<conv>_conv_offset.{w_0,b_0}``."""
    if m := BACKBONE_STEM.fullmatch(key):
        conv = stem_conv(int(m.group(1)), cfg)
        return static_unit(m.group(2), conv, static_bn_name(conv))
    _, name, part, rest = backbone_block(key, cfg, 'static')
    conv = f'{name}_{BRANCHES[part]}'
    return static_unit(rest, conv, static_bn_name(conv))


STATIC = Family(
    label='static', backbone=static_backbone_name,
    neck=lambda kind, index, leaf: f'{fpn_name(kind, index)}_{leaf[0]}',     # _w / _b
    modules=SOLO_MODULES,
    unit=lambda rest, module, deformable: static_unit(rest, module, f'{module}.gn'))

static_name = functools.partial(source_name, family=STATIC)      # our parameter name -> PaddleDetection 0.5 static's
