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
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import convert_file
from solov2.convert.families import TORCHVISION as CONVERTER
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
