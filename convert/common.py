"""The converters' machinery: a rename table from this project's parameter names to a source
checkpoint's, applied with a full report; a checkpoint is written only when every target is filled
once and every source key is used. A ``Converter`` says how one family converts; ``convert_file``
runs one (``solov2 convert FAMILY``, tools/convert.py)."""
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from solov2.config import CONFIGS, with_classes
from solov2.config.sidecar import sidecar_path
from solov2.core.errors import InputError, RunError
from solov2.data.files import check_output_file
from solov2.model.build import model_shapes
from solov2.model.checkpoint import save_checkpoint


class ConversionError(InputError):
    """The source does not map cleanly onto the target model."""


def class_count(key: str, kind: str) -> Callable[[Dict[str, np.ndarray]], int]:
    """A family's ``num_classes(source)``: the length of the checkpoint's category-prediction
    bias ``key``; ConversionError when it has none (it is not ``kind``, e.g. 'an mmdetection checkpoint')."""
    def count(source: Dict[str, np.ndarray]) -> int:
        if key not in source:
            raise ConversionError(f'{key} not found: not {kind}')
        return source[key].shape[0]
    return count


@dataclass(frozen=True)
class Initialised:
    """Rename-table entry for a target with NO counterpart in the source: the target is
    filled with zeros (initialised, not converted) and listed in the report."""
    reason: str


@dataclass
class ConversionReport:
    """What a conversion mapped, and every way it failed to."""
    mapped: List[Tuple[str, str, tuple]] = field(default_factory=list)
    missing: List[Tuple[str, str]] = field(default_factory=list)       # (target, wanted source)
    mismatched: List[Tuple[str, str, tuple, tuple]] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    initialised: List[Tuple[str, str, tuple]] = field(default_factory=list)  # (target, reason, shape)

    def problems(self) -> int:
        return len(self.missing) + len(self.mismatched) + len(self.unused)

    def summary(self, limit: int = 10) -> str:
        """Human-readable report: counts, then up to ``limit`` lines per problem kind."""
        lines = [f'mapped {len(self.mapped)} tensors, {sum(int(np.prod(s)) for _, _, s in self.mapped):,} values']
        for title, rows in (('target keys with no source', [f'{t} <- {s}' for t, s in self.missing]),
                            ('shape mismatches', [f'{t} {list(ts)} <- {s} {list(ss)}'
                                                  for t, s, ts, ss in self.mismatched]),
                            ('unused source keys', self.unused)):
            if rows:
                lines.append(f'{len(rows)} {title}:')
                lines += [f'  {r}' for r in rows[:limit]]
                if len(rows) > limit:
                    lines.append(f'  ... and {len(rows) - limit} more')
        if self.initialised:   # never truncated: these values did not come from the source
            lines.append(f'WARNING: {len(self.initialised)} tensors INITIALISED, NOT CONVERTED '
                         f'(no counterpart in the source):')
            by_reason = defaultdict(list)
            for target, why, shape in self.initialised:
                by_reason[why].append(f'    {target} {list(shape)}')
            for why, targets in by_reason.items():
                lines += [f'  {len(targets)} x {why}:'] + targets
        return '\n'.join(lines)


def apply_table(source: Dict[str, np.ndarray], table: Dict[str, Union[str, Initialised]],
                target_shapes: Dict[str, tuple], ignored: Optional[Callable[[str], bool]] = None,
                aliases: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, np.ndarray], ConversionReport]:
    """Fill every target key from ``source[table[key]]`` (an ``Initialised`` entry: zeros, in
    ``report.initialised``). ``ignored(k)``: source keys without weights (BN counters); ``aliases``:
    {duplicate source key: the key it repeats}, used only where their values are identical."""
    report = ConversionReport()
    out, used = {}, set()
    for target, shape in target_shapes.items():
        name = table[target]
        if isinstance(name, Initialised):
            out[target] = np.zeros(shape, dtype=np.float32)
            report.initialised.append((target, name.reason, tuple(shape)))
            continue
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
        if name in used or (ignored is not None and ignored(name)):
            continue
        primary = (aliases or {}).get(name)
        if primary in used and np.array_equal(source[primary], value):
            continue
        report.unused.append(name)
    return out, report


@dataclass(frozen=True)
class Converter:
    """How one source family converts (``convert``): ``load(path)`` -> {name: array};
    ``rename(key, the model's keys, cfg)`` -> its source name or ``Initialised``; the configs tried
    in order; ``num_classes(source)``; ``ignored(name)`` for source keys without weights;
    ``aliases(source)`` -> {duplicate key: the key it repeats}; ``prefix`` for a part-only checkpoint
    (``'backbone.'``); ``notes`` for its users (a one-line summary, then details)."""
    load: Callable[[str], Dict[str, np.ndarray]]
    rename: Callable[[str, frozenset, object], Union[str, Initialised]]
    default_configs: Tuple[int, ...]
    num_classes: Callable[[Dict[str, np.ndarray]], int]
    ignored: Optional[Callable[[str], bool]] = None
    aliases: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, str]]] = None
    prefix: str = ''
    notes: str = ''


