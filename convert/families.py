"""Each source family's ``Converter`` (``convert.common``): how a checkpoint of that family is
read, renamed and checked. The commands (``convert/<source>2paddle.py``) and the published
checkpoints (``convert.zoo``) convert with these; ``CONVERTERS`` names them by the family
keys of ``convert.published``."""
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


SOLO = Converter(load_state_dict, solo_name, (0, 1, 5, 6, 7, 8), solo_classes, ignored=is_counter)
PPDET = Converter(load_paddle_params, ppdet_name, (0, 3, 4), ppdet_num_classes, aliases=duplicate_aliases)
PPDET_STATIC = Converter(load_paddle_params, static_name, (0, 2), static_classes, ignored=is_bookkeeping)
MMDET = Converter(mmdet_load, mmdet_name, (0, 8, 10, 12, 1, 5, 6, 11), mmdet_classes, ignored=is_counter)
TORCHVISION = imagenet_converter(load_state_dict, lambda key, cfg: backbone_name(key, prefix=''), (0, 8, 5, 6),
                                 torchvision_skipped)
PADDLECLAS = imagenet_converter(load_paddle_params, static_backbone_name, (2, 4, 0, 8), paddleclas_skipped)

CONVERTERS = {'solo': SOLO, 'ppdet': PPDET, 'ppdet05': PPDET_STATIC, 'mmdet': MMDET,
              'torchvision': TORCHVISION, 'paddleclas': PADDLECLAS}
