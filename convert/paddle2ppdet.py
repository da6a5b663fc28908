"""This project's checkpoint (trained or converted) -> PaddleDetection 2.x ``.pdparams``.

The way back of convert/ppdet2paddle.py, through the same rename table: config 0 ->
solov2_r50_fpn_1x_coco / solov2_r50_fpn_3x_coco, 3 -> solov2_r50_enhance_coco,
4 -> solov2_r101_vd_fpn_3x_coco. The other configs have no PaddleDetection 2.x SOLOv2
config and are refused. The config comes from the checkpoint's sidecar (NAME.json) or
``--config``. Usage:
    python convert/paddle2ppdet.py output/0/best/model.pdparams solov2_r50_fpn_3x_coco.pdparams
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.to_ppdet import write_ppdet
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], write_ppdet, argv, helps={
        'source': "this project's .pdparams (its NAME.json names the config)",
        'output': 'PaddleDetection .pdparams to write', 'config': 'config number when there is no sidecar'})


if __name__ == '__main__':
    raise SystemExit(main())
