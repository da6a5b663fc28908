"""The cache (``paths.cache_root``): where each kind of entry lives, what it holds and whether a
run can use it again (tools/cache.py lists and prunes it).

An export of ``backend='auto'`` (``entry_folder``) and OpenVINO's compiled models
(``compiled_cache``) have a ``cache.json`` whose ``key`` records the packages' ``versions`` and
``source_sha256``: stale when either changed. A converted published checkpoint
(``published_path``) is current at its name's place, else stale. A hidden name
(``.NAME.<pid>.<random>.tmp``) is ``building`` while its process runs, else unfinished (``leftovers``).
A TensorRT engine folder (``built_once``, ``tensorrt-HASH``) has a manifest whose key records what its
engines depend on: the runtime's and TensorRT's wheels (``versions``), the model files (their bytes' SHA-256
and their size and time, ``files``, ``file_record``), TensorRT's version as the runtime loads it and the GPU
(both also in its name): stale when a version or a model file's bytes changed, never with the toolkit's source.
"""
import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from solov2.core.paths import CACHE_ENV, PACKAGE_DIR, build_folder, cache_root, file_sha256

MANIFEST = 'cache.json'
WEIGHTS_FOLDER = 'weights'              # the converted published checkpoints, not an export entry
COMPILED = 'openvino-compiled'          # OpenVINO's compiled models
CacheDir = Optional[Union[str, os.PathLike]]
HINT = f'point {CACHE_ENV} at another folder'       # the fix for a cache that cannot be written
STALE_BUILD_S = 3600      # a temporary untouched this long, its process gone, is a leftover (``leftovers``)


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """Hash of the Python source that export and inference run, read once per process."""
    digest = hashlib.sha256()
    for package in ('config', 'data', 'model'):
        folder = PACKAGE_DIR / package
        for path in sorted(folder.rglob('*.py')):
            digest.update(f'solov2.{package}/{path.relative_to(folder)}'.encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def package_version(package: str) -> str:
    """The installed version of ``package``, 'missing' when it is not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return 'missing'


def entry_folder(key: dict, cache_dir: CacheDir = None) -> Path:
    """The folder of the export entry for ``key`` (``auto_backend.cache_key``), named after its hash."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root(cache_dir) / f'config{key["config"]}-auto-{digest}'


def weights_folder(cache_dir: CacheDir = None) -> Path:
    """The folder of the checkpoints converted from published ones."""
    return cache_root(cache_dir) / WEIGHTS_FOLDER


def published_path(name: str, cache_dir: CacheDir = None) -> Path:
    """Where the checkpoint converted from the published ``name`` ('<publisher>/<model>') lives."""
    return weights_folder(cache_dir) / f'{name}.pdparams'


def compiled_cache(cache_dir: CacheDir = None) -> Optional[str]:
    """The folder where OpenVINO keeps the models it compiles, made with its manifest; None when unwritable."""
    folder = cache_root(cache_dir) / COMPILED
    key = {'versions': {'openvino': package_version('openvino')}, 'source_sha256': source_hash()}
    manifest = json.dumps({'key': key, 'what': 'openvino compiled models'}, indent=2) + '\n'
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / MANIFEST).is_file() or (folder / MANIFEST).read_text() != manifest:
            (folder / MANIFEST).write_text(manifest)
    except OSError:
        return None
    return str(folder)


def cache_of(compiled: Optional[str]) -> Optional[str]:
    """The cache folder holding ``compiled`` (``compiled_cache``'s folder; None: None), where the entries
    beside it go (TensorRT's engines, ``built_once``)."""
    return compiled and str(Path(compiled).parent)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One holder at a time, across the machine's processes and threads, of the lock file ``path`` (made when
    missing; ``flock`` on its descriptor, let go when it closes: also when its process dies); none off POSIX. The
    file locked is the one at ``path`` once held: one its holder unlinked while this waited (``built_once`` after a
    failed build) is let go and the one there now locked, so a waiter and a newcomer never hold two files at once."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    while True:
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except BaseException:
            os.close(descriptor)
            raise
        if _names(descriptor, path):
            break
        os.close(descriptor)     # its holder unlinked it (a failed build; a prune): lock the file there now
    try:
        yield
    finally:
        os.close(descriptor)


def _names(descriptor: int, path: Path) -> bool:
    """Whether ``path`` is still the file open as ``descriptor`` (not unlinked, nor replaced by another)."""
    try:
        found, held = os.stat(path), os.fstat(descriptor)
    except FileNotFoundError:
        return False
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def lock_file(folder: Path) -> Path:
    """The lock of the cache entry ``folder``: a hidden file beside it (``cache_entries`` lists folders only)."""
    return folder.with_name(f'.{folder.name}.lock')


