"""Numbered configs for ``--config=N``. The numbers are stable: scripts depend on them.

0-2 keep the numbering of the earlier Paddle 2.0 port (miemie2013/Paddle-SOLOv2).
"""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')
import difflib
import logging
from typing import Dict, Type

from solov2.config import variants
from solov2.config.base import COCO_CLASSES, SOLOv2Base
from solov2.config.checks import check_config
from solov2.config.setting import Setting, declared_settings
from solov2.core.errors import InputError, param

logger = logging.getLogger(__name__)
VALUE_COLUMN = 24   # longer values in the --verbose table push their doc to the right
ACCEPTED = {type(None): (str,), float: (int, float), tuple: (list, tuple)}    # else: the default's type

CONFIGS: Dict[int, Type[SOLOv2Base]] = {
    0: SOLOv2Base,
    1: variants.Light448R50,
    2: variants.Light512R50vdDCN,
    3: variants.R50vdDCNEnhance,
    4: variants.R101vdDCN,
    5: variants.Light448R18,
    6: variants.Light448R34,
    7: variants.Light512DCNR50,
    8: variants.R101FPN,
    9: variants.ShapesR18,
    10: variants.R101DCN,
    11: variants.Light448DCNR50,
    12: variants.X101DCN,
}


def get_config(number: int) -> Type[SOLOv2Base]:
    """The config class registered as ``number``; a clear error for an unknown one."""
    if number not in CONFIGS:
        listed = ', '.join(f'{n}: {c.__name__}' for n, c in CONFIGS.items())
        raise InputError(f'unknown config {number} — pick one of {listed}')
    return CONFIGS[number]


def describe_configs() -> str:
    """One line per config: number, class name, description."""
    return '\n'.join(f'  {n:>2}: {c.__name__:<18} {c.description}' for n, c in CONFIGS.items())


def format_settings(cfg: Type[SOLOv2Base]) -> str:
    """The resolved config as an aligned table, one knob a line: name, value (``class_names``:
    how many, on the last line) and the knob's one-line doc after ``#``."""
    declared = declared_settings(cfg)
    names = [name for name in declared if name != 'class_names'] + ['class_names']
    values = {name: repr(getattr(cfg, name)) for name in names}
    values['class_names'] = f'{len(cfg.class_names)} names'
    width = max(map(len, names))
    value_width = min(max(map(len, values.values())), VALUE_COLUMN)
    return '\n'.join(f'{name:<{width}}  {values[name]:<{value_width}}  # {declared[name].doc}' for name in names)


def with_classes(cfg: Type[SOLOv2Base], num_classes: int, class_names=None) -> Type[SOLOv2Base]:
    """The config with another class list (COCO names for 80 classes, else numbered
    names unless ``class_names`` is given); the same class when nothing changes."""
    if class_names is None:
        class_names = COCO_CLASSES if num_classes == 80 else tuple(f'class{i}' for i in range(num_classes))
    same = num_classes == cfg.num_classes and tuple(class_names) == tuple(cfg.class_names)
    named = cfg if same else type(cfg.__name__, (cfg,), {'num_classes': num_classes, 'class_names': tuple(class_names)})
    check_config(named)
    return named


def _coerce(setting: Setting, text: str):
    """Parse ``text`` as a Python literal (else a plain string) and check it against the
    type of the setting's default: ints stay ints, floats accept ints, tuples accept lists,
    and a setting whose default is None takes None or a string."""
    import ast
    default = setting.default
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if value is None and default is None:
        return None
    kinds = ACCEPTED.get(type(default), (type(default),))
    if not isinstance(value, kinds) or isinstance(value, bool) != isinstance(default, bool):
        kind = setting.rule.text if setting.rule else 'None or a string' if default is None else type(default).__name__
        example = default[:2] if isinstance(default, tuple) and len(default) > 6 else default     # a long tuple cut
        raise InputError(f"bad override '{setting.name}={text}': {setting.name} takes {kind}, e.g. ",
                         param('overrides', [f'{setting.name}={example!r}']))
    return type(default)(value) if isinstance(default, (float, tuple)) else value


def with_overrides(cfg: Type[SOLOv2Base], assignments) -> Type[SOLOv2Base]:
    """Apply ``['name=value', ...]`` to a config. Values are Python literals checked
    against the type of the setting's declared default (``test_short=512``,
    ``num_grids=(40,36,24,16,12)``, ``head_dcn=None``); unknown names and values of
    another type raise InputError, as do values out of range (``config.checks``)."""
    declared = declared_settings(cfg)
    changes = {}
    for assignment in assignments:
        name, sep, text = assignment.partition('=')
        name = name.strip()
        if not sep:
            raise InputError(f"bad override '{assignment}': expected NAME=VALUE, e.g. score_threshold=0.2")
        if name not in declared:
            near = difflib.get_close_matches(name, list(declared), n=2, cutoff=0.6)
            hint = f'did you mean {" or ".join(near)}?' if near else 'see config/base.py for every setting and its doc'
            raise InputError(f"bad override '{assignment}': no setting {name!r} — {hint}")
        changes[name] = _coerce(declared[name], text)
    changed = type(cfg.__name__, (cfg,), changes) if changes else cfg
    check_config(changed)
    return changed


def announce_config(number: int, cfg, overrides=(), verbose: bool = False, where: str = '') -> None:
    """Log (INFO) what a command runs with: one line (config number and name, ``where`` (weights
    or model folder) and the overrides), or with ``verbose`` that line and the table of every
    resolved value."""
    line = f'config {number}: {cfg.__name__}' + (f' ({where})' if where else '')
    line += f", {param('overrides', list(overrides))}" if overrides else ''
    logger.info('%s%s', line, '\n' + format_settings(cfg) if verbose else '')
