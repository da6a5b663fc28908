"""``backend='auto'``: an installed exported engine (OpenVINO f32 or onnxruntime; OpenVINO bf16 on
a CPU with native bf16 where it keeps f32's instances, ``candidates``), exported once per checkpoint
into a cache; dygraph with neither, on a GPU, or when the export fails (one WARNING line; its
``fallback`` says why). One ONNX export serves both engines: each is verified
against dygraph (``export.verify``), then timed (``time_engines``; once more on new sizes when
the two are within ``RETIME_MARGIN``); the cheaper (``median_costs``; the earlier candidate where they stay
within that margin, ``measured_choice``) is recorded in the entry's
``cache.json`` under ``choice_key`` (the CPU's features, threads, precision) and later runs with that key open
it without timing (another key times the entry's engines once and adds its choice). An entry
(``core.cache.entry_folder``: keyed by content, config, the settings that shape it (``cache_key``),
versions and source hash, not the machine) is built in a temporary folder and renamed into place
(an export first removes the temporaries that stopped processes left, ``core.cache.leftovers``); its hashes are checked
on load, and a corrupt entry is replaced. docs/deployment.md#auto-and-the-export-cache says more.
"""
import contextlib
import json
import logging
import statistics
import time
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from solov2.config.sidecar import MODEL_SETTINGS, TEST_SETTINGS, resolve_config
from solov2.core.cache import (
    MANIFEST,
    compiled_cache,
    entry_folder,
    entry_lock,
    leftovers,
    package_version,
    remove_entries,
    source_hash,
)
from solov2.core.errors import InputError
from solov2.core.paths import SAMPLE_IMAGES, build_folder
from solov2.data.files import atomic_write, file_sha256
from solov2.data.transforms import padded_size, resized_hw
from solov2.model.cpu_math import cpu_features
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.export import ExportError, export, verify
from solov2.model.inference.instance_match import SEEN_SCORE, compare_instances, disagreement
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.spec import ModelSpec, Progress, dygraph_backend, exported_backend
from solov2.model.runtime import cpu_threads

LOG = logging.getLogger(__name__)
Times = Dict[str, List[Tuple[float, float]]]     # time_engines': per engine, (new size, repeated) ms a round
FORMAT = 7                # 7: keyed by ENTRY_SETTINGS' values (6: every override)
# What an entry depends on in a config: the network's settings, the test settings its infer_cfg.json
# records and its engines are timed at, and OpenVINO's own (its compiled buckets and streams)
ENTRY_SETTINGS = MODEL_SETTINGS + TEST_SETTINGS + ('openvino_buckets', 'openvino_streams')
_PACKAGES = {'openvino': ('openvino',), 'onnx': ('onnxruntime',)}
TIMING_WARMUP = 2          # untimed runs first (first-call allocations, lazy kernel set-up)
TIMING_ROUNDS = 5          # each runs every engine twice on a size new to it
TIMING_BUDGET_S = 15.0     # ... fewer where the warm-up says five would take longer (a slow model, a slow CPU)
MIN_ROUNDS = 1             # ... but never fewer than this (a slow model's runs: a busy moment weighs little)
RETIME_MARGIN = 0.1        # the two lowest costs per picture closer than this share of the lower: time again
RETIME_GROW = 96           # ... on sizes this many pixels larger a side (new to both engines)
PICTURES_PER_SIZE = 10     # a size's first call counts 1/10 (median_costs says why)
BF16 = 'openvino bf16'     # a candidate with precision unset, on CPUs with native bf16 (BF16_FLAGS)
PINNED = 'pinned'          # cache.json's engine for every CPU type and thread count (pin_choice)
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
STAGES = {'load': 0.0, 'export': 0.02, 'verify': 0.8, 'time': 0.9, 'done': 1.0}


def installed_engines() -> List[str]:
    """The f32 engines ``auto`` chooses from on the CPU ('openvino', 'onnx'): those installed,
    when the ONNX exporter (paddle2onnx, onnx) is too; [] means dygraph."""
    return [kind for kind, packages in _PACKAGES.items()
            if all(find_spec(name) is not None for name in ('paddle2onnx', 'onnx', *packages))]


