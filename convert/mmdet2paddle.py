"""mmdetection 2.x / 3.x SOLOv2 ``.pth`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/ms-3x (config 0), solov2_r101_fpn_ms-3x (8),
solov2_r101-dcn_fpn_ms-3x (10), solov2-light_r18/r34/r50_fpn_ms-3x (5, 6, 1) and
solov2-light_r50-dcn_fpn_ms-3x (11) and solov2_x101-dcn_fpn_ms-3x (12, ResNeXt-101 64x4d).
Reads the file without PyTorch. Usage:
    python convert/mmdet2paddle.py solov2_r50_fpn_1x_coco.pth weights/r50.pdparams
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from convert.common import converter_main
from convert.pth_reader import RefusedCheckpoint, load_state_dict
from convert.solo2paddle import is_counter, mmdet_family_name

# mmdetection's SOLOV2Head is the detector's ``mask_head`` and holds the mask-feature
# branch (MaskFeatModule, whose conv_pred is a bare ConvModule: the original SOLO wraps
# it in a Sequential, ``.0``); backbone and neck are named as in the original SOLO.
MMDET_HEAD = {'kernel_tower': 'mask_head.kernel_convs', 'cate_tower': 'mask_head.cls_convs',
              'kernel_pred': 'mask_head.conv_kernel', 'cate_pred': 'mask_head.conv_cls',
              'levels': 'mask_head.mask_feature_head.convs_all_levels',
              'pred': 'mask_head.mask_feature_head.conv_pred'}


def mmdet_name(key: str, keys: frozenset, cfg) -> str:
    """This project's parameter name -> mmdetection 2.x/3.x name (DCN offsets at
    ``<conv>.conv_offset``, as mmcv's ModulatedDeformConv2dPack)."""
    return mmdet_family_name(key, MMDET_HEAD, 'mmdetection')


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
    except RefusedCheckpoint as exc:
        if not (exc.qualname or '').startswith('mmengine.'):
            raise
        refused = str(exc).split(' — ')[0]
        raise ValueError(f"{refused} — an mmdetection 3.x training checkpoint? Keep only its weights with "
                         "mmdetection's tools/model_converters/publish_model.py, then convert that file") from None


def main(argv=None) -> int:
    return converter_main(__doc__.split('\n')[0], load, mmdet_name,
                          default_configs=(0, 8, 10, 12, 1, 5, 6, 11), num_classes_key=num_classes,
                          ignored=is_counter, argv=argv)


if __name__ == '__main__':
    raise SystemExit(main())
