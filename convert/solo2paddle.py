"""Original SOLO (WXinlong/SOLO, mmdetection 1.x) ``.pth`` -> this project's checkpoint.

Reads legacy and zip ``.pth`` files without PyTorch. Covers SOLOv2 R50/R101 FPN
(configs 0, 8), Light-448 R18/R34/R50 (5, 6, 1) and Light-512 DCNv1 R50 (7). Usage:
    python convert/solo2paddle.py SOLOv2_LIGHT_448_R18_3x.pth weights/light448_r18.pdparams
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import convert_file
from solov2.convert.families import SOLO as CONVERTER
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
