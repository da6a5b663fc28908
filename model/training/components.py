"""The parts a training run is built from: optimizer, training set and data loader, start
weights (a whole model or a pretrained backbone), and the swap to EMA weights for evaluation."""
import contextlib
import functools
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Optional, Sequence

import numpy as np
import paddle

from solov2.core.errors import InputError
from solov2.data.augment import TrainTransform
from solov2.data.coco import CocoDataset
from solov2.data.files import looked_up
from solov2.data.loader import TrainDataset, build_train_loader
from solov2.model.build import CLASS_HEAD, class_count
from solov2.model.checkpoint import CheckpointError, load_paddle_params
from solov2.model.training.targets import assign_targets, collate_targets


def load_pretrained(model: paddle.nn.Layer, path: str) -> str:
    """Load the tensors of the checkpoint ``path`` (a whole model or a backbone-only one) that
    fit ``model`` by name and shape; returns a one-line summary naming those left out (the
    class head when the classes differ). CheckpointError when none fits."""
    params = load_paddle_params(path)
    own = model.state_dict()
    usable = {k: v for k, v in params.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise CheckpointError(f'{path} has no tensor that fits this model')
    own_values = {k: v.numpy() for k, v in own.items()}
    model.set_state_dict({**own_values, **usable})     # every key given: no per-key "Skip loading" lines
    line = f"start weights {path}: loaded {len(usable)} of the model's {len(own)} tensors"
    left = [k for k in params if k not in usable]
    if left:
        line += f'; left out {left_out(left, params, own)}'
    lacking = sum(k not in params for k in own)
    return line + (f'; {lacking} the file lacks start anew' if lacking else '')


def left_out(names: Sequence[str], params: Mapping[str, np.ndarray], own: Mapping[str, paddle.Tensor]) -> str:
    """The tensors ``names`` of a checkpoint that do not fit the model, in words: the class
    head with both class counts, else up to four names with their shapes."""
    if all(name.startswith(CLASS_HEAD) for name in names):
        return (f'the class head ({class_count(params)} classes there, {class_count(own)} here: '
                f'{", ".join(names)}), which starts anew')
    shown = [f'{k} {list(params[k].shape)} vs {list(own[k].shape)}' if k in own else f'{k} (not in this model)'
             for k in names[:4]]
    return f'{len(names)} that do not fit: {", ".join(shown)}{", ..." if len(names) > 4 else ""}'


def make_optimizer(cfg, model: paddle.nn.Layer, base_lr: float):
    """SGD with momentum and L2 decay (as SOLO), or AdamW with decoupled decay (``cfg.optimizer``
    'momentum' or 'adamw'; ValueError for another)."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    clip = paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip) if cfg.grad_clip else None
    if cfg.optimizer == 'adamw':
        return paddle.optimizer.AdamW(learning_rate=base_lr, parameters=params, weight_decay=cfg.weight_decay,
                                      grad_clip=clip)
    if cfg.optimizer == 'momentum':
        return paddle.optimizer.Momentum(learning_rate=base_lr, momentum=cfg.momentum, parameters=params,
                                         weight_decay=paddle.regularizer.L2Decay(cfg.weight_decay), grad_clip=clip)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (expected 'momentum' or 'adamw')")


SHAPES_HINT = 'the synthetic shapes set: solov2 make-shapes / tools/make_shapes_dataset.py --out datasets/shapes'


def check_dataset(cfg) -> None:
    """InputError naming the first missing annotation file or image folder of the
    config's training and validation sets, and how to get them, before any time is spent."""
    root = Path(cfg.dataset_dir)
    for path in (root / cfg.train_ann, root / cfg.train_images, root / cfg.val_ann, root / cfg.val_images):
        if not path.exists():
            raise InputError(f'{looked_up(path)} not found: point the setting dataset_dir=... (train_ann, val_ann, '
                             f'train_images, val_images) at a COCO-format set, or make {SHAPES_HINT}')


def training_source(cfg, class_names: Optional[Sequence[str]] = None) -> CocoDataset:
    """The training set of ``cfg`` (checked first, ``check_dataset``): labels by
    ``class_names`` or, without, by category id (its ``class_names`` then are the file's)."""
    check_dataset(cfg)
    root = Path(cfg.dataset_dir)
    return CocoDataset(str(root / cfg.train_ann), str(root / cfg.train_images),
                       class_names=None if class_names is None else list(class_names),
                       keep_empty=cfg.keep_empty_images, require_instances=True, max_pixels=cfg.max_image_pixels)


def make_loader(cfg, world_size: int, source: CocoDataset):
    """The training DataLoader of ``cfg`` over ``source`` (``training_source``; random
    transforms, SOLO targets)."""
    transform = TrainTransform(cfg.train_shorts, cfg.train_max, flip_prob=cfg.flip_prob,
                               colour_strength=cfg.colour_strength, crop_prob=cfg.crop_prob)
    target_fn = functools.partial(assign_targets, num_grids=cfg.num_grids, scale_ranges=cfg.scale_ranges,
                                  sigma=cfg.sigma)
    return build_train_loader(TrainDataset(source, transform, seed=cfg.seed), cfg.batch_size, target_fn,
                              collate_targets, cfg.num_workers, seed=cfg.seed, distributed=world_size > 1)


@contextlib.contextmanager
def evaluation_weights(model: paddle.nn.Layer, ema=None,
                       hold: Callable[[], ContextManager[None]] = contextlib.nullcontext):
    """``model`` in eval mode holding the EMA weights (when ``ema``) for the duration;
    the training weights and mode come back afterwards (each swap in ``hold()``, the run's
    Paddle settings)."""
    with hold():
        raw = {k: v.numpy() for k, v in model.state_dict().items()} if ema is not None else None
        if ema is not None:
            model.set_state_dict(ema.state_dict())
        model.eval()
    try:
        yield model
    finally:
        with hold():
            model.train()
            if raw is not None:
                model.set_state_dict(raw)
