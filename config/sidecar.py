"""The checkpoint sidecar: ``NAME.json`` beside ``NAME.pdparams``, recording what rebuilds the
model: config number, class names, the ``"overrides"`` of the model and test settings in which it
differs from that config (each knob's ``group`` in config/base.py: ``MODEL_SETTINGS`` a command
line may not contradict, ``TEST_SETTINGS`` it may change) and the source."""
import ast
import json
from pathlib import Path
from typing import Collection, List, Optional, Sequence

from solov2.config import CONFIGS, SOLOv2Base, get_config, with_classes, with_overrides
from solov2.config.setting import group_names
from solov2.core.errors import InputError, param

MODEL_SETTINGS = group_names(SOLOv2Base, 'model')
TEST_SETTINGS = group_names(SOLOv2Base, 'test')
_CLASSES = ('num_classes', 'class_names')   # recorded as entries of their own
_RECORDED = tuple(name for name in MODEL_SETTINGS + TEST_SETTINGS if name not in _CLASSES)


def sidecar_path(weights: str) -> Path:
    """``x/name.pdparams`` -> ``x/name.json``."""
    return Path(weights).with_suffix('.json')


def recorded_settings(cfg, number: int) -> dict:
    """{name: value} of the model and test settings (classes aside) in which ``cfg``
    differs from config ``number``: what a sidecar stores under ``"overrides"``."""
    base = get_config(number)
    return {name: getattr(cfg, name) for name in _RECORDED if getattr(cfg, name) != getattr(base, name)}


def read_sidecar(weights: str) -> Optional[dict]:
    """The sidecar of ``weights`` or None when there is none; InputError (one line
    naming the file) when it is not a sidecar or its classes disagree."""
    side = sidecar_path(weights)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f'cannot read {side}: {exc} — fix or delete it and pass ', param('config')) from None
    if not isinstance(meta, dict) or not isinstance(meta.get('num_classes'), int) \
            or not isinstance(meta.get('overrides', {}), dict):
        raise InputError(f'{side} is not a checkpoint sidecar (config, num_classes, class_names) '
                         '— fix or delete it and pass ', param('config'))
    names = meta.get('class_names')
    if names is not None and len(names) != meta['num_classes']:
        raise InputError(f'{side} says num_classes={meta["num_classes"]} but lists {len(names)} class names '
                         '— make them agree')
    unknown = sorted(set(meta.get('overrides', {})) - set(_RECORDED))
    try:
        if meta.get('config') not in CONFIGS:
            raise InputError(f'names config {meta.get("config")!r}, which does not exist')
        if unknown:
            raise InputError(f'"overrides" records {unknown[0]}, which a sidecar does not hold')
        with_overrides(CONFIGS[meta['config']], _assignments(meta.get('overrides', {})))
    except ValueError as exc:
        raise InputError(f'{side}: ', *exc.args, ' — fix or delete it and pass ', param('config')) from None
    return meta


def _assignments(settings: dict) -> List[str]:
    """``{name: JSON value}`` -> ``['name=value', ...]`` for ``with_overrides``."""
    return [f'{name}={_tuples(value)!r}' for name, value in settings.items()]


def _tuples(value):
    """JSON lists back to the tuples the configs use."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def apply_sidecar(cfg, meta: dict, chosen: Collection[str] = ()):
    """``cfg`` with what the sidecar ``meta`` recorded (an old one without ``"overrides"``: the
    classes only), but for the settings chosen (named in ``chosen``, or off the recorded config's
    default in ``cfg``); InputError for a chosen model setting that contradicts the record."""
    if 'overrides' not in meta:
        return with_classes(cfg, meta['num_classes'], meta.get('class_names'))
    base = get_config(meta['config'])
    held = with_classes(base, meta['num_classes'], meta.get('class_names'))     # the recorded config, its classes
    recorded = {name: getattr(held, name) for name in MODEL_SETTINGS + TEST_SETTINGS}
    recorded.update({name: _tuples(value) for name, value in meta['overrides'].items()})
    changes = {}
    for name, value in recorded.items():
        current = getattr(cfg, name)
        if current == value:
            continue
        if name not in chosen and current == getattr(base, name):
            changes[name] = value
        elif name in MODEL_SETTINGS:
            raise InputError(f'weights were trained with {name}={value!r}, the config asks for {current!r}')
    return with_overrides(cfg, _assignments(changes))


def resolve_config(weights: Optional[str] = None, number: Optional[int] = None, overrides: Sequence[str] = ()):
    """(number, config class) for a checkpoint: ``number`` if given, else the one its sidecar
    records, with what the sidecar recorded (classes, settings) under the ``overrides``
    (``['name=value', ...]``). A model setting in ``overrides`` or a ``number`` that contradicts
    the sidecar raises InputError naming it; test-time settings (thresholds, test sizes) may differ."""
    meta = read_sidecar(weights) if weights else None
    number = number if number is not None else (meta or {}).get('config')
    if number is None:
        raise InputError('pass ', param('config'), ' (the weights have no sidecar .json naming one; a checkpoint '
                         'not made by this toolkit converts first: docs/checkpoints.md)')
    if meta is None:
        return number, with_overrides(get_config(number), overrides)
    check_class_count(meta, overrides, weights)
    cfg = with_overrides(get_config(number), overrides)
    same = meta.get('config') == number
    chosen = [text.partition('=')[0].strip() for text in overrides] if same else cfg.settings()
    try:
        return number, apply_sidecar(cfg, meta, chosen)
    except ValueError as exc:
        hint = () if same else (' (they were made for ', param('config', meta.get('config')), ')')
        raise InputError(*exc.args, *hint) from None


def check_class_count(meta: dict, overrides: Sequence[str], weights: str) -> None:
    """InputError saying how many classes the weights of sidecar ``meta`` hold when
    ``num_classes`` or ``class_names`` in ``overrides`` asks for another count."""
    held = meta['num_classes']
    for text in overrides:
        name, _, value = (part.strip() for part in text.partition('='))
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
        count = value if name == 'num_classes' else len(value) if name == 'class_names' and \
            isinstance(value, (tuple, list)) else None
        if isinstance(count, int) and count != held:
            names = ', '.join(with_classes(get_config(meta['config']), held, meta.get('class_names')).class_names[:6])
            said = f'num_classes={count}' if name == 'num_classes' else f'{count} class_names'
            raise InputError(f'the weights {weights} hold {held} classes ({names}{", ..." if held > 6 else ""}), '
                             f'not {said} — leave num_classes out (class_names may rename the {held}), or '
                             'fine-tune them on your classes: training with ', param('weights', weights))
