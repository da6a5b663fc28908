"""The rules a ``Setting`` takes (``rule=...`` in config/base.py) and ``check_config``, run whenever
a config is built with overrides or another class list: a bad value fails at once, naming the knob
and what it accepts (not as zero detections or a traceback an hour later)."""
from numbers import Real

from solov2.config.setting import Rule, declared_settings
from solov2.core.errors import InputError, param

LEVELS = 5      # FPN levels: num_grids, scale_ranges and segm_strides have one entry each


def integer(low: int) -> Rule:
    """An int (not a bool) >= ``low``."""
    return Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f'an integer >= {low}')


def number(low, high=None, open_low: bool = False) -> Rule:
    """A real number (not a bool) >= ``low`` (> with ``open_low``) and <= ``high`` if given."""
    def ok(v):
        return (isinstance(v, Real) and not isinstance(v, bool) and (v > low if open_low else v >= low)
                and (high is None or v <= high))
    bound = f'> {low}' if open_low else f'>= {low}'
    return Rule(ok, f'a number in [{low}, {high}]' if high is not None else f'a number {bound}')


def one_of(*values) -> Rule:
    """One of ``values``."""
    return Rule(lambda v: v in values, 'one of ' + ', '.join(repr(v) for v in values))


def sizes(count=None) -> Rule:
    """A non-empty tuple of ints >= 1, of length ``count`` if given (one per FPN level)."""
    def ok(v):
        return isinstance(v, tuple) and len(v) >= 1 and (count is None or len(v) == count) and all(map(POSITIVE.ok, v))
    return Rule(ok, f'{count} integers >= 1 (one per FPN level)' if count else 'a non-empty tuple of integers >= 1')


def _ranges(v) -> bool:
    return (isinstance(v, tuple) and len(v) == LEVELS
            and all(isinstance(r, tuple) and len(r) == 2 and 0 <= r[0] < r[1] for r in v))


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
FRACTION = number(0, 1)
POSITIVE_NUMBER = number(0, open_low=True)
NON_NEGATIVE_NUMBER = number(0)
LEVEL_SIZES = sizes(LEVELS)
LEVEL_RANGES = Rule(_ranges, f'{LEVELS} pairs (low, high), 0 <= low < high')


def check_config(cfg) -> None:
    """InputError naming the first knob of ``cfg`` whose value breaks its declared rule,
    and what it accepts; also ``class_names`` must hold ``num_classes`` names."""
    for name, setting in declared_settings(cfg).items():
        value = getattr(cfg, name)
        if setting.rule and not setting.rule.ok(value):
            raise InputError(f'bad value {name}={value!r}: {name} takes {setting.rule.text} — fix it in ',
                             param('overrides'), ' or in the config')
    names = cfg.class_names
    if len(names) != cfg.num_classes:
        raise InputError(f'num_classes={cfg.num_classes} but class_names holds {len(names)} names '
                         '— give as many class names as classes')
