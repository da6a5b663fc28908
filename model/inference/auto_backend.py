"""``backend='auto'``: an installed exported engine (OpenVINO f32 or onnxruntime) at full f32
accuracy, exported once per checkpoint into a cache; dygraph with neither, on a GPU, or when
the export fails (one WARNING line; its ``fallback`` says why). One ONNX export serves both engines: each is verified
against dygraph (``export.verify``), then timed (``time_engines``); the faster is recorded in
the entry's ``cache.json`` and later runs open it without timing. An entry (``core.cache.entry_folder``:
keyed by content, config, overrides, versions and source hash, not the machine) is built in a
temporary folder and renamed into place (an export first removes the temporaries that
stopped processes left, ``core.cache.leftovers``); its hashes are checked on load, and a corrupt
entry is replaced. docs/deployment.md#auto-and-the-export-cache says more.
"""
import contextlib
import json
import logging
import statistics
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from solov2.core.cache import (
    MANIFEST,
    compiled_cache,
    entry_folder,
    leftovers,
    package_version,
    remove_entries,
    source_hash,
)
from solov2.data.files import build_folder, file_sha256
from solov2.data.transforms import padded_size, resized_hw
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.backend_factory import ModelSpec, Progress, exported_backend
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.export import ExportError, export, verify

LOG = logging.getLogger(__name__)
FORMAT = 4                # 4: one entry for both engines and the engine timed the faster
_PACKAGES = {'openvino': ('openvino',), 'onnx': ('onnxruntime',)}
TIMING_WARMUP = 2          # untimed runs first (first-call allocations, lazy kernel set-up)
TIMING_ROUNDS = 5          # each runs every engine once
# The stages of a first export, in order, and roughly the share of its time gone when each
# begins (shapes_r18 with openvino and onnx on 2 cores: the ONNX export took 78% of 29 s,
# verifying 11%, timing 10%); ``progress(stage, fraction)`` hears them.
STAGES = {'load': 0.0, 'export': 0.02, 'verify': 0.8, 'time': 0.9, 'done': 1.0}


def installed_engines() -> List[str]:
    """The f32 engines ``auto`` chooses from on the CPU ('openvino', 'onnx'): those installed,
    when the ONNX exporter (paddle2onnx, onnx) is too; [] means dygraph."""
    if not all(find_spec(name) is not None for name in ('paddle2onnx', 'onnx')):
        return []
    return [kind for kind, packages in _PACKAGES.items() if all(find_spec(name) is not None for name in packages)]


def cache_key(weights: str, number: int, overrides: Sequence[str]) -> dict:
    """Everything an entry depends on (the versions of both engines, not which one wins)."""
    packages = ('paddlepaddle', 'paddle2onnx', 'onnx') + sum(_PACKAGES.values(), ())
    return {'format': FORMAT, 'weights_sha256': file_sha256(Path(weights)), 'config': number,
            'overrides': list(overrides), 'precision': 'f32',
            'versions': {name: package_version(name) for name in packages}, 'source_sha256': source_hash()}