@contextlib.contextmanager
def entry_lock(folder: Path) -> Iterator[None]:
    """The cache entry ``folder``'s lock (``lock_file``) held for the block: one process or thread at a time
    builds it or records into it, another waits and then finds what the first wrote. Where the cache cannot
    be written (a read-only image), the block runs without it: nothing can be built there either. A block that
    leaves no entry leaves no lock (as ``built_once``); a process ended while building leaves its lock to
    ``remove_entries`` with its temporary."""
    with contextlib.ExitStack() as held:
        with contextlib.suppress(OSError):
            folder.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(_locked(lock_file(folder)))
        try:
            yield
        finally:
            if not (folder / MANIFEST).is_file():
                with contextlib.suppress(OSError):
                    lock_file(folder).unlink(missing_ok=True)


def file_stamp(path: Union[str, os.PathLike]) -> Optional[List[int]]:
    """[size, modification time in ns] of the file ``path``: what a rewrite changes; None when it is gone."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return [found.st_size, found.st_mtime_ns]


def file_record(path: Union[str, os.PathLike]) -> dict:
    """What an entry records of a file it was made from: its bytes' SHA-256 (``sha256``, what ``_stale`` judges)
    and ``file_stamp`` (``stamp``: while it is the same the bytes are not read again)."""
    stamp = file_stamp(path)          # before the bytes are read: a rewrite meanwhile changes it, not the record
    return {'sha256': file_sha256(path), 'stamp': stamp}


def _file_changed(path: str, record) -> bool:
    """Whether the file ``path`` no longer holds the bytes ``record`` (``file_record``) was taken of: gone, or
    of another SHA-256 (read only when its stamp changed: a model exported again with the same bytes is the
    same); a bare stamp (an entry of an earlier version) by its stamp."""
    stamp = file_stamp(path)
    if not isinstance(record, dict):
        return stamp != record
    if stamp is None or stamp == record.get('stamp'):
        return stamp is None
    try:
        return file_sha256(path) != record.get('sha256')
    except OSError:
        return True


@dataclass(frozen=True)
class EngineFiles:
    """The files a runtime's whole build of TensorRT engines leaves in its folder: at least one named like the
    glob ``engines``, each with a file of each suffix of ``companions`` beside it (onnxruntime's ``.engine`` and
    its ``.profile``, without which it builds the engine again on the next open)."""
    engines: str
    companions: Tuple[str, ...] = ()

    def built(self, folder: Path) -> bool:
        """Whether ``folder`` (and its subfolders) holds a whole build."""
        found = [path for path in folder.rglob(self.engines) if path.is_file()]
        return bool(found) and all(path.with_suffix(suffix).is_file() for path in found for suffix in self.companions)

    def __str__(self) -> str:
        return ' with '.join([self.engines, *(f'its {suffix}' for suffix in self.companions)])


class _NothingBuilt(Exception):
    """The block of ``built_once`` ended without writing what the entry holds: no entry is made."""


@contextlib.contextmanager
def built_once(folder: Path, key: dict, what: str, holds: EngineFiles) -> Iterator[Path]:
    """``folder``, an entry of the cache, for the block: itself once its manifest is there; else, under the
    entry's own lock (``lock_file``: another builder of it waits, then finds it built), a temporary folder
    beside it (``core.paths.build_folder``) that the block fills. That is moved into place whole with the
    manifest (``key``: what makes it stale, ``_stale``; ``what``: its line in tools/cache.py) only when the
    block ends without an error and the folder then holds a whole build (``holds``, ``EngineFiles.built``);
    otherwise nothing is left, its lock neither. For what a runtime builds on opening a model (TensorRT's
    engines)."""
    if (folder / MANIFEST).is_file():
        yield folder
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lock_file(folder)):
        if (folder / MANIFEST).is_file():
            yield folder
            return
        try:
            with contextlib.suppress(_NothingBuilt), build_folder(folder, replace=True) as tmp:
                yield tmp                    # one there without its manifest: not a whole build (replaced)
                if not holds.built(tmp):
                    raise _NothingBuilt
                (tmp / MANIFEST).write_text(json.dumps({'key': key, 'what': what}, indent=2) + '\n')
        finally:       # no entry, no lock left (one waiting on it builds in a temporary of its own, as may a newcomer)
            if not (folder / MANIFEST).is_file():
                lock_file(folder).unlink(missing_ok=True)


@dataclass(frozen=True)
class CacheEntry:
    """One entry; its ``state``: 'current', 'stale', 'building' or 'unfinished'."""
    path: Path
    size: int
    written: float
    what: str
    state: str


def _builder(path: Path) -> Optional[int]:
    """The process id in the temporary name ``path`` (``.NAME.<pid>.<random>.tmp``); None: none."""
    try:
        return int(path.name.split('.')[-3])
    except (IndexError, ValueError):
        return None


def _built_by(path: Path) -> Path:
    """The entry the temporary ``path`` (``.NAME.<pid>.<random>.tmp``) builds: NAME beside it; else ``path``."""
    parts = path.name.split('.')
    return path.with_name('.'.join(parts[1:-3])) if _builder(path) is not None and parts[0] == '' else path


def _hidden_state(path: Path) -> str:
    """'building' when the process named in ``path`` runs (or off POSIX), else 'unfinished'."""
    pid = _builder(path)
    if pid is None:
        return 'unfinished'
    if os.name != 'posix':
        return 'building'
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 'unfinished'
    except OSError:             # it runs, as another user
        pass
    return 'building'


def _stale(key: dict) -> bool:
    """Whether what an entry was made from changed: the toolkit's source (where its key records it), a
    package's version (``versions``), a file's bytes (``files``, ``file_record``)."""
    return ('source_sha256' in key and key['source_sha256'] != source_hash()
            or any(package_version(name) != found for name, found in key.get('versions', {}).items())
            or any(_file_changed(path, record) for path, record in key.get('files', {}).items()))


def _folder_entry(folder: Path) -> CacheEntry:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        key = manifest['key']
        stale = _stale(key)
        engines = '/'.join(sorted({choice['engine'] for choice in manifest.get('choices', {}).values()})) or '-'
        what = manifest.get('what') or f'config {key.get("config", "?")} {engines}'      # auto's: the engines chosen
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        stale, what = True, '-'
    size = sum(p.stat().st_size for p in folder.rglob('*') if p.is_file())
    state = _hidden_state(folder) if folder.name.startswith('.') else 'stale' if stale else 'current'
    return CacheEntry(folder, size, folder.stat().st_mtime, what, state)


def _weights_entry(path: Path, root: Path) -> CacheEntry:
    side = path.with_suffix('.json') if path.suffix == '.pdparams' else None
    try:
        name = json.loads(side.read_text())['published']['name'] if side else None
    except (OSError, ValueError, KeyError, TypeError):
        name = None
    size = path.stat().st_size + (side.stat().st_size if side and side.is_file() else 0)
    current = isinstance(name, str) and published_path(name, root) == path
    state = _hidden_state(path) if path.name.startswith('.') else 'current' if current else 'stale'
    return CacheEntry(path, size, path.stat().st_mtime, name if isinstance(name, str) else '-', state)


def cache_entries(cache_dir: Optional[str] = None) -> List[CacheEntry]:
    """Every entry of the cache: the converted checkpoints by path, then the folders oldest first."""
    root = cache_root(cache_dir)
    weights = weights_folder(root)
    files = sorted(p for p in weights.rglob('*') if p.is_file()) if weights.is_dir() else []
    checkpoints = [_weights_entry(p, root) for p in files if not (
        p.suffix == '.json' and p.with_suffix('.pdparams').is_file() and not p.name.startswith('.'))]
    folders = [p for p in root.iterdir() if p.is_dir() and p.name != WEIGHTS_FOLDER] if root.is_dir() else []
    return checkpoints + sorted(map(_folder_entry, folders), key=lambda entry: entry.written)


def leftovers(cache_dir: CacheDir = None, mine: bool = False) -> List[CacheEntry]:
    """The temporaries no process will finish: 'unfinished' ones untouched for ``STALE_BUILD_S`` (another
    machine's builder looks gone from here), and with ``mine`` this process's own (it is about to end)."""
    oldest = time.time() - STALE_BUILD_S
    return [entry for entry in cache_entries(cache_dir) if entry.state == 'unfinished' and entry.written < oldest
            or mine and entry.state == 'building' and _builder(entry.path) == os.getpid()]


def remove_entries(entries: Sequence[CacheEntry]) -> int:
    """Delete the entries (a checkpoint with its sidecar); the bytes freed."""
    for entry in entries:
        if entry.path.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
            lock_file(entry.path).unlink(missing_ok=True)
            if _built_by(entry.path) != entry.path and not (_built_by(entry.path) / MANIFEST).is_file():
                lock_file(_built_by(entry.path)).unlink(missing_ok=True)      # what a builder ended meanwhile held
        else:
            entry.path.unlink(missing_ok=True)
            if entry.path.suffix == '.pdparams':
                entry.path.with_suffix('.json').unlink(missing_ok=True)
    return sum(entry.size for entry in entries)