def convert(converter: Converter, source: Dict[str, np.ndarray], number: Optional[int] = None):
    """(config number, cfg, state, report) of the checkpoint ``source`` ({name: array}, as
    ``converter.load`` reads it) converted by ``converter`` for config ``number``, else the first
    of ``converter.default_configs`` that converts cleanly; ConversionError with the closest report
    when none does. Only the model keys starting with ``converter.prefix`` are targets
    (``'backbone.'``, which every config has); its ``rename`` still receives the whole model's keys."""
    numbers = [number] if number is not None else list(converter.default_configs)
    num_classes = converter.num_classes(source)
    aliases = converter.aliases(source) if converter.aliases else None
    best = None
    for number in numbers:
        cfg = with_classes(CONFIGS[number], num_classes)
        full = model_shapes(cfg)
        keys = frozenset(full)
        shapes = {k: v for k, v in full.items() if k.startswith(converter.prefix)}
        try:
            table = {k: converter.rename(k, keys, cfg) for k in shapes}
        except KeyError as exc:         # the source family has no name for a part of this config
            raise ConversionError(f'cannot convert into config {number}: {exc.args[0]}') from None
        state, report = apply_table(source, table, shapes, converter.ignored, aliases)
        if not report.problems():
            return number, cfg, state, report
        if best is None or report.problems() < best[1].problems():
            best = (number, report)
    number, report = best
    raise ConversionError(f'the checkpoint does not match any of configs {numbers}; '
                          f'closest is config {number}:\n{report.summary()}')


def imagenet_converter(load: Callable[[str], Dict[str, np.ndarray]], backbone_name: Callable[[str, object], str],
                       default_configs: Tuple[int, ...], classifier: Tuple[str, ...], ignored: Callable[[str], bool],
                       notes: str) -> Converter:
    """The converter of an ImageNet classification checkpoint into a BACKBONE-ONLY one:
    ``backbone_name(key, cfg)`` names each ``backbone.*`` key in the source, except the backbone
    DCN offset convs ImageNet lacks: zeros, as PaddleDetection and mmcv initialise them before
    detection training (``Initialised``); the classes are COCO's 80; the source's ``classifier``
    keys and those ``ignored`` are skipped."""
    def rename(key: str, keys: frozenset, cfg) -> Union[str, Initialised]:
        if '.conv.offset.' not in key:
            return backbone_name(key, cfg)
        if cfg.backbone_dcn == 'v2':
            return Initialised('DCNv2 offset/mask conv, zero init: offsets 0 and modulation mask '
                               'sigmoid(0) = 0.5, so this conv starts at HALF its ImageNet response '
                               '(same init as PaddleDetection/mmcv training from ImageNet)')
        return Initialised('DCNv1 offset conv, zero init: offsets 0, the conv starts as the ImageNet 3x3 conv')
    return Converter(load, rename, default_configs, lambda source: 80, lambda name: name in classifier or ignored(name),
                     prefix='backbone.', notes=notes)


@dataclass(frozen=True)
class Converted:
    """What ``convert_file`` wrote: the weights ``output`` (its sidecar beside it) of config ``number``,
    and the conversion's ``report``."""
    number: int
    report: ConversionReport
    output: str


def convert_file(converter: Converter, source: str, output: str, number: Optional[int] = None,
                 published: Optional[Mapping] = None) -> Converted:
    """Convert the checkpoint ``source`` into ``output`` and its sidecar for config ``number``
    (default: the first of ``converter.default_configs`` that fits); what it wrote. Nothing is written for an
    unusable output path or a source that does not read or convert (InputError, one line for the path:
    ``output`` and its sidecar must be writable without touching ``source``, ``data.files.check_output_file``,
    and the weights not named ``.json``, the sidecar's name); RunError when writing fails. The sidecar records
    ``"part"`` (``converter.prefix``), ``"initialised"`` ({key: reason}) and ``"published"`` (``published``, a
    ``convert.zoo`` row; its ``url`` the source)."""
    if sidecar_path(output) == Path(output):
        raise ConversionError(f"{output}: the weights need a name other than the sidecar's .json "
                              '— e.g. NAME.pdparams')
    role = 'the checkpoint being converted'
    check_output_file(output, [source], role=role, example='NAME.pdparams')
    check_output_file(sidecar_path(output), [source], 'the sidecar of the output', role=role, example='')
    number, cfg, state, report = convert(converter, converter.load(source), number)
    extra = {'part': converter.prefix.rstrip('.'), 'initialised': {t: why for t, why, _ in report.initialised},
             'published': dict(published or {})}
    try:
        save_checkpoint(state, output, number, cfg, source=published['url'] if published else source,
                        extra={key: value for key, value in extra.items() if value})
    except OSError as exc:
        raise RunError(f'cannot write {output}: {exc.strerror or exc}') from exc
    return Converted(number, report, output)
