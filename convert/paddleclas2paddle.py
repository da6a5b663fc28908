"""PaddleClas ImageNet ResNet ``.pdparams`` (static names) -> a BACKBONE-ONLY checkpoint.

For ``ResNet50_vd_pretrained`` / ``ResNet50_vd_ssld_pretrained`` (R50-vd: config 2,
same backbone as config 3 via ``--config 3``) and ``ResNet101_vd_pretrained`` (config 4);
a 7x7-stem ``ResNet50_pretrained`` / ``ResNet101_pretrained`` fits configs 0 / 8.
Detection order: 2, 4, 0, 8. Usage:
    python convert/paddleclas2paddle.py ResNet50_vd_ssld_pretrained.pdparams \\
        weights/r50vd_ssld_imagenet.pdparams

The source is a pickle of {static variable name: array} with PaddleClas/PaddleDetection
0.5 names (``conv1_1_weights``, ``bnv1_1_scale``, ``res2a_branch2a_weights``,
``bn2a_branch2a_mean``, ``res3a_branch1_weights``, ..., R101: ``res4b1`` .. ``res4b22``).
Skipped source keys: the ImageNet classifier ``fc_0.w_0`` / ``fc_0.b_0`` and the
training bookkeeping of ``convert.ppdet_names.is_bookkeeping``; any other unused key fails.

WARNING - initialised, not converted: ImageNet has no deformable convs, so every
backbone DCN offset conv (``backbone.layer{2,3,4}.*.conv2.conv.offset.{weight,bias}``,
26 tensors for R50-vd, 60 for R101-vd) is FILLED WITH ZEROS. For DCNv2 that means zero
offsets AND mask logits 0, i.e. modulation mask sigmoid(0) = 0.5: each such conv starts at
HALF its ImageNet response. That is exactly how PaddleDetection (and mmcv) initialise
DCNv2 when training from ImageNet, so it is matched on purpose; the list is printed
(never truncated) and stored in the sidecar under ``"initialised"``.
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import convert_file
from solov2.convert.families import PADDLECLAS as CONVERTER
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