def cache_key(weights: str, number: int, overrides: Sequence[str]) -> dict:
    """Everything an entry depends on (the versions of both engines, not which one wins): of the
    config resolved with ``overrides`` (and the sidecar), only ``ENTRY_SETTINGS``' values, so a
    data, training or path option (``dataset_dir``, ``base_lr``) opens the same entry."""
    packages = ('paddlepaddle', 'paddle2onnx', 'onnx') + sum(_PACKAGES.values(), ())
    cfg = resolve_config(weights, number, overrides)[1]
    settings = json.loads(json.dumps({name: getattr(cfg, name) for name in ENTRY_SETTINGS}))   # tuples as lists
    return {'format': FORMAT, 'weights_sha256': file_sha256(Path(weights)), 'config': number,
            'settings': settings, 'precision': 'f32',
            'versions': {name: package_version(name) for name in packages}, 'source_sha256': source_hash()}


def candidates(engines: Sequence[str], precision: Optional[str]) -> List[str]:
    """What ``auto`` times: the installed f32 ``engines`` and, with ``precision`` None, ``BF16``
    where OpenVINO is among them and the CPU has one of ``BF16_FLAGS``."""
    return list(engines) + ([BF16] if precision is None and native_bf16() and 'openvino' in engines else [])


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (one of ``BF16_FLAGS``)."""
    return any(flag in cpu_features() for flag in BF16_FLAGS)


def engine_spec(label: str, spec: ModelSpec, folder: Path) -> ModelSpec:
    """``spec`` ('auto''s) as a candidate ('openvino', 'onnx', ``BF16``) on the export in ``folder``."""
    kind, _, precision = label.partition(' ')
    return replace(spec, backend=kind, model_dir=str(folder), precision=precision or 'f32')


def machine_key(spec: ModelSpec) -> Tuple[List[str], str]:
    """(``candidates``, ``choice_key``) of ``spec`` ('auto''s) on this machine."""
    labels = candidates(installed_engines(), spec.precision)
    return labels, choice_key(spec.threads, 'bf16 or f32' if BF16 in labels else 'f32')


def bf16_problem(f32: Backend, bf16: Backend, images: Sequence[str] = ()) -> Optional[str]:
    """None when ``bf16`` keeps ``f32``'s answer on each of ``images`` (default: the sample
    pictures, ``core.paths.SAMPLE_IMAGES``): its instances scored ``SEEN_SCORE`` or more, or where
    none is, its best one and those as high (``instance_match``), else on which picture not and how."""
    with Predictor(bf16) as fast, Predictor(f32) as exact:
        for path in images or sorted(Path(SAMPLE_IMAGES).glob('*.jpg')):
            want = exact.detect(image := exact.read(path))
            floor = min(SEEN_SCORE, max(map(float, want.scores), default=SEEN_SCORE))
            problem = disagreement(compare_instances(fast.detect(image), want, floor))
            if problem:
                return f'{Path(path).name}: {problem}'
    return None


def choice_key(threads: int, precision: str = 'f32', cpuinfo: Optional[str] = None) -> str:
    """Whose timing a recorded choice is: the CPU's features among ``cpu_math.CPU_FLAGS``, the
    thread count (0: ``runtime.cpu_threads``'s) and the precision, e.g. 'avx2, 2 threads, f32'."""
    return f"{' '.join(cpu_features(cpuinfo)) or 'no avx2'}, {cpu_threads(threads)} threads, {precision}"


def check_entry(folder: Path, key: dict) -> Optional[str]:
    """None when ``folder`` holds a complete entry for ``key``, else what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest['key'] != key:
            return f'{MANIFEST} records another key'
        for name, digest in manifest['files'].items():
            path = folder / name
            if not path.is_file() or file_sha256(path) != digest:
                return f'{name} is missing or changed'
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f'{MANIFEST} unreadable ({type(exc).__name__})'
    return None


def timing_batches(cfg, rounds: int = TIMING_ROUNDS, seed: int = 0, grow: int = 0) -> List[np.ndarray]:
    """``rounds + 1`` random float32 inputs [1, 3, H, W]: first the size of a 4:3 landscape
    picture at the config's test size (``test_short``, ``test_max``), padded to 32 as
    ``preprocess`` pads, ``grow`` pixels more a side (the warm-up), then ``rounds`` sizes near
    it, each different (one or two more multiples of 32 on a side)."""
    (height, width), _ = resized_hw(480, 640, cfg.test_short, cfg.test_max)
    base = (padded_size(height, 32) + grow, padded_size(width, 32) + grow)
    steps = [(0, 0)] + [(rows, cols) for rows in range(3) for cols in range(3) if rows + cols][:rounds]
    state = np.random.RandomState(seed)
    return [state.standard_normal((1, 3, base[0] + 32 * rows, base[1] + 32 * cols)).astype(np.float32)
            for rows, cols in steps]


def time_engines(backends: Dict[str, Backend], batches: Sequence[np.ndarray],
                 clock: Callable[[], float] = time.perf_counter, budget_s: float = TIMING_BUDGET_S) -> Times:
    """{engine: [(ms of its first ``run(batches[i])``, ms of a second one) in round i]}: the
    round's size new to it, then repeated. ``TIMING_WARMUP`` untimed runs of ``batches[0]``
    each, then one round per later batch, as many as the last warm-up runs say fit in ``budget_s``
    (``MIN_ROUNDS`` at least, batches allowing): engine after engine, the order reversed every other
    round (a busy moment or a slow start hits them alike), one untimed run of ``batches[0]``
    (what the engine before left running stays off the timed calls), then two on it."""
    def seconds(kind: str, batch: np.ndarray) -> float:
        start = clock()
        backends[kind].run(batch)
        return clock() - start

    warm = {kind: [seconds(kind, batches[0]) for _ in range(TIMING_WARMUP)][-1] for kind in backends}
    round_s = 3 * sum(warm.values())
    fit = int(budget_s // round_s) if round_s > 0 else len(batches)
    rounds = min(len(batches) - 1, max(MIN_ROUNDS, fit))
    times: Times = {kind: [] for kind in backends}
    kinds = list(backends)
    for index, batch in enumerate(batches[1:rounds + 1]):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            backends[kind].run(batches[0])
            times[kind].append((1000 * seconds(kind, batch), 1000 * seconds(kind, batch)))
    return times


def median_costs(times: Times) -> Tuple[Dict[str, float], ...]:
    """(repeated, new, cost) per engine of ``times``: the median ms on a size it has run, on a new
    one, and ``repeated + (new - repeated) / PICTURES_PER_SIZE``. Pictures padded to 32 at the test
    size share a size per aspect ratio (a video, a camera, one camera's photos: one for good); a
    new size's extra (OpenVINO sets up its kernels, bf16 most) must pay off within ten pictures."""
    repeated, new = ({kind: statistics.median(pair[i] for pair in pairs) for kind, pairs in times.items()}
                     for i in (1, 0))
    return repeated, new, {kind: repeated[kind] + (new[kind] - repeated[kind]) / PICTURES_PER_SIZE for kind in times}


def measured_choice(backends: Dict[str, Backend]) -> dict:
    """What an entry records for one ``choice_key``: each engine's median milliseconds over
    ``time_engines``'s rounds on a repeated size (``timings_ms``) and on a new one
    (``new_size_ms``; a busy moment in one round changes neither), over twice as many rounds
    when the first timing's two lowest costs (``median_costs``) differ by less than ``RETIME_MARGIN``
    of the lower (the second on sizes ``RETIME_GROW`` larger; ``timings``: 2), the engine chosen and the
    input (``timing_input``). The engine is the first in ``backends``' order (``candidates``': OpenVINO f32,
    onnxruntime, OpenVINO bf16) whose cost is within ``RETIME_MARGIN`` of the lowest (an only one untimed):
    engines that close are within the timings' noise on a busy machine, where the lowest alone would change
    from one cold start to the next (two replicas answering the same picture differently); only a
    clearly faster engine displaces an earlier one."""
    cfg = next(iter(backends.values())).cfg       # the config with the overrides
    shape = list(timing_batches(cfg, rounds=0)[0].shape)
    if len(backends) == 1:
        return {'engine': next(iter(backends)), 'timings_ms': {}, 'timing_input': shape, 'timings': 0}
    times = time_engines(backends, timing_batches(cfg))
    first, second = sorted(median_costs(times)[2].values())[:2]
    timings = 2 if second - first < RETIME_MARGIN * first else 1
    if timings == 2:
        again = time_engines(backends, timing_batches(cfg, seed=1, grow=RETIME_GROW))
        times = {kind: pairs + again[kind] for kind, pairs in times.items()}
    repeated, new, costs = median_costs(times)
    lowest = min(costs.values())
    return {'engine': next(kind for kind, cost in costs.items() if cost <= (1 + RETIME_MARGIN) * lowest),
            'timings_ms': repeated, 'new_size_ms': new, 'timing_input': shape, 'timings': timings}


def timed_ms(choice: dict, kind: str) -> str:
    """``kind``'s times in ``choice``: e.g. '21 ms (48 ms on a new size)'."""
    return f"{choice['timings_ms'][kind]:.0f} ms ({choice['new_size_ms'][kind]:.0f} ms on a new size)"


def choice_line(choice: dict) -> str:
    """Why an engine was chosen, for the one line ``auto`` says (a pinned one: ``pin_choice``'s)."""
    if choice.get(PINNED):
        return f'{choice["engine"]} pinned in the cache entry'
    if len(choice['timings_ms']) < 2:
        return f'{choice["engine"]} is the only f32 engine installed'
    height, width = choice['timing_input'][2:]
    again = f' (timed twice: the first within {RETIME_MARGIN:.0%})' if choice.get('timings') == 2 else ''
    return (', '.join(f'{kind} {timed_ms(choice, kind)}' for kind in choice['timings_ms'])
            + f' per picture near {height}x{width}{again}')


def timed_choice(backends: Dict[str, Backend]) -> dict:
    """``measured_choice`` of ``backends`` (by candidate), ``BF16`` among them only when it keeps
    OpenVINO f32's instances (``bf16_problem``; else why not in ``bf16_kept_out``)."""
    problem = bf16_problem(backends['openvino'], backends[BF16]) if BF16 in backends else None
    timed = {label: backend for label, backend in backends.items() if not (problem and label == BF16)}
    return {**measured_choice(timed), **({'bf16_kept_out': problem} if problem else {})}


def recorded_choice(folder: Path, machine: str, engines: Sequence[str],
                    open_engine: Callable[[str], Backend]) -> Tuple[dict, Optional[Backend]]:
    """(choice, None): the engine ``folder``'s ``cache.json`` pins (``pin_choice``), where it is among ``engines``,
    else the choice it records for ``machine`` (``choice_key``)
    among ``engines`` (``candidates``); without one, (choice, its backend): ``engines`` opened
    by ``open_engine`` and timed now (``timed_choice``), the choice added to ``cache.json`` (kept unrecorded
    where the folder cannot be written)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get(PINNED) in engines:
        return {'engine': manifest[PINNED], PINNED: True}, None
    choices = manifest['choices'] if isinstance(manifest.get('choices'), dict) else {}
    choice = choices.get(machine)
    if isinstance(choice, dict) and choice.get('engine') in engines:
        return choice, None
    backends = {kind: open_engine(kind) for kind in engines}
    choice = choices[machine] = timed_choice(backends)
    try:
        atomic_write(folder / MANIFEST, (json.dumps({**manifest, 'choices': choices}, indent=2) + '\n').encode())
    except OSError as exc:
        LOG.debug(f'auto: could not record the choice in {folder / MANIFEST} ({exc})')
    return choice, backends[choice['engine']]


def using(choice: dict) -> str:
    """What a choice runs: 'openvino f32', 'onnx f32' or 'openvino bf16'."""
    kind, _, precision = choice['engine'].partition(' ')
    return f'{kind} {precision or "f32"}' + (f' ({PINNED})' if choice.get(PINNED) else '')


def pin_choice(spec: ModelSpec, number: int, engine: str, cache_dir: Optional[str] = None) -> Path:
    """Pin ``engine`` (a label of ``candidates``) in the cache entry of ``spec`` ('auto''s, config ``number``;
    exported by ``cached_backend`` first): later runs on any CPU type and thread count open it without timing
    wherever it is installed, so that the replicas of one deployment run one engine. Its folder; InputError
    when ``engine`` is not a candidate here."""
    labels = candidates(installed_engines(), spec.precision)
    if engine not in labels:
        raise InputError(f"cannot pin {engine}: auto's candidates here are {', '.join(labels) or 'none'}")
    folder = entry_folder(cache_key(spec.weights, number, spec.overrides), cache_dir)
    with entry_lock(folder):        # beside another process recording its timed choice: neither record is lost
        manifest = json.loads((folder / MANIFEST).read_text())
        atomic_write(folder / MANIFEST, (json.dumps({**manifest, PINNED: engine}, indent=2) + '\n').encode())
    return folder


def bf16_hint(choice: dict, labels: Sequence[str]) -> Optional[str]:
    """On a CPU with native bf16 where ``auto`` runs f32: one line on why, else None."""
    if choice['engine'] == BF16 or not native_bf16() or choice.get(PINNED):
        return None
    if BF16 not in labels:
        return ("auto: this CPU has native bf16: with precision unset auto tries OpenVINO bf16 (backend='openvino', "
                "precision='bf16' runs it)")
    if 'bf16_kept_out' in choice:
        return f'auto: OpenVINO bf16 not used: its instances differ from f32 ({choice["bf16_kept_out"]})'
    return (f'auto: OpenVINO bf16 not used: {timed_ms(choice, BF16)} against {using(choice)} '
            f"{timed_ms(choice, choice['engine'])} (backend='openvino', precision='bf16' runs it)")


def build_entry(spec: ModelSpec, cfg, key: dict, folder: Path, progress: Optional[Progress] = None,
                rebuild: bool = False) -> None:
    """Export ``spec``'s weights (``cfg``: its resolved config) into a temporary folder beside
    ``folder``, verify each of its ``candidates`` but bf16 against dygraph, time them
    (``timed_choice``, recorded under ``machine_key``), write the manifest and rename it to
    ``folder`` (``core.paths.build_folder``; ``rebuild``: an entry there is replaced). When another process
    put an entry for ``key`` there first, that one stays. ``progress(stage, fraction)`` is called
    as each of ``STAGES`` but 'done' begins: the stages of a first export, in order, each with roughly the share
    of its time gone when it begins (shapes_r18 with openvino and onnx on 2 cores: the ONNX export took 78% of
    29 s, verifying 11%, timing 10%). Raises ExportError, or BackendError for an engine that does not open."""
    say = progress or (lambda stage, fraction: None)

    try:
        with build_folder(folder, replace=rebuild) as tmp:
            say('load', STAGES['load'])
            dygraph = dygraph_backend(spec, cfg)
            say('export', STAGES['export'])
            export(dygraph, key['config'], tmp, fmt='onnx', check=False)
            say('verify', STAGES['verify'])
            labels, machine = machine_key(spec)
            backends = {label: exported_backend(engine_spec(label, spec, tmp), compiled_cache(folder.parent))
                        for label in labels}
            verify(dygraph, [backend for label, backend in backends.items() if label != BF16])
            if len(backends) > 1:
                say('time', STAGES['time'])
            files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {'key': key, 'files': files, 'choices': {machine: timed_choice(backends)}}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + '\n')
    except OSError:                  # another process renamed its entry into place first
        if check_entry(folder, key) is not None:
            raise


def cached_backend(spec: ModelSpec, number: int, cfg, log: Optional[Callable[[str], None]] = None,
                   cache_dir: Optional[str] = None, progress: Optional[Progress] = None) -> Tuple[str, Backend]:
    """('openvino' | 'onnx' | 'dygraph', backend) for ``spec`` (``backend='auto'``: its ``weights``
    a checkpoint's path, ``overrides``, ``threads``) on the CPU, exporting into the cache
    (``core.cache.entry_folder``) when needed (``number``, ``cfg``: its config as
    ``config.sidecar.resolve_config`` gives it); ``precision`` 'f32': an f32 engine, None: also
    OpenVINO bf16 where ``candidates`` has it. Says in one line what it used, through ``log``
    (default: this module's logger, INFO; a failed export, which falls back to dygraph, at WARNING
    with its reason, so that a program that configures no logging shows it too), and a second
    with ``bf16_hint``'s. While it exports,
    ``progress(stage, fraction)`` hears each of ``STAGES`` begin, 'done' (1.0) last, also when
    the export fails; it is not called when the entry is in the cache or no engine is installed."""
    log, warn, spec = log or LOG.info, log or LOG.warning, replace(spec, device='cpu')
    engines = installed_engines()
    if not engines:
        log('auto: neither openvino nor onnxruntime (+ paddle2onnx) is installed: using dygraph')
        return 'dygraph', dygraph_instead(spec, cfg, 'neither openvino nor onnxruntime is installed')
    labels, machine = machine_key(spec)
    key = cache_key(spec.weights, number, spec.overrides)
    folder = entry_folder(key, cache_dir)

    def open_engine(label: str, pinned: bool = False) -> Backend:
        return exported_backend(engine_spec(label, spec, folder), compiled_cache(folder.parent), pinned)

    def chosen(line: str, choice: dict, backend: Optional[Backend], where: str = '') -> Tuple[str, Backend]:
        log(f'{line}using {using(choice)}{where}')
        if hint := bf16_hint(choice, labels):
            log(hint)
        backend = backend or open_engine(choice['engine'], bool(choice.get(PINNED)))   # a timed one: never pinned
        return choice['engine'].partition(' ')[0], backend
    with entry_lock(folder):    # another process exporting or timing it (replicas started together): wait, then read
        problem = check_entry(folder, key) if folder.exists() else None
        if folder.exists() and problem is None:
            try:
                choice, backend = recorded_choice(folder, machine, labels, open_engine)
                return chosen('auto: ' if backend is None else f'auto: timed the engines on this CPU ({machine}): '
                              f'{choice_line(choice)}: ', choice, backend, f' from cache {folder}')
            except (BackendError, OSError, ValueError) as exc:
                problem = str(exc)
        if problem is not None:
            log(f'auto: cache entry {folder} is corrupt ({problem}): rebuilding it')
        names = ' and '.join(engines)
        with contextlib.suppress(OSError):     # best effort: another process may rename or remove one meanwhile
            remove_entries(leftovers(folder.parent))
        log(f'auto: exporting {spec.weights} once for {names} f32 into {folder} (20-40 s for the shipped model, '
            '40-90 s for a COCO model on 2 cores; later runs load it from there) ...')
        began = time.perf_counter()
        try:
            build_entry(spec, cfg, key, folder, progress, problem is not None)
            choice, backend = recorded_choice(folder, machine, labels, open_engine)
            result = chosen(f'auto: exporting once to {folder} ({time.perf_counter() - began:.0f} s); '
                            f'{choice_line(choice)}: ', choice, backend)
        except (ExportError, BackendError, OSError, ValueError) as exc:     # OSError: e.g. an unwritable cache folder
            warn(f'auto: could not export for {names} ({exc}): using dygraph')
            result = 'dygraph', dygraph_instead(spec, cfg, f'could not export for {names}')
        if progress is not None:
            progress('done', STAGES['done'])
        return result


def dygraph_instead(spec: ModelSpec, cfg, why: str) -> DygraphBackend:
    """Dygraph for ``spec`` (``cached_backend``'s, on the CPU) where ``auto`` found no exported
    engine, its ``fallback`` saying ``why`` (several times slower: the service names it in /readyz and /metrics)."""
    return dygraph_backend(spec, cfg, f'auto: {why}: dygraph runs instead (several times slower)')
