"""Training from Python, the way ``train.py`` trains::

    summary = train(TrainOptions(config=9, overrides=['dataset_dir=datasets/shapes'], max_iters=100))
    summary.best_ap, summary.best_weights      # mask AP in percent (0-100), the best weights' file

``train`` builds the run (``model.training.run``) with the validation-set evaluation of the
inference package wired in, runs it and returns a ``TrainSummary``. Progress is logged
through ``logging`` (loggers under ``model.training``)."""
import dataclasses
import functools
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import paddle

from solov2.api.evaluation import checked_set, evaluate
from solov2.config import SOLOv2Base, get_config, with_overrides
from solov2.config.model_fields import ModelFields
from solov2.convert.zoo import checked_config, resolve_weights
from solov2.core.errors import InputError, param
from solov2.data.coco import load_coco, read_class_names
from solov2.data.visualize import draw_instances
from solov2.model.distributed import Processes, launched_processes
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.spec import ModelSpec
from solov2.model.runtime import Placement
from solov2.model.training.amp import amp_dtype
from solov2.model.training.components import check_dataset
from solov2.model.training.options import TrainOptions
from solov2.model.training.run import check_run_folder, prepare, run_folder, run_settings, run_training
from solov2.model.training.trainer import Trainer

__all__ = ['TrainOptions', 'TrainSummary', 'train']


@dataclass(frozen=True)
class TrainSummary:
    """What a finished training run left behind."""
    iteration: int                   # the iteration training stopped at
    best_ap: Optional[float]         # best validation mask AP in percent (0-100); None if nothing was scored
    best_iteration: int              # the iteration that scored it (-1 if none)
    run_folder: Path                 # checkpoints, train_log.csv, eval_log.csv, curves.png, config.txt
    best_weights: Optional[Path]     # <run>/best/ema.pdparams (the EMA, which was scored) or model.pdparams
    last_checkpoint: Path            # <run>/last: continue with TrainOptions(resume='auto')


def val_set(cfg):
    """(annotation file, image folder) of the config's validation set."""
    root = Path(cfg.dataset_dir)
    return str(root / cfg.val_ann), str(root / cfg.val_images)


def validation_ap(model: paddle.nn.Layer, cfg, processes: Processes, placement: Placement) -> Dict[str, float]:
    """COCO mask AP in percent (``evaluate``) of ``model`` (in eval mode) on the config's
    validation set, shared out among the run's ``processes``, each network call on the run's
    ``placement``: training's evaluation."""
    with run_on(model, cfg, placement) as predictor:
        return evaluate(predictor, *val_set(cfg), processes=processes)


def run_on(model: paddle.nn.Layer, cfg, placement: Placement) -> Predictor:
    """The predictor of training's ``model`` as it is, each network call on ``placement``."""
    return Predictor(DygraphBackend(cfg, model=model, device=placement.device, threads=placement.threads))


@functools.lru_cache(maxsize=4)
def first_val_image(ann: str, images: str) -> str:
    """Path of the validation set's first image (by id) with an object to show (the first
    image when none has one); the annotation file is read once."""
    coco = load_coco(ann)
    with_objects = [i for i in sorted(coco.getImgIds()) if coco.getAnnIds(imgIds=[i], iscrowd=False)]
    chosen = with_objects[0] if with_objects else min(coco.getImgIds())
    return str(Path(images) / coco.imgs[chosen]['file_name'])


def val_picture(model: paddle.nn.Layer, cfg, placement: Placement) -> np.ndarray:
    """The first validation image with ``model``'s (in eval mode, run on ``placement``) instances
    drawn, [H, W, 3] uint8 RGB."""
    with run_on(model, cfg, placement) as predictor:
        image = predictor.read(first_val_image(*val_set(cfg)))
        result = predictor.detect(image)
    return draw_instances(image, result.masks, result.labels, result.scores, cfg.class_names, 0.3)


def published_start(overrides: Sequence[str]) -> Tuple[str, ...]:
    """``overrides`` with a published name given to ``pretrained`` (an ImageNet backbone such as
    'torchvision/resnet50', or a COCO model to fine-tune from) replaced by the path of its
    converted checkpoint, fetched and converted on first use (``convert.zoo``)."""
    resolved = []
    for assignment in overrides:
        name, sep, _ = assignment.partition('=')
        if sep and name.strip() == 'pretrained':
            value = with_overrides(SOLOv2Base, [assignment]).pretrained
            assignment = f'pretrained={resolve_weights(value)!r}' if value else assignment
        resolved.append(assignment)
    return tuple(resolved)


COUNTS = {'eval_every': 0, 'checkpoint_every': 1, 'log_every': 1, 'max_iters': 0}   # the least each takes


def check_options(options: TrainOptions) -> None:
    """InputError for an option that cannot work, before a published name is fetched: ``COUNTS``,
    ``max_minutes``, ``amp``, the model's fields (``ModelSpec.check``), the ``classes`` file, the run
    folder (``check_run_folder``) and, for a new run, the data set (``check_dataset``)."""
    for name, least in COUNTS.items():
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise InputError(param(name), f' takes a whole number of at least {least}, not {value!r}')
    if isinstance(options.max_minutes, bool) or not isinstance(options.max_minutes, numbers.Real) \
            or not options.max_minutes >= 0:
        raise InputError(param('max_minutes'), f' takes minutes, 0 (no budget) or more, not {options.max_minutes!r}')
    amp_dtype(options.amp)
    shared = {field.name: getattr(options, field.name) for field in dataclasses.fields(ModelFields)}
    number = ModelSpec(**shared, backend='dygraph').check(checked_config)
    if options.classes:
        read_class_names(options.classes)
    if (number is not None or options.output) and launched_processes().main:
        check_run_folder(run_folder(dataclasses.replace(options, config=number)), bool(options.resume),
                         options.overwrite)
    if number is not None and not options.resume:      # a resumed run may take its data from its saved options
        check_dataset(with_overrides(get_config(number), options.overrides))


def train(options: TrainOptions, on_start: Optional[Callable[[Trainer, Path], None]] = None) -> TrainSummary:
    """Train as ``options`` say (a new run, or one resumed with ``resume``) and evaluate on
    the config's validation set; ``on_start(trainer, run_folder)`` is called once the run is
    built, before the first step (``trainer.state.iteration`` is where it stands). Raises
    InputError when an option, the data or a checkpoint does not fit, RunError when the
    loss or the weights stop being finite (the message names the last healthy checkpoint).
    Paddle's device and CPU math threads are those of ``options`` for each step and each
    network call of its evaluation (a Segmenter called from another thread meanwhile waits for
    that step or call to end, not for the evaluation); between steps and
    afterwards the process's, and Paddle's random generators, are as they were. ``weights`` and ``pretrained=NAME`` in
    ``options.overrides`` take a published name too (``published_start``)."""
    check_options(options)
    options = dataclasses.replace(options, overrides=published_start(options.overrides),
                                  weights=resolve_weights(options.weights) if options.weights else None)
    with run_settings(options) as placement:
        trainer, out = prepare(options, validation_ap, placement, val_picture)
        checked_set(*val_set(trainer.cfg), trainer.cfg.class_names)      # what its evaluation scores, before a step
        if on_start is not None:
            on_start(trainer, out)
        state = run_training(trainer, out)
    scored = state.best_iteration >= 0
    weights = out / 'best' / ('ema.pdparams' if trainer.ema is not None else 'model.pdparams')
    return TrainSummary(state.iteration, 100 * state.best_ap if scored else None, state.best_iteration, out,
                        weights if scored else None, out / 'last')
