"""Where the toolkit's files are: the shipped model and sample pictures (in the package, so one
path works from any folder) and the cache (its layout: ``core.cache``).
"""
import os
from pathlib import Path
from typing import Optional

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def package_folder(name: str) -> Path:
    """The package's folder ``name`` ('model', 'weights', ...): in the package when installed,
    its link in a checkout, the checkout's top-level folder where the links are plain files."""
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name


SHIPPED_WEIGHTS = str(package_folder('weights') / 'shapes_r18.pdparams')   # config 9, 4 shape classes
SAMPLE_IMAGES = str(package_folder('images'))

CACHE_ENV = 'SOLOV2_CACHE'


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """``cache_dir`` when given, else ``$SOLOV2_CACHE``, else ``~/.cache/solov2-paddle``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'solov2-paddle')
