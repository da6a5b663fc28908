"""Where the toolkit keeps what it makes once and reuses: ``$SOLOV2_CACHE``, else
``~/.cache/solov2-paddle``. The exports of ``--backend auto`` (``model.inference.export_cache``)
are folders at its top; the converted published checkpoints (``convert.zoo``) live in its
``weights/`` folder."""
import os
from pathlib import Path
from typing import Optional

CACHE_ENV = 'SOLOV2_CACHE'
WEIGHTS_FOLDER = 'weights'      # convert.zoo's converted checkpoints, not an export entry


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """``cache_dir`` when given, else ``$SOLOV2_CACHE``, else ``~/.cache/solov2-paddle``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'solov2-paddle')
