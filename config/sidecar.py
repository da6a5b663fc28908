"""The checkpoint sidecar: ``NAME.json`` beside ``NAME.pdparams``, recording what rebuilds
the model (config number, class names, source)."""
import json
from pathlib import Path
from typing import Optional


def sidecar_path(weights: str) -> Path:
    """``x/name.pdparams`` -> ``x/name.json``."""
    return Path(weights).with_suffix('.json')


def read_sidecar(weights: str) -> Optional[dict]:
    """The sidecar of ``weights`` or None when there is none."""
    side = sidecar_path(weights)
    return json.loads(side.read_text()) if side.is_file() else None
