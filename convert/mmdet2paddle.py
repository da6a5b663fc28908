"""mmdetection 2.x / 3.x SOLOv2 ``.pth`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/ms-3x (config 0), solov2_r101_fpn_ms-3x (8),
solov2_r101-dcn_fpn_ms-3x (10), solov2-light_r18/r34/r50_fpn_ms-3x (5, 6, 1) and
solov2-light_r50-dcn_fpn_ms-3x (11); not solov2_x101-dcn (no ResNeXt backbone here).
Reads the file without PyTorch. Usage:
    python convert/mmdet2paddle.py solov2_r50_fpn_1x_coco.pth weights/r50.pdparams
"""
import re

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from convert.common import converter_main
from convert.pth_reader import load_state_dict
from convert.solo2paddle import is_counter, solo_name, unit_name

TOWERS = {'kernel': 'kernel_convs', 'cate': 'cls_convs'}
PREDICTIONS = {'kernel': 'conv_kernel', 'cate': 'conv_cls'}
MASK_FEATURE = 'mask_head.mask_feature_head'


def mmdet_name(key: str, keys: frozenset, cfg) -> str:
    """This project's parameter name -> mmdetection 2.x/3.x name. Backbone (ResNet,
    DCN offsets at ``conv2.conv_offset``) and neck (FPN) are named as in the original
    SOLO; the head is ``mask_head`` with the mask-feature branch inside it."""
    m = re.fullmatch(r'head\.(kernel|cate)_tower\.(\d+)\.(.+)', key)
    if m:
        unit = f'mask_head.{TOWERS[m.group(1)]}.{m.group(2)}'
        return unit_name(m.group(3), f'{unit}.conv', f'{unit}.gn')
    m = re.fullmatch(r'head\.(kernel|cate)_pred\.(weight|bias)', key)
    if m:
        return f'mask_head.{PREDICTIONS[m.group(1)]}.{m.group(2)}'
    m = re.fullmatch(r'mask_head\.levels\.(\d)\.(\d)\.(.+)', key)
    if m:
        unit = f'{MASK_FEATURE}.convs_all_levels.{m.group(1)}.conv{m.group(2)}'
        return unit_name(m.group(3), f'{unit}.conv', f'{unit}.gn')
    m = re.fullmatch(r'mask_head\.pred\.(.+)', key)
    if m:   # a ConvModule of its own (the original SOLO wraps it in a Sequential: .0.)
        return unit_name(m.group(1), f'{MASK_FEATURE}.conv_pred.conv', f'{MASK_FEATURE}.conv_pred.gn')
    return solo_name(key, keys, cfg)


def num_classes(source: dict) -> int:
    """Category count from the category-prediction bias."""
    key = 'mask_head.conv_cls.bias'
    if key not in source:
        raise ValueError(f'{key} not found: not an mmdetection 2.x/3.x SOLOv2 checkpoint (an original '
                         f'SOLO .pth converts with convert/solo2paddle.py)')
    return source[key].shape[0]


def load(path: str) -> dict:
    """The checkpoint's ``state_dict`` as numpy arrays (2.x ``{meta, state_dict,
    optimizer}``, 3.x adds ``message_hub``...); a hint when mmengine objects in a
    training checkpoint are refused."""
    try:
        return load_state_dict(path)
    except ValueError as exc:
        if 'mmengine' not in str(exc):
            raise
        raise ValueError(f'{exc}. This looks like an mmdetection 3.x training checkpoint: keep only its '
                         f"weights with mmdetection's tools/model_converters/publish_model.py "
                         f'(saves meta and state_dict), then convert that file') from None


def main(argv=None) -> int:
    return converter_main(__doc__.split('\n')[0], load, mmdet_name,
                          default_configs=(0, 8, 10, 1, 5, 6, 11), num_classes_key=num_classes,
                          ignored=is_counter, argv=argv)


if __name__ == '__main__':
    raise SystemExit(main())