def check_entry(folder: Path, key: dict, engines: Sequence[str] = tuple(_PACKAGES)) -> Optional[str]:
    """None when ``folder`` holds a complete entry for ``key`` whose recorded engines are
    among ``engines``, else what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest['key'] != key:
            return f'{MANIFEST} records another key'
        if manifest['engine'] not in engines:
            return f'{MANIFEST} records an engine that is not installed ({manifest["engine"]})'
        for name, digest in manifest['files'].items():
            path = folder / name
            if not path.is_file() or file_sha256(path) != digest:
                return f'{name} is missing or changed'
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f'{MANIFEST} unreadable ({type(exc).__name__})'
    return None


def timing_batches(cfg, rounds: int = TIMING_ROUNDS, seed: int = 0) -> List[np.ndarray]:
    """``rounds + 1`` random float32 inputs [1, 3, H, W]: first the size of a 4:3 landscape
    picture at the config's test size (``test_short``, ``test_max``), padded to 32 as
    ``preprocess`` pads (the warm-up), then ``rounds`` sizes near it, each different (one or
    two more multiples of 32 on a side)."""
    (height, width), _ = resized_hw(480, 640, cfg.test_short, cfg.test_max)
    base = (padded_size(height, 32), padded_size(width, 32))
    steps = [(0, 0)] + [(rows, cols) for rows in range(3) for cols in range(3) if rows + cols][:rounds]
    state = np.random.RandomState(seed)
    return [state.standard_normal((1, 3, base[0] + 32 * rows, base[1] + 32 * cols)).astype(np.float32)
            for rows, cols in steps]


def time_engines(backends: Dict[str, Backend], batches: Sequence[np.ndarray],
                 clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """{engine: milliseconds of ``run(batches[i])`` in round i}: ``TIMING_WARMUP`` untimed runs
    of ``batches[0]`` each, then one round per later batch that runs every engine once on it,
    back to back, the order reversed every other round (a busy moment or a slow start hits
    them alike)."""
    for backend in backends.values():
        for _ in range(TIMING_WARMUP):
            backend.run(batches[0])
    times: Dict[str, List[float]] = {kind: [] for kind in backends}
    kinds = list(backends)
    for index, batch in enumerate(batches[1:]):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            began = clock()
            backends[kind].run(batch)
            times[kind].append(1000 * (clock() - began))
    return times


def measured_choice(backends: Dict[str, Backend]) -> dict:
    """What an entry records: each engine's median milliseconds over ``time_engines``'s rounds
    (``timings_ms``: a busy moment in one round changes none), the engine with the lowest (the
    first, OpenVINO, on a tie; an only one untimed) and the input (``timing_input``)."""
    batches = timing_batches(next(iter(backends.values())).cfg)       # the config with the overrides
    shape = list(batches[0].shape)
    if len(backends) == 1:
        return {'engine': next(iter(backends)), 'timings_ms': {}, 'timing_input': shape}
    medians = {kind: statistics.median(ms) for kind, ms in time_engines(backends, batches).items()}
    return {'engine': min(medians, key=lambda kind: medians[kind]), 'timings_ms': medians, 'timing_input': shape}


def choice_line(choice: dict) -> str:
    """Why an engine was chosen, for the one line ``auto`` says."""
    timings = choice['timings_ms']
    if len(timings) < 2:
        return f'{choice["engine"]} is the only f32 engine installed'
    height, width = choice['timing_input'][2:]
    return (', '.join(f'{kind} {ms:.0f} ms' for kind, ms in timings.items())
            + f' per picture of a new size near {height}x{width}')


def build_entry(cfg, weights: str, key: dict, folder: Path, threads: int, engines: Sequence[str],
                progress: Optional[Progress] = None, replace: bool = False) -> None:
    """Export into a temporary folder beside ``folder``, verify each of ``engines`` against
    dygraph, time them (``measured_choice``), write the manifest and rename it to ``folder``
    (``data.files.build_folder``; ``replace``: an entry there is replaced). When another process
    put an entry for ``key`` there first, that one stays. ``progress(stage, fraction)`` is called
    as each of ``STAGES`` but 'done' begins. Raises ExportError."""
    say = progress or (lambda stage, fraction: None)

    def build(tmp: Path) -> None:
        say('load', STAGES['load'])
        dygraph = DygraphBackend(cfg, weights, 'cpu', sidecar=False, threads=threads)
        say('export', STAGES['export'])
        export(key['config'], cfg, weights, tmp, fmt='onnx', check=False, dygraph=dygraph)
        say('verify', STAGES['verify'])
        backends = {kind: exported_backend(ModelSpec(backend=kind, model_dir=str(tmp), threads=threads,
                                                     overrides=key['overrides']), compiled_cache(folder.parent))
                    for kind in engines}
        verify(dygraph, list(backends.values()))
        if len(backends) > 1:
            say('time', STAGES['time'])
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {'key': key, 'files': files, **measured_choice(backends)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + '\n')
    try:
        build_folder(folder, build, replace=replace)
    except OSError:                  # another process renamed its entry into place first
        if check_entry(folder, key) is not None:
            raise
    except BackendError as exc:
        raise ExportError(*exc.args)


def cached_backend(number: int, cfg, weights: str, overrides: Sequence[str], threads: int = 0,
                   log: Optional[Callable[[str], None]] = None, cache_dir: Optional[str] = None,
                   progress: Optional[Progress] = None) -> Tuple[str, Backend]:
    """('openvino' | 'onnx' | 'dygraph', backend) for ``backend='auto'`` on the CPU with ``threads``
    threads, exporting into the cache (``core.cache.entry_folder``) when needed (``cfg`` as
    ``config.sidecar.resolve_config`` gives it); says in one line what it used, through ``log``
    (default: this module's logger, INFO; a failed export, which falls back to dygraph, at WARNING
    with its reason, so that a program that configures no logging shows it too). While it exports,
    ``progress(stage, fraction)`` hears each of ``STAGES`` begin, 'done' (1.0) last, also when
    the export fails; it is not called when the entry is in the cache or no engine is installed."""
    log, warn = log or LOG.info, log or LOG.warning
    engines = installed_engines()
    if not engines:
        log('auto: neither openvino nor onnxruntime (+ paddle2onnx) is installed: using dygraph')
        return 'dygraph', dygraph_instead(cfg, weights, threads, 'neither openvino nor onnxruntime is installed')
    key = cache_key(weights, number, overrides)
    folder = entry_folder(key, cache_dir)

    def open_engine(kind: str) -> Backend:
        spec = ModelSpec(backend=kind, model_dir=str(folder), threads=threads, overrides=overrides)
        return exported_backend(spec, compiled_cache(folder.parent))
    problem = check_entry(folder, key, engines) if folder.exists() else None
    if folder.exists() and problem is None:
        try:
            kind = json.loads((folder / MANIFEST).read_text())['engine']
            backend = open_engine(kind)
            log(f'auto: using {kind} f32 from cache {folder}')
            return kind, backend
        except BackendError as exc:
            problem = str(exc)
    if problem is not None:
        log(f'auto: cache entry {folder} is corrupt ({problem}): rebuilding it')
    names = ' and '.join(engines)
    with contextlib.suppress(OSError):     # best effort: another process may rename or remove one meanwhile
        remove_entries(leftovers(folder.parent))
    log(f'auto: exporting {weights} once for {names} f32 into {folder} (usually 10-60 s; '
        'later runs load it from there) ...')
    began = time.perf_counter()
    try:
        build_entry(cfg, weights, key, folder, threads, engines, progress, replace=problem is not None)
        choice = json.loads((folder / MANIFEST).read_text())
    except (ExportError, OSError, ValueError) as exc:     # OSError: e.g. a cache folder that cannot be written
        warn(f'auto: could not export for {names} ({exc}): using dygraph')
        chosen = 'dygraph', dygraph_instead(cfg, weights, threads, f'could not export for {names}')
    else:
        kind = choice['engine']
        log(f'auto: exporting once to {folder} ({time.perf_counter() - began:.0f} s); {choice_line(choice)}: '
            f'using {kind} f32')
        chosen = kind, open_engine(kind)
    if progress is not None:
        progress('done', STAGES['done'])
    return chosen


def dygraph_instead(cfg, weights: str, threads: int, why: str) -> DygraphBackend:
    """Dygraph on the CPU where ``auto`` found no exported engine, its ``fallback`` saying ``why``
    (several times slower: the service names it in /readyz and /metrics)."""
    backend = DygraphBackend(cfg, weights, 'cpu', sidecar=False, threads=threads)
    backend.fallback = f'auto: {why}: dygraph runs instead (several times slower)'
    return backend
