"""Each source family's ``Converter`` (``convert.common``): how its checkpoints are read, renamed
and checked, and its notes for users; ``CONVERTERS``, by the names of ``convert.published.FAMILIES``,
serve ``solov2 convert FAMILY`` (tools/convert.py) and the published checkpoints (``convert.zoo``).

Each family's notes for its users (``*_NOTES``): ``solov2 convert FAMILY --help`` (tools/convert.py) shows them;
docs/checkpoints.md ("How the converters work") has the details. ``static_classes``: PaddleDetection 0.5 configs
say ``num_classes: 81``, background included; the conv has 80 outputs."""
from solov2.convert.common import ConversionError, Converter, class_count, imagenet_converter
from solov2.convert.mmdet_names import backbone_name, is_counter, mmdet_name, solo_name
from solov2.convert.ppdet_names import duplicate_aliases, is_bookkeeping, ppdet_name, static_backbone_name, static_name
from solov2.convert.pth_reader import RefusedCheckpoint, load_state_dict
from solov2.model.checkpoint import load_paddle_params

solo_classes = class_count('bbox_head.solo_cate.bias', 'an original SOLO (WXinlong/SOLO) SOLOv2 checkpoint')
ppdet_classes = class_count('solov2_head.bbox_head.solo_cate.bias', 'a PaddleDetection 2.x SOLOv2 checkpoint')
static_classes = class_count('bbox_head.solo_cate.bias', 'a PaddleDetection 0.5 SOLOv2 checkpoint')
mmdet_classes = class_count('mask_head.conv_cls.bias', 'an mmdetection 2.x/3.x SOLOv2 checkpoint (an original SOLO '
                            '.pth converts with convert/solo2paddle.py)')


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


SOLO_NOTES = """Original SOLO (WXinlong/SOLO, mmdetection 1.x) ``.pth`` -> this project's checkpoint.

Reads legacy and zip ``.pth`` files without PyTorch. Configs: SOLOv2 R50/R101 FPN (0, 8),
Light-448 R18/R34/R50 (5, 6, 1), Light-512 DCNv1 R50 (7).
"""
PPDET_NOTES = """PaddleDetection 2.x dygraph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Configs: solov2_r50_fpn_1x/3x_coco (0), solov2_r50_enhance_coco (3), solov2_r101_vd_fpn_3x_coco (4).
"""
PPDET_STATIC_NOTES = """PaddleDetection 0.5 static-graph SOLOv2 ``.pdparams`` -> this project's checkpoint.

Configs: solov2_r50_fpn_1x/3x (0), solov2_light_r50_vd_fpn_dcn_512_3x (2); not the 0.5
solov2_r101_vd_fpn_3x (its deformable head convs have no bias, unlike config 4). Optimizer,
learning-rate and EMA state is skipped by name (the parameters hold the EMA weights); any
other unused entry fails.
"""
MMDET_NOTES = """mmdetection 2.x / 3.x SOLOv2 ``.pth`` -> this project's checkpoint.

Reads the file without PyTorch. Configs: solov2_r50_fpn_1x/ms-3x (0), solov2_r101_fpn_ms-3x (8),
solov2_r101-dcn (10), solov2_x101-dcn (12), solov2-light_r18/r34/r50 (5, 6, 1), solov2-light_r50-dcn (11).
"""
TORCHVISION_NOTES = """torchvision ImageNet ResNet ``.pth`` -> a BACKBONE-ONLY checkpoint for training.

Reads the file without PyTorch. Configs, detected in this order: R50 (0; fits 1), R101 (8),
R18 (5), R34 (6); ``--config 7`` for the DCNv1 R50, whose DCN offset convs have no ImageNet
counterpart: INITIALISED WITH ZEROS, listed in the report and the sidecar.
"""
PADDLECLAS_NOTES = """PaddleClas ImageNet ResNet ``.pdparams`` (static names) -> a BACKBONE-ONLY checkpoint.

Configs, detected in this order: ResNet50_vd(_ssld) (2; 3 with ``--config 3``), ResNet101_vd (4),
ResNet50 / ResNet101 (0, 8). WARNING: every backbone DCN offset conv is INITIALISED WITH ZEROS
(modulation sigmoid(0) = 0.5: HALF the ImageNet response at first, as PaddleDetection and mmcv
start), listed in the report and the sidecar.
"""

CONVERTERS = {
    'solo': Converter(load_state_dict, solo_name, (0, 1, 5, 6, 7, 8), solo_classes, ignored=is_counter,
                      notes=SOLO_NOTES),
    'ppdet': Converter(load_paddle_params, ppdet_name, (0, 3, 4), ppdet_classes, aliases=duplicate_aliases,
                       notes=PPDET_NOTES),
    'ppdet-static': Converter(load_paddle_params, static_name, (0, 2), static_classes, ignored=is_bookkeeping,
                              notes=PPDET_STATIC_NOTES),
    'mmdet': Converter(mmdet_load, mmdet_name, (0, 8, 10, 12, 1, 5, 6, 11), mmdet_classes, ignored=is_counter,
                       notes=MMDET_NOTES),
    'paddleclas': imagenet_converter(load_paddle_params, static_backbone_name, (2, 4, 0, 8), ('fc_0.w_0', 'fc_0.b_0'),
                                     is_bookkeeping, PADDLECLAS_NOTES),
    'torchvision': imagenet_converter(load_state_dict, lambda key, cfg: backbone_name(key, prefix=''),
                                      (0, 8, 5, 6), ('fc.weight', 'fc.bias'), is_counter, TORCHVISION_NOTES)}
