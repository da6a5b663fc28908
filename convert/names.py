"""The one shape every source family's names follow: a ``Family`` table says where a source
keeps the backbone, the FPN neck, the SOLOv2 head and the mask-feature head, and
``source_name`` maps this project's parameter names through it. The tables themselves live
with their families (``convert.ppdet_names``, ``convert.mmdet_names``).

``UNITS``: our ConvNormAct units outside the backbone, as (pattern, key of ``Family.modules`` to fill).
``SOLO_MODULES``: the modules of the original SOLO, as PaddleDetection 0.5 kept them (2.x nests them:
``convert.ppdet_names``)."""
import re
from dataclasses import dataclass
from typing import Callable, Dict

NECK = re.compile(r'neck\.(lateral|output)\.(\d)\.(weight|bias)')
PRED = re.compile(r'head\.(kernel|cate)_pred\.(weight|bias)')
UNITS = ((re.compile(r'head\.(?P<kind>kernel|cate)_tower\.(?P<index>\d+)\.(?P<rest>.+)'), '{kind}_tower'),
         (re.compile(r'mask_head\.levels\.(?P<level>\d)\.(?P<conv>\d)\.(?P<rest>.+)'), 'level'),
         (re.compile(r'mask_head\.pred\.(?P<rest>.+)'), 'pred'))
SOLO_MODULES = {'kernel_tower': 'bbox_head.kernel_convs.{index}', 'cate_tower': 'bbox_head.cate_convs.{index}',
                'kernel_pred': 'bbox_head.solo_kernel', 'cate_pred': 'bbox_head.solo_cate',
                'level': 'mask_feat_head.convs_all_levels.{level}.conv{conv}', 'pred': 'mask_feat_head.conv_pred.0'}


@dataclass(frozen=True)
class Family:
    """Where one source family (``label``, for errors) keeps each part of the model:
    ``backbone(key, cfg)`` names a ``backbone.*`` key, ``neck(kind, index, leaf)`` a
    ``neck.{lateral|output}.{index}.{leaf}``; ``modules`` the templates of the source modules of
    our ``UNITS`` and ``{kernel|cate}_pred``, inside which ``unit(rest, module, deformable)`` names
    one ConvNormAct leaf (``conv.weight``, ``conv.offset.bias``, ``norm._mean``)."""
    label: str
    backbone: Callable[[str, object], str]
    neck: Callable[[str, int, str], str]
    modules: Dict[str, str]
    unit: Callable[[str, str, bool], str]


def source_name(key: str, keys: frozenset, cfg, family: Family) -> str:
    """This project's parameter ``key`` (among the model's ``keys``) -> its name in ``family``;
    KeyError when no rule covers it."""
    if key.startswith('backbone.'):
        return family.backbone(key, cfg)
    if m := NECK.fullmatch(key):
        return family.neck(m.group(1), int(m.group(2)), m.group(3))
    if m := PRED.fullmatch(key):
        return f'{family.modules[m.group(1) + "_pred"]}.{m.group(2)}'
    for pattern, part in UNITS:
        if m := pattern.fullmatch(key):
            fields = m.groupdict()
            rest = fields.pop('rest')
            module = family.modules[part.format(**fields)].format(**fields)
            deformable = f'{key[:-len(rest)]}conv.offset.weight' in keys     # our ConvNormAct holds a DCN
            return family.unit(rest, module, deformable)
    raise KeyError(f'no {family.label} name rule for {key}')
