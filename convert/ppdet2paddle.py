"""PaddleDetection 2.x dygraph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/3x_coco (config 0), solov2_r50_enhance_coco (config 3) and
solov2_r101_vd_fpn_3x_coco (config 4). Usage:
    python convert/ppdet2paddle.py solov2_r50_enhance_coco.pdparams weights/enhance.pdparams
"""
import re

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from convert.common import converter_main, is_deformable
from model.checkpoint import load_paddle_params

BRANCHES = {'conv1': 'branch2a', 'conv2': 'branch2b', 'conv3': 'branch2c'}


def res_block_name(stage: int, block: int, depth: int) -> str:
    """PaddleDetection/PaddleClas block name: stage 0..3 -> res2..res5, blocks a, b, c...;
    ResNet-101's res4 counts a, b1, b2, ..., b22."""
    res = stage + 2
    if depth == 101 and res == 4:
        return f'res{res}a' if block == 0 else f'res{res}b{block}'
    return f'res{res}{chr(ord("a") + block)}'


def _conv_leaf(rest: str, deformable: bool) -> str:
    """ConvNormAct leaf (``conv.weight``, ``conv.offset.bias``, ``norm._mean``) ->
    PaddleDetection head/mask-head leaf (DeformableConvV2: conv_dcn / conv_offset)."""
    if deformable and rest.startswith('conv.offset.'):
        return 'conv.conv_offset.' + rest[len('conv.offset.'):]
    if deformable and rest.startswith('conv.'):
        return 'conv.conv_dcn.' + rest[len('conv.'):]
    return rest


def backbone_name(key: str, keys: frozenset, cfg) -> str:
    """backbone.* -> PaddleDetection ResNet names (``backbone.res3.res3a.branch2b...``)."""
    m = re.fullmatch(r'backbone\.stem\.(\d)\.(.+)', key)
    if m:
        stem = 'conv1' if cfg.variant == 'b' else f'conv1_{int(m.group(1)) + 1}'
        return f'backbone.conv1.{stem}.{m.group(2)}'
    m = re.fullmatch(r'backbone\.layer(\d)\.(\d+)\.(conv\d|shortcut)\.(.+)', key)
    stage, block, part, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3), m.group(4)
    name = res_block_name(stage, block, cfg.depth)
    rest = rest.replace('conv.offset.', 'conv_offset.')   # backbone DCN: offset conv beside conv
    if part == 'shortcut':
        pooled = cfg.variant == 'd' and stage > 0
        return f'backbone.res{stage + 2}.{name}.short.{"conv." if pooled else ""}{rest}'
    return f'backbone.res{stage + 2}.{name}.{BRANCHES[part]}.{rest}'


def ppdet_name(key: str, keys: frozenset, cfg) -> str:
    """This project's parameter name -> PaddleDetection 2.x dygraph name."""
    if key.startswith('backbone.'):
        return backbone_name(key, keys, cfg)
    m = re.fullmatch(r'neck\.(lateral|output)\.(\d)\.(weight|bias)', key)
    if m:
        level = int(m.group(2)) + 2
        if m.group(1) == 'output':
            return f'neck.fpn_res{level}_sum.{m.group(3)}'
        suffix = '' if level == 5 else '_lateral'   # the C5 lateral has no suffix
        return f'neck.fpn_inner_res{level}_sum{suffix}.{m.group(3)}'
    m = re.fullmatch(r'head\.(kernel|cate)_tower\.(\d+)\.(.+)', key)
    if m:
        prefix = f'head.{m.group(1)}_tower.{m.group(2)}'
        leaf = _conv_leaf(m.group(3), is_deformable(prefix, keys))
        return f'solov2_head.bbox_head.{m.group(1)}_convs.{m.group(2)}.{leaf}'
    m = re.fullmatch(r'head\.(kernel|cate)_pred\.(weight|bias)', key)
    if m:
        return f'solov2_head.bbox_head.solo_{m.group(1)}.{m.group(2)}'
    m = re.fullmatch(r'mask_head\.levels\.(\d)\.(\d)\.(.+)', key)
    if m:
        level, conv = m.group(1), m.group(2)
        leaf = _conv_leaf(m.group(3), is_deformable(f'mask_head.levels.{level}.{conv}', keys))
        return (f'mask_head.conv_pre_feat{level}.mask_feat_head.convs_all_levels.{level}'
                f'.conv{conv}.{leaf}')
    m = re.fullmatch(r'mask_head\.pred\.(.+)', key)
    if m:
        return 'mask_head.mask_feat_head.conv_pred.0.' + _conv_leaf(
            m.group(1), is_deformable('mask_head.pred', keys))
    raise KeyError(f'no PaddleDetection name rule for {key}')


# PaddleDetection registers three layers twice: (duplicate prefix, primary prefix)
ALIAS_PREFIXES = (('solov2_head.solo_', 'solov2_head.bbox_head.solo_'),
                  ('mask_head.conv_pred.', 'mask_head.mask_feat_head.conv_pred.0.'))


def duplicate_aliases(source: dict) -> dict:
    """{duplicate key: the primary key it repeats} for the keys of ``source``."""
    aliases = {}
    for key in source:
        for dup, primary in ALIAS_PREFIXES:
            if key.startswith(dup):
                aliases[key] = primary + key[len(dup):]
    return aliases


def num_classes(source: dict) -> int:
    """Category count from the category-prediction bias."""
    return source['solov2_head.bbox_head.solo_cate.bias'].shape[0]


def main(argv=None) -> int:
    return converter_main(__doc__.split('\n')[0], load_paddle_params, ppdet_name,
                          default_configs=(0, 3, 4), num_classes_key=num_classes,
                          aliases=duplicate_aliases, argv=argv)


if __name__ == '__main__':
    raise SystemExit(main())
