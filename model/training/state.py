"""Training checkpoints: a folder ``<run>/<tag>/`` holding ``model.pdparams`` (+ its
``model.json`` sidecar), ``optimizer.pdopt``, optional ``ema.pdparams`` and
``state.json``. A checkpoint is built in a hidden folder beside ``<tag>`` and swapped in by
renames (``core.paths.build_folder``), so an interrupted save never leaves a half-written
``<tag>``."""
import json
from pathlib import Path
from typing import Dict

import numpy as np
import paddle

from solov2.core.errors import param
from solov2.core.paths import build_folder, previous_folder
from solov2.model.checkpoint import CheckpointError, assign_params, check_fit, load_paddle_params, save_checkpoint

STATE_FILE = 'state.json'


def _optimizer_state(model: paddle.nn.Layer, optimizer) -> Dict[str, np.ndarray]:
    """Optimizer accumulators keyed by structured parameter names, so they load into a
    model whose Paddle-generated parameter names differ (another process or build)."""
    prefixes = {p.name: n for n, p in model.named_parameters()}
    out = {}
    for key, value in optimizer.state_dict().items():
        owner = max((p for p in prefixes if key.startswith(p + '_')), key=len, default=None)
        if owner is not None and hasattr(value, 'numpy'):
            out[prefixes[owner] + '@' + key[len(owner):]] = value.numpy()
    return out


def save_training_state(run_dir: str, tag: str, model: paddle.nn.Layer, optimizer, state: dict,
                        config_number: int, cfg, ema=None) -> Path:
    """Write ``run_dir/tag`` atomically and return its path; CheckpointError (nothing
    written) when a weight is NaN or infinite, so a healthy checkpoint is never replaced
    by a poisoned one. The weights' sidecars record config ``config_number``, the
    settings of ``cfg`` that differ from it and the model the run started from
    (``"start_weights"``, from ``state``) if any."""
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    poisoned = [k for k, v in weights.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
    if poisoned:
        raise CheckpointError(f'refused to save {tag}: {len(poisoned)} of {len(weights)} weight tensors are not '
                              f'finite (e.g. {poisoned[0]}); the previous {run_dir}/{tag} is kept')

    extra = {'start_weights': state['start_weights']} if state.get('start_weights') else None

    with build_folder(Path(run_dir) / tag, replace=True) as folder:
        save_checkpoint(weights, str(folder / 'model.pdparams'), config_number, cfg,
                        source=f'train.py {tag} iteration {state.get("iteration")}', extra=extra)
        paddle.save(_optimizer_state(model, optimizer), str(folder / 'optimizer.pdopt'))
        if ema is not None:
            save_checkpoint(ema.state_dict(), str(folder / 'ema.pdparams'), config_number, cfg,
                            source=f'train.py {tag} EMA', extra=extra)
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1))
    return Path(run_dir) / tag


def find_checkpoint(path: str) -> Path:
    """A checkpoint folder (falls back to ``<tag>.old``, ``previous_folder``, left by an interrupted swap)."""
    folder = Path(path)
    if folder.is_file():
        if (folder.parent / STATE_FILE).is_file():
            raise CheckpointError(f'{path} is a model file: resume from its checkpoint folder, ',
                                  param('resume', folder.parent))
        raise CheckpointError(f'{path} is a model, not a training checkpoint: start a new run from it with ',
                              param('weights', path), ' (', param('resume'),
                              ' continues a run from its checkpoint folder, <run>/last)')
    for candidate in (folder, previous_folder(folder)):
        if (candidate / STATE_FILE).is_file():
            return candidate
    raise CheckpointError(f'no training checkpoint at {path} (expected {path}/{STATE_FILE})')


def read_state(folder: Path) -> dict:
    """The ``state.json`` of a checkpoint folder (CheckpointError when it is damaged)."""
    try:
        state = json.loads((Path(folder) / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f'{Path(folder) / STATE_FILE} is damaged ({exc}): resume from another checkpoint')
    if not isinstance(state, dict) or not isinstance(state.get('iteration'), int):
        raise CheckpointError(f'{Path(folder) / STATE_FILE} has no iteration count: resume from another checkpoint')
    return state


def restore_training_state(folder: Path, state: dict, model: paddle.nn.Layer, optimizer, ema=None) -> None:
    """Restore model, optimizer and EMA from the checkpoint ``folder`` (found by
    ``find_checkpoint``) whose ``state.json`` (``read_state``) is ``state``."""
    weights = str(folder / 'model.pdparams')
    assign_params(model, load_paddle_params(weights), weights)
    names, saved = {n: p.name for n, p in model.named_parameters()}, {}
    for key, value in load_paddle_params(str(folder / 'optimizer.pdopt')).items():   # as _optimizer_state keys them
        structured, _, suffix = key.partition('@')
        if structured not in names:
            raise CheckpointError(f'optimizer state for unknown parameter {structured}')
        saved[names[structured] + suffix] = value
    try:
        optimizer.set_state_dict({key: paddle.to_tensor(value) for key, value in saved.items()})
    except Exception as exc:  # Paddle raises assorted types for state of another shape
        raise CheckpointError(f'{folder / "optimizer.pdopt"} does not fit this model or optimizer ({exc})')
    if ema is not None and (folder / 'ema.pdparams').is_file():
        shadow = load_paddle_params(str(folder / 'ema.pdparams'))
        check_fit(ema.shadow, shadow, str(folder / 'ema.pdparams'))
        ema.load(shadow, state.get('ema_updates', 0))
