"""PaddleDetection 2.x dygraph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/3x_coco (config 0), solov2_r50_enhance_coco (config 3) and
solov2_r101_vd_fpn_3x_coco (config 4). Usage:
    python convert/ppdet2paddle.py solov2_r50_enhance_coco.pdparams weights/enhance.pdparams
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import convert_file
from solov2.convert.families import PPDET as CONVERTER
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
