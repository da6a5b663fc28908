"""Each source family's ``Converter`` (``convert.common``): how a checkpoint of that family is
read, renamed and checked, and its notes for users. The command (``solov2 convert FAMILY``,
tools/convert.py) and the published checkpoints (``convert.zoo``) convert with
these: ``CONVERTERS``, by the family names of ``convert.published.FAMILIES``."""
import re

from solov2.convert.common import ConversionError, Converter, class_count, imagenet_converter
from solov2.convert.mmdet_names import backbone_name, is_counter, mmdet_name, solo_name
from solov2.convert.ppdet_names import (
    duplicate_aliases,
    is_bookkeeping,
    ppdet_name,
    ppdet_num_classes,
    static_backbone_name,
    static_name,
)
from solov2.convert.pth_reader import RefusedCheckpoint, load_state_dict
from solov2.model.checkpoint import load_paddle_params


def solo_classes(source: dict) -> int:
    """Category count of an original SOLO checkpoint, from the category-prediction bias."""
    return class_count(source, 'bbox_head.solo_cate.bias', 'an original SOLO (WXinlong/SOLO) SOLOv2 checkpoint')


def static_classes(source: dict) -> int:
    """Category count of a PaddleDetection 0.5 checkpoint, from the category-prediction bias
    (0.5 configs say ``num_classes: 81``, background included; the conv has 80 outputs)."""
    return class_count(source, 'bbox_head.solo_cate.bias', 'a PaddleDetection 0.5 SOLOv2 checkpoint')


def mmdet_classes(source: dict) -> int:
    """Category count of an mmdetection 2.x/3.x checkpoint, from the category-prediction bias."""
    return class_count(source, 'mask_head.conv_cls.bias', 'an mmdetection 2.x/3.x SOLOv2 checkpoint (an original '
                       'SOLO .pth converts with convert/solo2paddle.py)')


def mmdet_load(path: str) -> dict:
    """An mmdetection checkpoint's ``state_dict`` as numpy arrays (2.x ``{meta, state_dict,
    optimizer}``, 3.x adds ``message_hub``...); a hint when mmengine objects in a
    training checkpoint are refused."""
    try:
        return load_state_dict(path)
    except RefusedCheckpoint as exc:
        if not (exc.qualname or '').startswith('mmengine.'):
            raise
        refused = str(exc).split(' — ')[0]
        raise ConversionError(f"{refused} — an mmdetection 3.x training checkpoint? Keep only its weights with "
                              "mmdetection's tools/model_converters/publish_model.py, then convert that file") from None


TORCHVISION_CLASSIFIER = re.compile(r'fc\.(weight|bias)')
PADDLECLAS_CLASSIFIER = re.compile(r'fc_0\.[wb]_0')


def torchvision_skipped(name: str) -> bool:
    """The ImageNet classifier and the BN ``num_batches_tracked`` counters of a torchvision ResNet."""
    return TORCHVISION_CLASSIFIER.fullmatch(name) is not None or is_counter(name)


def paddleclas_skipped(name: str) -> bool:
    """The ImageNet classifier and optimizer / learning-rate / EMA bookkeeping of a PaddleClas ResNet."""
    return PADDLECLAS_CLASSIFIER.fullmatch(name) is not None or is_bookkeeping(name)


# each family's notes for its users: ``solov2 convert FAMILY --help`` (tools/convert.py) shows them
SOLO_NOTES = """Original SOLO (WXinlong/SOLO, mmdetection 1.x) ``.pth`` -> this project's checkpoint.

Reads legacy and zip ``.pth`` files without PyTorch. Covers SOLOv2 R50/R101 FPN
(configs 0, 8), Light-448 R18/R34/R50 (5, 6, 1) and Light-512 DCNv1 R50 (7). Usage:
    python convert/solo2paddle.py SOLOv2_LIGHT_448_R18_3x.pth weights/light448_r18.pdparams
"""
PPDET_NOTES = """PaddleDetection 2.x dygraph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/3x_coco (config 0), solov2_r50_enhance_coco (config 3) and
solov2_r101_vd_fpn_3x_coco (config 4). Usage:
    python convert/ppdet2paddle.py solov2_r50_enhance_coco.pdparams weights/enhance.pdparams
"""
PPDET_STATIC_NOTES = """PaddleDetection 0.5 static-graph SOLOv2 ``.pdparams`` -> this project's checkpoint.

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
MMDET_NOTES = """mmdetection 2.x / 3.x SOLOv2 ``.pth`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/ms-3x (config 0), solov2_r101_fpn_ms-3x (8),
solov2_r101-dcn_fpn_ms-3x (10), solov2-light_r18/r34/r50_fpn_ms-3x (5, 6, 1) and
solov2-light_r50-dcn_fpn_ms-3x (11) and solov2_x101-dcn_fpn_ms-3x (12, ResNeXt-101 64x4d).
Reads the file without PyTorch. Usage:
    python convert/mmdet2paddle.py solov2_r50_fpn_1x_coco.pth weights/r50.pdparams
"""
TORCHVISION_NOTES = """torchvision ImageNet ResNet ``.pth`` -> a BACKBONE-ONLY checkpoint for training.

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
PADDLECLAS_NOTES = """PaddleClas ImageNet ResNet ``.pdparams`` (static names) -> a BACKBONE-ONLY checkpoint.

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

# ``convert.published.FAMILIES`` key -> its converter
CONVERTERS = {
    'solo': Converter(load_state_dict, solo_name, (0, 1, 5, 6, 7, 8), solo_classes, ignored=is_counter,
                      notes=SOLO_NOTES),
    'ppdet': Converter(load_paddle_params, ppdet_name, (0, 3, 4), ppdet_num_classes, aliases=duplicate_aliases,
                       notes=PPDET_NOTES),
    'ppdet-static': Converter(load_paddle_params, static_name, (0, 2), static_classes, ignored=is_bookkeeping,
                              notes=PPDET_STATIC_NOTES),
    'mmdet': Converter(mmdet_load, mmdet_name, (0, 8, 10, 12, 1, 5, 6, 11), mmdet_classes, ignored=is_counter,
                       notes=MMDET_NOTES),
    'paddleclas': imagenet_converter(load_paddle_params, static_backbone_name, (2, 4, 0, 8), paddleclas_skipped,
                                     PADDLECLAS_NOTES),
    'torchvision': imagenet_converter(load_state_dict, lambda key, cfg: backbone_name(key, prefix=''),
                                      (0, 8, 5, 6), torchvision_skipped, TORCHVISION_NOTES)}
