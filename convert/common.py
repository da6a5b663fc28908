"""Shared machinery of the converters: a rename table from this project's parameter
names to a source checkpoint's names, applied with a full report; a checkpoint is
written only when every target is filled once and every source key is used."""
import argparse
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type

import numpy as np

from config import CONFIGS, describe_configs, with_classes
from model.build import build_model
from model.checkpoint import save_checkpoint

BN_LEAVES = ('weight', 'bias', '_mean', '_variance')


class ConversionError(Exception):
    """The source does not map cleanly onto the target model."""


@dataclass
class ConversionReport:
    """What a conversion mapped, and every way it failed to."""
    mapped: List[Tuple[str, str, tuple]] = field(default_factory=list)
    missing: List[Tuple[str, str]] = field(default_factory=list)       # (target, wanted source)
    mismatched: List[Tuple[str, str, tuple, tuple]] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unused)

    def problems(self) -> int:
        return len(self.missing) + len(self.mismatched) + len(self.unused)

    def summary(self, limit: int = 10) -> str:
        """Human-readable report: counts, then up to ``limit`` lines per problem kind."""
        lines = [f'mapped {len(self.mapped)} tensors, '
                 f'{sum(int(np.prod(s)) for _, _, s in self.mapped):,} values']
        for title, rows in (('target keys with no source', [f'{t} <- {s}' for t, s in self.missing]),
                            ('shape mismatches', [f'{t} {list(ts)} <- {s} {list(ss)}'
                                                  for t, s, ts, ss in self.mismatched]),
                            ('unused source keys', self.unused)):
            if rows:
                lines.append(f'{len(rows)} {title}:')
                lines += [f'  {r}' for r in rows[:limit]]
                if len(rows) > limit:
                    lines.append(f'  ... and {len(rows) - limit} more')
        return '\n'.join(lines)


def apply_table(source: Dict[str, np.ndarray], table: Dict[str, str],
                target_shapes: Dict[str, tuple], ignored: Callable[[str], bool] = lambda k: False,
                aliases: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, np.ndarray], ConversionReport]:
    """Fill every target key from ``source[table[key]]``.

    ``ignored(k)`` marks source keys that carry no weights (e.g. BN counters).
    ``aliases`` maps a duplicate source key to the key it repeats; it counts as used
    only if its values are identical to that key's.
    """
    report = ConversionReport()
    out, used = {}, set()
    for target, shape in target_shapes.items():
        name = table[target]
        if name not in source:
            report.missing.append((target, name))
            continue
        value = source[name]
        if tuple(value.shape) != tuple(shape):
            report.mismatched.append((target, name, tuple(shape), tuple(value.shape)))
            continue
        out[target] = np.ascontiguousarray(value, dtype=np.float32)
        used.add(name)
        report.mapped.append((target, name, tuple(shape)))
    for name, value in source.items():
        if name in used or ignored(name):
            continue
        primary = (aliases or {}).get(name)
        if primary in used and np.array_equal(source[primary], value):
            continue
        report.unused.append(name)
    return out, report


def model_shapes(cfg) -> Dict[str, tuple]:
    """{parameter name: shape} of the model a config builds."""
    return {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}


Renamer = Callable[[str, frozenset, object], str]


def convert(source: Dict[str, np.ndarray], rename: Renamer, config_numbers: Iterable[int],
            num_classes: int, ignored: Callable[[str], bool] = lambda k: False,
            aliases: Optional[Dict[str, str]] = None):
    """Try the candidate configs in order; return (config number, cfg, state, report)
    of the first clean conversion, else raise ConversionError with the closest report."""
    best = None
    for number in config_numbers:
        cfg = with_classes(CONFIGS[number], num_classes)
        shapes = model_shapes(cfg)
        keys = frozenset(shapes)
        table = {k: rename(k, keys, cfg) for k in shapes}
        state, report = apply_table(source, table, shapes, ignored, aliases)
        if report.ok:
            return number, cfg, state, report
        if best is None or report.problems() < best[1].problems():
            best = (number, report)
    number, report = best
    raise ConversionError(f'the checkpoint does not match any of configs {list(config_numbers)}; '
                          f'closest is config {number}:\n{report.summary()}')


def is_deformable(prefix: str, keys: frozenset) -> bool:
    """Whether our ConvNormAct at ``prefix`` holds a deformable conv."""
    return f'{prefix}.conv.offset.weight' in keys


def converter_main(description: str, load: Callable[[str], Dict[str, np.ndarray]],
                   rename: Renamer, default_configs: Sequence[int],
                   num_classes_key: Callable[[Dict[str, np.ndarray]], int],
                   ignored: Callable[[str], bool] = lambda k: False,
                   aliases: Callable[[Dict[str, np.ndarray]], Dict[str, str]] = lambda s: {},
                   argv: Optional[Sequence[str]] = None) -> int:
    """Command line shared by every ``convert/<source>2paddle.py``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='configs:\n' + describe_configs())
    parser.add_argument('source', help='checkpoint to convert')
    parser.add_argument('output', help='where to write the .pdparams (a .json sidecar goes beside it)')
    parser.add_argument('--config', type=int, default=None,
                        help=f'target config number; default: detect among {list(default_configs)}')
    args = parser.parse_args(argv)
    try:
        source = load(args.source)
        numbers = [args.config] if args.config is not None else list(default_configs)
        number, cfg, state, report = convert(source, rename, numbers, num_classes_key(source),
                                             ignored, aliases(source))
    except Exception as exc:  # report any failure as one clear message, no traceback
        print(f'error: {exc}', file=sys.stderr)
        return 1
    save_checkpoint(state, args.output, number, cfg.class_names, source=args.source)
    print(f'config {number} ({CONFIGS[number].__name__}): {report.summary()}')
    print(f'wrote {args.output}')
    return 0
