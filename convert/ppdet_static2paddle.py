"""PaddleDetection 0.5 static-graph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x / solov2_r50_fpn_3x (config 0) and
solov2_light_r50_vd_fpn_dcn_512_3x (config 2: ResNet50-vd with DCNv2 in C3-C5, DCNv2
without bias at tower index 2 of both head towers, mask-feature head without DCN).
Not covered: the 0.5 solov2_r101_vd_fpn_3x (its deformable head / mask-feature convs
have no bias, unlike our config 4, which follows PaddleDetection 2.x). Usage:
    python convert/ppdet_static2paddle.py solov2_light_r50_vd_fpn_dcn_512_3x.pdparams \\
        weights/light512_vd_dcn.pdparams

The file is a pickle of {static variable name: numpy array} (``fluid.save``). Besides
the weights such files can hold training bookkeeping, which carries no model weights
and is skipped by name (``is_bookkeeping``); any OTHER unused entry fails the conversion:

* optimizer accumulators ``<param>_velocity_<n>`` (Momentum, the SOLOv2 optimizer),
  ``<param>_moment<k>_<n>`` / ``_moment_<n>``, ``<param>_beta{1,2}_pow_acc_<n>`` (Adam),
  ``<param>_mean_square_<n>`` / ``_mean_grad_<n>`` (RMSProp);
* learning-rate state: ``learning_rate_<n>`` and any name containing ``@LR_DECAY``
  (e.g. ``@LR_DECAY_COUNTER@``);
* EMA state: ``<param>_ema_<n>``, ``scheduled_ema_decay_rate``, ``@EMA_STEP_COUNTER@``.
  PaddleDetection 0.5 saves with the EMA values swapped into the parameters
  (``ema.apply_program`` before ``checkpoint.save``), so the plain names already hold
  the averaged weights and the ``_ema_`` copies are redundant.
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import convert_file
from solov2.convert.families import PPDET_STATIC as CONVERTER
from solov2.tools.cli import run_converter


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
