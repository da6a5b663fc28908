"""mmdetection 2.x / 3.x SOLOv2 ``.pth`` -> this project's checkpoint.

Covers solov2_r50_fpn_1x/ms-3x (config 0), solov2_r101_fpn_ms-3x (8),
solov2_r101-dcn_fpn_ms-3x (10), solov2-light_r18/r34/r50_fpn_ms-3x (5, 6, 1) and
solov2-light_r50-dcn_fpn_ms-3x (11) and solov2_x101-dcn_fpn_ms-3x (12, ResNeXt-101 64x4d).
Reads the file without PyTorch. Usage:
    python convert/mmdet2paddle.py solov2_r50_fpn_1x_coco.pth weights/r50.pdparams
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.common import ConversionError, Converter, class_count, convert_file
from solov2.convert.mmdet_names import is_counter, mmdet_name
from solov2.convert.pth_reader import RefusedCheckpoint, load_state_dict
from solov2.tools.cli import run_converter


def num_classes(source: dict) -> int:
    """Category count from the category-prediction bias."""
    return class_count(source, 'mask_head.conv_cls.bias', 'an mmdetection 2.x/3.x SOLOv2 checkpoint (an original '
                       'SOLO .pth converts with convert/solo2paddle.py)')


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
        raise ConversionError(f"{refused} — an mmdetection 3.x training checkpoint? Keep only its weights with "
                         "mmdetection's tools/model_converters/publish_model.py, then convert that file") from None


CONVERTER = Converter(load, mmdet_name, (0, 8, 10, 12, 1, 5, 6, 11), num_classes, ignored=is_counter)


def main(argv=None) -> int:
    return run_converter(__doc__.split('\n')[0], lambda *args: convert_file(CONVERTER, *args).lines(), argv,
                         CONVERTER.default_configs)


if __name__ == '__main__':
    raise SystemExit(main())
