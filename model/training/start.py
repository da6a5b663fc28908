"""How a training run starts: its config (``config``, or the one the sidecar of the start
``weights`` names, with the settings it records) and its classes (the training annotations'
own unless ``classes`` or the overrides fix them). Messages go to this module's logger."""
import dataclasses
import logging
from pathlib import Path
from typing import List, Sequence, Tuple

from solov2.config import get_config, with_classes, with_overrides
from solov2.config.sidecar import read_sidecar, resolve_config
from solov2.core.errors import InputError, param
from solov2.data.coco import CocoDataset, read_class_names
from solov2.model.checkpoint import check_weights_file
from solov2.model.training.components import training_source
from solov2.model.training.options import TrainOptions

logger = logging.getLogger(__name__)
CLASS_SETTINGS = ('num_classes', 'class_names')
SHOWN_NAMES = 8         # class names a log line lists before '...'


def named_settings(overrides: Sequence[str]) -> List[str]:
    """The setting names of ``['name=value', ...]``."""
    return [text.partition('=')[0].strip() for text in overrides]


def with_config_number(options: TrainOptions) -> TrainOptions:
    """``options`` with ``config`` set: as given, else the number recorded in the sidecar of
    the start ``weights``; InputError when neither says one."""
    if options.config is not None:
        return options
    if not options.weights:
        raise InputError('pass ', param('config'), ' (a config number), or ', param('weights'),
                         ' a model whose sidecar .json names one')
    check_weights_file(options.weights)
    meta = read_sidecar(options.weights)
    if meta is None:
        raise InputError(f'{options.weights} has no sidecar .json naming its config — pass ', param('config'),
                         ' as well')
    return dataclasses.replace(options, config=meta['config'])


def start_config(options: TrainOptions, overrides: Sequence[str]):
    """The config of a run: config ``options.config`` under ``overrides``; with start
    ``weights`` also the settings their sidecar records (a model setting of the overrides that
    contradicts it is an InputError naming it), the classes aside: those of the overrides
    apply, else ``training_classes`` picks them."""
    named = named_settings(overrides)
    others = [text for text, name in zip(overrides, named) if name not in CLASS_SETTINGS]
    classes = [text for text, name in zip(overrides, named) if name in CLASS_SETTINGS]
    if not options.weights:
        return with_overrides(get_config(options.config), overrides)
    check_weights_file(options.weights)
    _, cfg = resolve_config(options.weights, options.config, others)
    return with_overrides(cfg, classes)


def training_classes(cfg, options: TrainOptions, overrides: Sequence[str]) -> Tuple[type, CocoDataset]:
    """(``cfg`` with the run's classes, the training set labelled by them). The classes are
    those of ``options.classes`` (a classes.txt or COCO file), else those the overrides fix,
    else the training annotations' categories (in id order) unless they are the config's
    own; one log line says where classes other than the config's come from."""
    named = set(named_settings(overrides)) & set(CLASS_SETTINGS)
    if options.classes and named:
        raise InputError(param('classes'), f' and {" and ".join(sorted(named))} in ', param('overrides'),
                         ' both give the classes — use one')
    source = training_source(cfg)
    names, origin = None, None
    if options.classes:
        names, origin = read_class_names(options.classes), options.classes
    elif not named and sorted(source.class_names) != sorted(cfg.class_names):
        names, origin = source.class_names, Path(cfg.dataset_dir) / cfg.train_ann
    if names is not None and list(names) != list(cfg.class_names):
        logger.info(f'classes from {origin}: {listed(names)} (config {options.config} has {cfg.num_classes}: '
                    f'{listed(cfg.class_names)})')
        cfg = with_classes(cfg, len(names), names)
    if list(cfg.class_names) != source.class_names:
        source = training_source(cfg, cfg.class_names)      # labels by the config's order of names
    pairs = list(enumerate(source.label_to_category_id))
    if options.weights or any(category != label + 1 for label, category in pairs):
        matched = [f'{cfg.class_names[label]} {label}->{category}' for label, category in pairs]
        logger.info(f"the model's classes matched by name to the categories of {Path(cfg.dataset_dir) / cfg.train_ann} "
                    f'(label->category id): {listed(matched)}')
    return cfg, source


def listed(names: Sequence[str]) -> str:
    """'a, b, c' (the first ``SHOWN_NAMES``, then '... N in all')."""
    shown = ', '.join(names[:SHOWN_NAMES])
    return shown if len(names) <= SHOWN_NAMES else f'{shown}, ... {len(names)} in all'
