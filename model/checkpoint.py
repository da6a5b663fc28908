"""The project's checkpoint: ``NAME.pdparams`` (the model's state_dict) plus a
sidecar ``NAME.json`` (config number, classes, source) so a checkpoint of the
wrong shape is refused with one clear line."""
import json
import os
import pickle
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import paddle

from config.sidecar import sidecar_path


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or does not fit the model."""


def load_paddle_params(path: str) -> Dict[str, np.ndarray]:
    """Read a Paddle ``.pdparams`` (dygraph ``paddle.save`` or static ``fluid.save``,
    both pickles of numpy arrays) -> {name: array}, bookkeeping entries dropped."""
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file not found: {path}')
    try:
        with open(path, 'rb') as f:
            raw = pickle.load(f, encoding='latin1')
    except Exception as exc:  # any unpickling failure means "not a .pdparams"
        raise CheckpointError(f'{path} is not a Paddle .pdparams file ({exc.__class__.__name__})')
    if not isinstance(raw, dict):
        raise CheckpointError(f'{path} does not hold a dict of parameters')
    return {k: np.asarray(v) for k, v in raw.items() if isinstance(v, np.ndarray)}


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + '.tmp')
    write(str(tmp))
    os.replace(tmp, path)


def save_checkpoint(state: Mapping[str, np.ndarray], weights: str, config_number: int,
                    class_names, source: str, extra: Optional[Mapping] = None) -> None:
    """Write ``weights`` (.pdparams) and its sidecar atomically; ``extra`` adds
    sidecar entries (e.g. ``{"part": "backbone"}``) but may not replace the core ones."""
    meta = {'config': config_number, 'num_classes': len(class_names),
            'class_names': list(class_names), 'source': source}
    clash = sorted(set(extra or {}) & set(meta))
    if clash:
        raise ValueError(f'extra sidecar entries may not replace {clash}')
    meta.update(extra or {})
    path = Path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v.numpy() if hasattr(v, 'numpy') else v) for k, v in state.items()}
    _atomic(path, lambda p: paddle.save(arrays, p))
    _atomic(sidecar_path(weights), lambda p: Path(p).write_text(json.dumps(meta, indent=1)))


def load_weights(model: paddle.nn.Layer, weights: str) -> None:
    """Copy a .pdparams into ``model``; refuse missing, unexpected or mis-shaped keys."""
    params = load_paddle_params(weights)
    own = model.state_dict()
    missing = [k for k in own if k not in params]
    unexpected = [k for k in params if k not in own]
    wrong = [f'{k} {list(params[k].shape)} vs model {list(own[k].shape)}'
             for k in own if k in params and tuple(params[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing (e.g. {missing[0]})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected (e.g. {unexpected[0]})')
        if wrong:
            parts.append(f'{len(wrong)} of another shape (e.g. {wrong[0]})')
        raise CheckpointError(f'{weights} does not fit this config: ' + '; '.join(parts))
    model.set_state_dict({k: params[k] for k in own})
