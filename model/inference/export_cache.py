"""``--backend auto``: the fastest installed exported backend at full f32 accuracy, exported
once per checkpoint into a cache.

Order: ``openvino`` f32, else ``onnx`` (onnxruntime), else ``dygraph`` (also on a GPU, and
when the export fails, with the reason in one line). An entry lives in
``$SOLOV2_CACHE`` (default ``~/.cache/solov2-paddle``) under a name derived from a key:
the weights file's content hash, the config number, the ``--opt`` overrides, the backend,
the library versions and a hash of this package's source. It is built in a temporary
folder, verified against the dygraph model on a random input (``export.verify``), given a
``cache.json`` with the hashes of its files, and only then renamed into place; on load
the hashes are checked again, and an entry that fails the check or does not load is said
to be corrupt, deleted and rebuilt.
"""
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import config
import data
import model
from data.files import build_folder
from model.inference.backend import Backend, BackendError
from model.inference.export import ExportError, export, verify
from model.inference.exported import OnnxBackend
from model.inference.openvino_backend import OpenVinoBackend
from model.inference.predictor import Predictor

LOG = logging.getLogger(__name__)
CACHE_ENV = 'SOLOV2_CACHE'
MANIFEST = 'cache.json'
FORMAT = 1
_PACKAGES = {'openvino': ('openvino',), 'onnx': ('onnxruntime',)}


def cache_root() -> Path:
    """``$SOLOV2_CACHE``, else ``~/.cache/solov2-paddle``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'solov2-paddle')


def auto_kind() -> str:
    """The backend ``auto`` picks on the CPU: 'openvino', 'onnx' or 'dygraph'."""
    exporter = all(find_spec(name) is not None for name in ('paddle2onnx', 'onnx'))
    for kind, packages in _PACKAGES.items():
        if exporter and all(find_spec(name) is not None for name in packages):
            return kind
    return 'dygraph'


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _source_hash() -> str:
    """Hash of the Python source that export and inference run (``model``, ``config``, ``data``)."""
    digest = hashlib.sha256()
    for package in (config, data, model):
        folder = Path(package.__file__).parent
        for path in sorted(folder.rglob('*.py')):
            digest.update(f'{package.__name__}/{path.relative_to(folder)}'.encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return 'missing'


def cache_key(weights: str, number: int, overrides: Sequence[str], kind: str) -> dict:
    """Everything an entry depends on."""
    packages = ('paddlepaddle', 'paddle2onnx', 'onnx') + _PACKAGES[kind]
    return {'format': FORMAT, 'weights_sha256': file_sha256(Path(weights)), 'config': number,
            'overrides': list(overrides), 'backend': kind, 'precision': 'f32',
            'versions': {name: _version(name) for name in packages}, 'source_sha256': _source_hash()}


def entry_name(key: dict) -> str:
    """The entry folder name: config number and a hash of the key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return f'config{key["config"]}-{key["backend"]}-{digest}'


def _open(kind: str, folder: Path, threads: int, overrides: Sequence[str]) -> Backend:
    if kind == 'openvino':
        return OpenVinoBackend(str(folder), threads, 'f32', overrides)
    return OnnxBackend(str(folder), threads, overrides)


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


def build_entry(cfg, weights: str, key: dict, folder: Path, threads: int) -> None:
    """Export into a temporary folder beside ``folder``, verify against dygraph, write the
    manifest and rename it to ``folder`` (``data.files.build_folder``). Raises ExportError."""
    def build(tmp: Path) -> None:
        dygraph = Predictor(cfg, weights, 'cpu', sidecar=False)
        export(key['config'], cfg, weights, tmp, fmt='onnx', check=False, dygraph=dygraph)
        verify(dygraph, [_open(key['backend'], tmp, threads, key['overrides'])])
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({'key': key, 'files': files}, indent=2) + '\n')
    try:
        build_folder(folder, build)
    except OSError:                  # e.g. another process finished the same entry first
        if check_entry(folder, key) is not None:
            raise
    except BackendError as exc:
        raise ExportError(str(exc))


def cached_backend(number: int, cfg, weights: str, overrides: Sequence[str], threads: int = 0,
                   log: Optional[Callable[[str], None]] = None) -> Tuple[str, Backend]:
    """('openvino' | 'onnx' | 'dygraph', backend) for ``--backend auto`` on the CPU, exporting
    into the cache when needed (``cfg`` as ``config.sidecar.resolve_config`` gives it); says in
    one line what it used, through ``log`` (default: this module's logger, INFO)."""
    log = log or LOG.info
    kind = auto_kind()
    if kind == 'dygraph':
        log('auto: neither openvino nor onnxruntime (+ paddle2onnx) is installed: using dygraph')
        return kind, Predictor(cfg, weights, 'cpu', sidecar=False)
    key = cache_key(weights, number, overrides, kind)
    folder = cache_root() / entry_name(key)
    if folder.exists():
        problem = check_entry(folder, key)
        if problem is None:
            try:
                backend = _open(kind, folder, threads, overrides)
                log(f'auto: using {kind} f32 from cache {folder}')
                return kind, backend
            except BackendError as exc:
                problem = str(exc)
        log(f'auto: cache entry {folder} is corrupt ({problem}): rebuilding it')
    log(f'auto: exporting {weights} once for {kind} f32 into {folder} (usually 10-60 s; '
        'later runs load it from there) ...')
    began = time.perf_counter()
    try:
        shutil.rmtree(folder, ignore_errors=True)
        build_entry(cfg, weights, key, folder, threads)
    except (ExportError, OSError) as exc:     # OSError: e.g. a cache folder that cannot be written
        log(f'auto: could not export for {kind} ({exc}): using dygraph')
        return 'dygraph', Predictor(cfg, weights, 'cpu', sidecar=False)
    log(f'auto: exporting once to {folder} ({time.perf_counter() - began:.0f} s), using {kind} f32')
    return kind, _open(kind, folder, threads, overrides)



@dataclass(frozen=True)
class CacheEntry:
    """One folder of the export cache: its size in bytes, when it was written (seconds since
    the epoch) and its key (None when its manifest cannot be read)."""
    folder: Path
    size: int
    written: float
    key: Optional[dict]

    def stale(self, current_source: str) -> bool:
        """True when no run of this code and these libraries can use the entry again: an
        unreadable manifest, another source hash or another library version."""
        if self.key is None:
            return True
        versions = self.key.get('versions', {})
        return (self.key.get('source_sha256') != current_source
                or any(_version(name) != found for name, found in versions.items()))


def cache_entries(root: Optional[Path] = None) -> List[CacheEntry]:
    """The entries under ``root`` (default ``cache_root()``), oldest first; [] when there is
    no cache. Unfinished temporary folders (a name starting with '.') are included."""
    root = root or cache_root()
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            key = json.loads((folder / MANIFEST).read_text())['key']
        except (OSError, ValueError, KeyError, TypeError):
            key = None
        files = [p for p in folder.rglob('*') if p.is_file()]
        entries.append(CacheEntry(folder, sum(p.stat().st_size for p in files), folder.stat().st_mtime, key))
    return sorted(entries, key=lambda entry: entry.written)


def current_source_hash() -> str:
    """The source hash this code writes into its keys (for ``CacheEntry.stale``)."""
    return _source_hash()


def remove_entries(entries: Sequence[CacheEntry]) -> int:
    """Delete the entries' folders; the bytes freed."""
    freed = 0
    for entry in entries:
        shutil.rmtree(entry.folder, ignore_errors=True)
        freed += entry.size
    return freed
