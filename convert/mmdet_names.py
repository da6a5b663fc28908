"""Parameter names of the PyTorch families: torchvision ResNet (``backbone_name``), the original
SOLO (``solo_name``, mmdetection 1.x) and mmdetection 2.x/3.x (``mmdet_name``); used by
convert/torchvision2paddle.py, convert/solo2paddle.py and convert/mmdet2paddle.py.

mmdetection's SOLOV2Head (``MMDET``) is the detector's ``mask_head`` and holds the mask-feature branch
(MaskFeatModule, whose conv_pred is a bare ConvModule: the original SOLO wraps it in a Sequential, ``.0``);
backbone and neck are named as in the original SOLO. DCN offsets sit at ``<conv>.conv_offset``, as in mmcv's
ModulatedDeformConv2dPack."""
import functools
import re

from solov2.convert.names import SOLO_MODULES, Family, source_name

BN_LEAF = {'weight': 'weight', 'bias': 'bias', '_mean': 'running_mean', '_variance': 'running_var'}


def unit_name(rest: str, conv: str, norm: str) -> str:
    """One ConvNormAct leaf -> mmdet names: conv weight at ``conv``, DCN offset conv at
    ``conv``.conv_offset, BN/GN at ``norm`` (BN stats renamed to running_*)."""
    if rest.startswith('conv.offset.'):
        return f'{conv}.conv_offset.{rest[len("conv.offset."):]}'
    if rest.startswith('conv.'):
        return f'{conv}.{rest[len("conv."):]}'
    return f'{norm}.' + BN_LEAF[rest[len('norm.'):]]


def backbone_name(key: str, prefix: str = 'backbone.') -> str:
    """backbone.* -> torchvision/mmdet ResNet names, under ``prefix``."""
    if m := re.fullmatch(r'backbone\.stem\.0\.(.+)', key):
        return prefix + unit_name(m.group(1), 'conv1', 'bn1')
    m = re.fullmatch(r'backbone\.(layer\d\.\d+)\.(conv(\d)|shortcut)\.(.+)', key)
    if not m:
        raise KeyError(f'no torchvision/mmdet name rule for {key} (only the 7x7-stem variant b)')
    block, part, index, rest = m.groups()
    conv, norm = ('downsample.0', 'downsample.1') if part == 'shortcut' else (f'conv{index}', f'bn{index}')
    return f'{prefix}{block}.' + unit_name(rest, conv, norm)


def mmdet_family(label: str, modules: dict) -> Family:
    """A family of the mmdetection lineage: ResNet backbone, FPN neck ``lateral_convs`` /
    ``fpn_convs``, ConvModules (conv at ``.conv``, GroupNorm at ``.gn``) placed by ``modules``."""
    return Family(
        label=label, backbone=lambda key, cfg: backbone_name(key),
        neck=lambda kind, index, leaf: f'neck.{"lateral" if kind == "lateral" else "fpn"}_convs.{index}.conv.{leaf}',
        modules=modules, unit=lambda rest, module, deformable: unit_name(rest, f'{module}.conv', f'{module}.gn'))


SOLO = mmdet_family('SOLO', SOLO_MODULES)

MMDET = mmdet_family('mmdetection', {
    'kernel_tower': 'mask_head.kernel_convs.{index}', 'cate_tower': 'mask_head.cls_convs.{index}',
    'kernel_pred': 'mask_head.conv_kernel', 'cate_pred': 'mask_head.conv_cls',
    'level': 'mask_head.mask_feature_head.convs_all_levels.{level}.conv{conv}',
    'pred': 'mask_head.mask_feature_head.conv_pred'})

solo_name = functools.partial(source_name, family=SOLO)      # our parameter name -> the original SOLO's
mmdet_name = functools.partial(source_name, family=MMDET)      # our parameter name -> mmdetection 2.x/3.x's


def is_counter(name: str) -> bool:
    """BN ``num_batches_tracked`` counters carry no weights."""
    return name.endswith('num_batches_tracked')
