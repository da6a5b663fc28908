"""Where the toolkit's files are: the shipped model and sample pictures (in the package, so one
path works from any folder) and the cache (its layout: ``core.cache``); how a folder is made
complete or absent (``build_folder``); a file's digest (``file_sha256``).
"""
import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator, Optional, Union

PACKAGE_DIR = Path(__file__).resolve().parents[1]     # its folders: installed, the package's; a checkout, its own
SHIPPED_WEIGHTS = str(PACKAGE_DIR / 'weights' / 'shapes_r18.pdparams')   # config 9, 4 shape classes
SAMPLE_IMAGES = str(PACKAGE_DIR / 'images')

CACHE_ENV = 'SOLOV2_CACHE'


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """``cache_dir`` when given, else ``$SOLOV2_CACHE``, else ``~/.cache/solov2-paddle``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'solov2-paddle')


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks; OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def temporary_beside(path: Union[str, os.PathLike]) -> Path:
    """A hidden name in ``path``'s folder that no user file has: ``.NAME.<pid>.<random>.tmp``
    (the one temporary naming of the package, for files and folders; ``core.cache`` reads it)."""
    path = Path(path)
    return path.with_name(f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')


def previous_folder(folder: Union[str, os.PathLike]) -> Path:
    """``NAME.old``: where ``build_folder(replace=True)`` keeps the folder it replaces until the
    new one is in place (a reader falls back to it after a crash between the two renames)."""
    folder = Path(folder)
    return folder.with_name(folder.name + '.old')


@contextlib.contextmanager
def build_folder(folder: Union[str, os.PathLike], replace: bool = False) -> Iterator[Path]:
    """Make ``folder`` complete or not at all: the block fills a hidden folder beside it
    (``temporary_beside``, yielded), renamed to ``folder`` when the block ends without an error
    (on one, removed). An existing ``folder`` is a FileExistsError, or with ``replace`` moves to
    ``previous_folder`` until the new one is in place (another builder's that got there first is
    kept: OSError). The one folder mechanism: checkpoints, exports, the cache's entries (``core.cache``)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(folder)
    tmp.mkdir()
    try:
        yield tmp
        old = previous_folder(folder)
        if folder.exists():           # looked at once: another builder may rename its folder there any moment
            if not replace:
                raise FileExistsError(errno.EEXIST, 'the folder exists already', str(folder))
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)            # OSError (not empty) when another builder's folder got there first
        if replace:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
