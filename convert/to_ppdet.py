"""The way back of ``families.CONVERTERS['ppdet']`` (``solov2 convert to-ppdet``, whose ``--help`` shows
``NOTES``: tools/convert.py), through the same rename table (``convert.ppdet_names``)."""
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from solov2.config import CONFIGS
from solov2.config.sidecar import MODEL_SETTINGS, recorded_settings, resolve_config
from solov2.convert.ppdet_names import ppdet_name, with_duplicates
from solov2.core.errors import InputError
from solov2.core.paddle_import import paddle
from solov2.data.files import check_output_file, make_folder, write_together
from solov2.model.build import model_shapes
from solov2.model.checkpoint import check_fit, load_paddle_params

NOTES = """This project's checkpoint (trained or converted) -> PaddleDetection 2.x ``.pdparams``.

The way back of convert/ppdet2paddle.py, through the same rename table: config 0 ->
solov2_r50_fpn_1x_coco / solov2_r50_fpn_3x_coco, 3 -> solov2_r50_enhance_coco,
4 -> solov2_r101_vd_fpn_3x_coco. The other configs have no PaddleDetection 2.x SOLOv2
config and are refused. The config comes from the checkpoint's sidecar (NAME.json) or
``--config``. Usage:
    python convert/paddle2ppdet.py output/0/best/model.pdparams solov2_r50_fpn_3x_coco.pdparams
"""
PPDET_CONFIGS = {0: 'solov2_r50_fpn_1x_coco or solov2_r50_fpn_3x_coco', 3: 'solov2_r50_enhance_coco',
                 4: 'solov2_r101_vd_fpn_3x_coco'}


def to_ppdet(state: Dict[str, np.ndarray], cfg, weights: str = 'the weights') -> Dict[str, np.ndarray]:
    """Our {name: array} (read from ``weights``) -> PaddleDetection's {name: float32 array},
    with the duplicate keys PaddleDetection's own state_dict holds; CheckpointError when
    ``state`` does not hold exactly the parameters of ``cfg`` (names and shapes)."""
    shapes = model_shapes(cfg)
    check_fit(shapes, state, weights, cfg.__name__)
    keys = frozenset(shapes)
    return with_duplicates({ppdet_name(k, keys, cfg): np.ascontiguousarray(state[k], dtype=np.float32) for k in shapes})


@dataclass(frozen=True)
class WrittenPpdet:
    """What ``write_ppdet`` wrote: ``output``, the weights of config ``number`` (``cfg``) as ``tensors``
    PaddleDetection tensors, and the network settings (``changed``, {name: value}) in which ``cfg`` differs
    from its config, which PaddleDetection's config needs too."""
    number: int
    cfg: type
    tensors: int
    changed: Dict[str, object]
    output: str


def write_ppdet(source: str, output: str, number: Optional[int] = None) -> WrittenPpdet:
    """Write ``source`` (config ``number``, else its sidecar's) as PaddleDetection's ``output``,
    atomically; what it wrote. InputError for a config PaddleDetection 2.x lacks."""
    path = check_output_file(output, [source])
    number, cfg = resolve_config(source, number)
    if number not in PPDET_CONFIGS:
        raise InputError(f'config {number} ({CONFIGS[number].__name__}) has no PaddleDetection 2.x SOLOv2 config '
                         f'— only configs {sorted(PPDET_CONFIGS)} map to one; deploy it with solov2 export / '
                         'tools/export_model.py instead')
    params = to_ppdet(load_paddle_params(source), cfg, source)
    make_folder(path.parent)
    write_together([(path, lambda target: paddle.save(params, target))])
    changed = {k: v for k, v in recorded_settings(cfg, number).items() if k in MODEL_SETTINGS}
    return WrittenPpdet(number, cfg, len(params), changed, output)
