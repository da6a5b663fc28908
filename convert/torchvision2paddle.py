"""torchvision ImageNet ResNet ``.pth`` -> a BACKBONE-ONLY checkpoint for training.

Reads the file without PyTorch. Targets the 7x7-stem (variant 'b') backbones:
R50 (config 0; also fits config 1), R101 (8), R18 (5), R34 (6), detected in that order;
``--config 7`` gives the DCNv1 R50 of config 7. Usage:
    python convert/torchvision2paddle.py resnet50-0676ba61.pth weights/r50_imagenet.pdparams

Only the ``backbone.*`` keys of the chosen config are written; the sidecar says
``"part": "backbone"``. Skipped source keys: the ImageNet classifier ``fc.weight`` /
``fc.bias`` and the BN counters ``*.num_batches_tracked``; any other unused key fails.
Backbone DCN offset convs (config 7) have no ImageNet counterpart: they are
INITIALISED WITH ZEROS, not converted, and listed as such in the report and sidecar.
"""
import re

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from convert.common import converter_main, zero_offset_init
from convert.pth_reader import load_state_dict
from convert.solo2paddle import backbone_name

CLASSIFIER = re.compile(r'fc\.(weight|bias)')


def is_skipped(name: str) -> bool:
    """The ImageNet classifier and the BN ``num_batches_tracked`` counters."""
    return CLASSIFIER.fullmatch(name) is not None or name.endswith('num_batches_tracked')


def torchvision_name(key: str, keys: frozenset, cfg):
    """backbone.* -> torchvision ResNet name (``layer1.0.conv1.weight``, ``bn1.running_mean``);
    a DCN offset conv -> zero initialisation."""
    if '.conv.offset.' in key:
        return zero_offset_init(cfg)
    return backbone_name(key, prefix='')


def num_classes(source: dict) -> int:
    """Backbone-only: the detection classes are not in an ImageNet file; COCO's 80."""
    return 80


def main(argv=None) -> int:
    return converter_main(__doc__.split('\n')[0], load_state_dict, torchvision_name,
                          default_configs=(0, 8, 5, 6), num_classes_key=num_classes,
                          ignored=is_skipped, argv=argv, prefix='backbone.')


if __name__ == '__main__':
    raise SystemExit(main())
