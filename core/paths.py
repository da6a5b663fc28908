"""Where the toolkit's files are: the shipped model and sample pictures (in the package, so one
path works from any folder) and the cache (its layout: ``core.cache``).
"""
import os
import secrets
from pathlib import Path
from typing import Optional, Union

PACKAGE_DIR = Path(__file__).resolve().parents[1]     # its folders: installed, the package's; a checkout, its own
SHIPPED_WEIGHTS = str(PACKAGE_DIR / 'weights' / 'shapes_r18.pdparams')   # config 9, 4 shape classes
SAMPLE_IMAGES = str(PACKAGE_DIR / 'images')

CACHE_ENV = 'SOLOV2_CACHE'


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """``cache_dir`` when given, else ``$SOLOV2_CACHE``, else ``~/.cache/solov2-paddle``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'solov2-paddle')


def temporary_beside(path: Union[str, os.PathLike]) -> Path:
    """A hidden name in ``path``'s folder that no user file has: ``.NAME.<pid>.<random>.tmp``
    (the one temporary naming of the package, for files and folders; ``core.cache`` reads it)."""
    path = Path(path)
    return path.with_name(f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
