"""The project's checkpoint: ``NAME.pdparams`` (the model's state_dict) plus a
sidecar ``NAME.json`` (config number, classes, settings, source) so a checkpoint of
the wrong shape is refused with one clear line. Every Paddle pickle the project reads goes
through ``read_paddle_file`` (restricted unpickler, ``model/safe_pickle.py``)."""
import contextlib
import difflib
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import paddle

from solov2.config import CONFIGS, get_config, with_classes, with_overrides
from solov2.config.sidecar import recorded_settings, sidecar_path
from solov2.core.errors import InputError, param
from solov2.data.files import looked_up, write_together
from solov2.model.build import class_count, model_shapes
from solov2.model.safe_pickle import PADDLE_GLOBALS, Refused, RestrictedUnpickler, refusal_message


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable, unsafe or does not fit the model."""


PADDLE_MAKERS = 'train.py, a converter or paddle.save'


def read_paddle_file(path: str):
    """The object in a Paddle pickle file (``.pdparams``, ``.pdopt``: ``paddle.save`` of
    Paddle 2.x/3.x, ``fluid.save`` of PaddleDetection 0.5, PaddleClas), read by the
    restricted unpickler: anything but plain data is refused, nothing in it runs."""
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file not found: {looked_up(path)}')
    try:
        with open(path, 'rb') as f:
            return RestrictedUnpickler(f, PADDLE_GLOBALS).load()
    except Refused as exc:
        raise CheckpointError(refusal_message(path, exc, 'arrays', PADDLE_MAKERS)) from None
    except Exception as exc:  # any other unpickling failure means "not a Paddle file"
        raise CheckpointError(f'{path} is not a Paddle .pdparams file ({exc.__class__.__name__}) '
                              f'— was it made by {PADDLE_MAKERS}?') from None


def check_weights_file(weights: str) -> None:
    """InputError unless ``weights`` names a file, naming the fix: the .pdparams inside a
    folder, the closest names beside a typo (a relative path says the folder it was looked
    up from)."""
    path = Path(weights)
    if path.is_dir():
        inside = sorted(path.glob('*.pdparams'))
        raise InputError(param('weights', weights), ' is a folder — give the .pdparams file'
                         + (f', e.g. {inside[0]}' if inside else ' (there is none in it)'))
    if not path.is_file():
        beside = [p.name for p in path.parent.glob('*.pdparams')] if path.parent.is_dir() else []
        near = difflib.get_close_matches(path.name, beside, n=2, cutoff=0.6)
        hint = ' — did you mean ' + ' or '.join(str(path.parent / name) for name in near) + '?' if near else ''
        raise InputError(f'weights file not found: {looked_up(weights)}{hint}')


def load_paddle_params(path: str) -> Dict[str, np.ndarray]:
    """Read a Paddle ``.pdparams``/``.pdopt`` (dygraph ``paddle.save`` or static
    ``fluid.save``) safely -> {name: array}: each array plain, or from the ``(name, array)``
    pair that ``paddle.save`` writes for a tensor outside a state dict; bookkeeping entries
    (e.g. Paddle's ``StructuredToParameterName@@`` table) dropped; CheckpointError for a tensor that is not
    finite (``check_finite``)."""
    raw = read_paddle_file(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f'{path} does not hold a dict of parameters')
    arrays = {}
    for name, value in raw.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            value = value[1]
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            arrays[name] = value
    check_finite(arrays, path)
    return arrays


def check_finite(arrays: Mapping[str, np.ndarray], path: str) -> None:
    """CheckpointError naming ``path`` and its first tensor (in the file's order) holding a NaN or an infinity:
    weights a run wrote after it diverged (one NaN normalisation weight costs tens of AP points, a NaN class head
    finds nothing) are refused when read, by every command and ``Segmenter`` (their readers: ``load_paddle_params``,
    ``convert.pth_reader.load_state_dict``). Integer tensors cannot hold either."""
    for name, array in arrays.items():
        if array.dtype.kind in 'fc' and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise CheckpointError(f'{path}: tensor {name} holds {bad} of {array.size} values that are NaN or '
                                  'infinite — the run that saved it diverged; take an earlier checkpoint')


def save_checkpoint(state: Mapping[str, np.ndarray], weights: str, config_number: int,
                    cfg, source: str, extra: Optional[Mapping] = None) -> None:
    """Write ``weights`` (.pdparams, loadable by plain ``paddle.load``) and its sidecar
    atomically. The sidecar records what rebuilds the model: config number, class names
    and the settings of ``cfg`` that differ from that config's (``recorded_settings``);
    ``extra`` adds entries (e.g. ``{"part": "backbone"}``) but may not replace those."""
    meta = {'config': config_number, 'num_classes': cfg.num_classes, 'class_names': list(cfg.class_names),
            'overrides': recorded_settings(cfg, config_number), 'source': source}
    clash = sorted(set(extra or {}) & set(meta))
    if clash:
        raise ValueError(f'extra sidecar entries may not replace {clash}')
    meta.update(extra or {})
    path = Path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v.numpy() if hasattr(v, 'numpy') else v) for k, v in state.items()}
    write_together([(path, lambda p: paddle.save(arrays, p)),
                    (sidecar_path(weights), lambda p: Path(p).write_text(json.dumps(meta, indent=1)))])


def check_fit(own: Mapping[str, object], params: Mapping[str, np.ndarray], weights: str, config: str = '') -> None:
    """CheckpointError naming ``weights`` (and ``config``, a config's name) unless ``params`` has
    exactly the keys of ``own`` with the same shapes; ``own`` maps each name to a tensor, an
    array or a shape."""
    shapes = {k: tuple(getattr(v, 'shape', v)) for k, v in own.items()}
    missing = [k for k in shapes if k not in params]
    unexpected = [k for k in params if k not in shapes]
    wrong = [f'{k} {list(params[k].shape)} vs model {list(shapes[k])}'
             for k in shapes if k in params and tuple(params[k].shape) != shapes[k]]
    found = ((missing, 'missing'), (unexpected, 'unexpected'), (wrong, 'of another shape'))
    parts = [f'{len(names)} {what} (e.g. {names[0]})' for names, what in found if names]
    if parts:
        raise CheckpointError(f'the weights in {weights} do not fit {f"config {config}" if config else "this config"}: '
                              + '; '.join(parts))


def assign_params(model: paddle.nn.Layer, params: Mapping[str, np.ndarray], weights: str) -> None:
    """Copy ``params`` (read from ``weights``) into ``model``; refuse missing, unexpected
    or mis-shaped keys."""
    own = model.state_dict()
    check_fit(own, params, weights)
    model.set_state_dict({k: params[k] for k in own})


def check_unrecorded(weights: str, number: Optional[int], overrides: Sequence[str] = ()) -> None:
    """For weights without a sidecar, before anything is built or exported: InputError unless
    they fit config ``number`` under ``overrides``, naming the configs (and class count) they fit: those
    whose model, with the class count of the weights, has exactly their tensor names and shapes (built
    without weights, ``model_shapes``: about 2 s for all)."""
    params = load_paddle_params(weights)
    if number is None:
        problem = f'{weights} has no sidecar .json naming its config'
    else:
        try:
            check_fit(model_shapes(with_overrides(get_config(number), overrides)), params, weights, str(number))
            return
        except CheckpointError as exc:
            problem = str(exc)
    classes, fitting = class_count(params), []
    for other, cfg in CONFIGS.items():
        with contextlib.suppress(CheckpointError):
            check_fit(model_shapes(with_classes(cfg, classes or cfg.num_classes)), params, '')
            fitting.append(other)
    if not fitting:
        raise CheckpointError(f'{problem}; they fit none of the configs — a published checkpoint needs converting '
                              'first (convert/*2paddle.py, docs/checkpoints.md)')
    which = ' or '.join(map(str, fitting))
    fix = (param('config', *fitting),)
    if classes != get_config(fitting[0]).num_classes:
        which += f' with {classes} classes'
        fix += (' and ', param('overrides', [f'num_classes={classes}']), f' with {classes} class_names')
    raise CheckpointError(f'{problem}: they fit config {which} — pass ', *fix)
