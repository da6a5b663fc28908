"""mmdetection 2.x / 3.x SOLOv2 ``.pth`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/ms-3x (config 0), solov2_r101_fpn_ms-3x (8),
solov2_r101-dcn_fpn_ms-3x (10), solov2-light_r18/r34/r50_fpn_ms-3x (5, 6, 1) and
solov2-light_r50-dcn_fpn_ms-3x (11) and solov2_x101-dcn_fpn_ms-3x (12, ResNeXt-101 64x4d).
Reads the file without PyTorch. Usage:
    python convert/mmdet2paddle.py solov2_r50_fpn_1x_coco.pth weights/r50.pdparams
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import convert_file
from solov2.convert.families import MMDET as CONVERTER
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
