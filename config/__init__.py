"""Numbered configs for ``--config=N``. The numbers are stable: scripts depend on them.

0-2 keep the numbering of the earlier Paddle 2.0 port (miemie2013/Paddle-SOLOv2).
"""
from typing import Dict, Type

from config.base import COCO_CLASSES, SOLOv2Base
from config.light448_r18 import Light448R18
from config.light448_r34 import Light448R34
from config.light448_r50 import Light448R50
from config.light512_dcn_r50 import Light512DCNR50
from config.light512_r50vd_dcn import Light512R50vdDCN
from config.r101_fpn import R101FPN
from config.r101vd_dcn import R101vdDCN
from config.r50vd_dcn_enhance import R50vdDCNEnhance
from config.shapes_r18 import ShapesR18

CONFIGS: Dict[int, Type[SOLOv2Base]] = {
    0: SOLOv2Base,
    1: Light448R50,
    2: Light512R50vdDCN,
    3: R50vdDCNEnhance,
    4: R101vdDCN,
    5: Light448R18,
    6: Light448R34,
    7: Light512DCNR50,
    8: R101FPN,
    9: ShapesR18,
}


def get_config(number: int) -> Type[SOLOv2Base]:
    """The config class registered as ``number``; a clear error for an unknown one."""
    if number not in CONFIGS:
        raise KeyError(f'unknown config {number}; available: {describe_configs()}')
    return CONFIGS[number]


def describe_configs() -> str:
    """One line per config: number, class name, description."""
    return '\n'.join(f'  {n}: {c.__name__:<18} {c.description}' for n, c in CONFIGS.items())


def format_settings(cfg: Type[SOLOv2Base]) -> str:
    """The resolved config as an aligned two-column table."""
    settings = cfg.settings()
    width = max(len(name) for name in settings)
    return '\n'.join(f'{name:<{width}}  {value!r}' for name, value in settings.items()
                     if name != 'class_names') + \
        f"\n{'class_names':<{width}}  {len(cfg.class_names)} names"


def with_classes(cfg: Type[SOLOv2Base], num_classes: int, class_names=None) -> Type[SOLOv2Base]:
    """The config with another class list (COCO names for 80 classes, else numbered
    names unless ``class_names`` is given); the same class when nothing changes."""
    if class_names is None:
        class_names = (COCO_CLASSES if num_classes == 80
                       else tuple(f'class{i}' for i in range(num_classes)))
    if num_classes == cfg.num_classes and tuple(class_names) == tuple(cfg.class_names):
        return cfg
    return type(cfg.__name__, (cfg,), {'num_classes': num_classes,
                                       'class_names': tuple(class_names)})


def with_overrides(cfg: Type[SOLOv2Base], assignments) -> Type[SOLOv2Base]:
    """Apply ``['name=value', ...]`` to a config. Values are Python literals coerced
    to the default's type (``test_short=512``, ``num_grids=(40,36,24,16,12)``);
    unknown names and uncoercible values raise ValueError."""
    import ast
    settings = cfg.settings()
    changes = {}
    for assignment in assignments:
        name, sep, text = assignment.partition('=')
        name = name.strip()
        if not sep or name not in settings:
            raise ValueError(f"bad override '{assignment}': expected NAME=VALUE with NAME one of "
                             f"{', '.join(settings)}")
        default = settings[name]
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if isinstance(default, bool) or default is None:
            pass
        elif isinstance(default, (int, float)) and isinstance(value, (int, float)):
            value = type(default)(value)
        elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        if default is not None and not isinstance(value, type(default)):
            raise ValueError(f"bad override '{assignment}': {name} takes a {type(default).__name__}")
        changes[name] = value
    return type(cfg.__name__, (cfg,), changes) if changes else cfg
