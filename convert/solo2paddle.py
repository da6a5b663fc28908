"""Original SOLO (WXinlong/SOLO, mmdetection 1.x) ``.pth`` -> this project's checkpoint.

Reads legacy and zip ``.pth`` files without PyTorch. Covers SOLOv2 R50/R101 FPN
(configs 0, 8), Light-448 R18/R34/R50 (5, 6, 1) and Light-512 DCNv1 R50 (7). Usage:
    python convert/solo2paddle.py SOLOv2_LIGHT_448_R18_3x.pth weights/light448_r18.pdparams
"""
import re

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from convert.common import converter_main
from convert.pth_reader import load_state_dict

BN_LEAF = {'weight': 'weight', 'bias': 'bias', '_mean': 'running_mean',
           '_variance': 'running_var'}


def unit_name(rest: str, conv: str, norm: str) -> str:
    """One ConvNormAct leaf -> mmdet names: conv weight at ``conv``, DCN offset conv at
    ``conv``.conv_offset, BN/GN at ``norm`` (BN stats renamed to running_*)."""
    if rest.startswith('conv.offset.'):
        return f'{conv}.conv_offset.{rest[len("conv.offset."):]}'
    if rest.startswith('conv.'):
        return f'{conv}.{rest[len("conv."):]}'
    leaf = rest[len('norm.'):]
    return f'{norm}.{BN_LEAF[leaf]}'


def backbone_name(key: str, prefix: str = 'backbone.') -> str:
    """backbone.* -> torchvision/mmdet ResNet names, under ``prefix``."""
    m = re.fullmatch(r'backbone\.stem\.0\.(.+)', key)
    if m:
        return prefix + unit_name(m.group(1), 'conv1', 'bn1')
    m = re.fullmatch(r'backbone\.(layer\d\.\d+)\.(conv(\d)|shortcut)\.(.+)', key)
    if not m:
        raise KeyError(f'no torchvision/mmdet name rule for {key} (only the 7x7-stem variant b)')
    block, part, index, rest = m.group(1), m.group(2), m.group(3), m.group(4)
    if part == 'shortcut':
        return f'{prefix}{block}.' + unit_name(rest, 'downsample.0', 'downsample.1')
    return f'{prefix}{block}.' + unit_name(rest, f'conv{index}', f'bn{index}')


# Where a checkpoint of the mmdetection family keeps each part of the head: our module ->
# its module (ConvModules: conv at ``.conv``, GroupNorm at ``.gn``).
SOLO_HEAD = {'kernel_tower': 'bbox_head.kernel_convs', 'cate_tower': 'bbox_head.cate_convs',
             'kernel_pred': 'bbox_head.solo_kernel', 'cate_pred': 'bbox_head.solo_cate',
             'levels': 'mask_feat_head.convs_all_levels', 'pred': 'mask_feat_head.conv_pred.0'}


def mmdet_family_name(key: str, head: dict, family: str) -> str:
    """This project's parameter name -> its name in a checkpoint of the mmdetection family
    (ResNet backbone, FPN neck ``lateral_convs`` / ``fpn_convs``), the head placed by
    ``head`` (see SOLO_HEAD); ``family`` names the source in errors."""
    if key.startswith('backbone.'):
        return backbone_name(key)
    m = re.fullmatch(r'neck\.(lateral|output)\.(\d)\.(weight|bias)', key)
    if m:
        kind = 'lateral_convs' if m.group(1) == 'lateral' else 'fpn_convs'
        return f'neck.{kind}.{m.group(2)}.conv.{m.group(3)}'
    m = re.fullmatch(r'head\.((?:kernel|cate)_tower)\.(\d+)\.(.+)', key)
    if m:
        unit = f'{head[m.group(1)]}.{m.group(2)}'
        return unit_name(m.group(3), f'{unit}.conv', f'{unit}.gn')
    m = re.fullmatch(r'head\.((?:kernel|cate)_pred)\.(weight|bias)', key)
    if m:
        return f'{head[m.group(1)]}.{m.group(2)}'
    m = re.fullmatch(r'mask_head\.levels\.(\d)\.(\d)\.(.+)', key)
    if m:
        unit = f'{head["levels"]}.{m.group(1)}.conv{m.group(2)}'
        return unit_name(m.group(3), f'{unit}.conv', f'{unit}.gn')
    m = re.fullmatch(r'mask_head\.pred\.(.+)', key)
    if m:
        return unit_name(m.group(1), f'{head["pred"]}.conv', f'{head["pred"]}.gn')
    raise KeyError(f'no {family} name rule for {key}')


def solo_name(key: str, keys: frozenset, cfg) -> str:
    """This project's parameter name -> original SOLO name."""
    return mmdet_family_name(key, SOLO_HEAD, 'SOLO')


def is_counter(name: str) -> bool:
    """BN ``num_batches_tracked`` counters carry no weights."""
    return name.endswith('num_batches_tracked')


def num_classes(source: dict) -> int:
    """Category count from the category-prediction bias."""
    return source['bbox_head.solo_cate.bias'].shape[0]


def main(argv=None) -> int:
    return converter_main(__doc__.split('\n')[0], load_state_dict, solo_name,
                          default_configs=(0, 1, 5, 6, 7, 8), num_classes_key=num_classes,
                          ignored=is_counter, argv=argv)


if __name__ == '__main__':
    raise SystemExit(main())
