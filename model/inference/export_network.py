"""The exportable part of SOLOv2 inference: ``ExportableSOLOv2``, the network plus sigmoid and
points-NMS, images [B, 3, H, W] (multiples of 32, no size baked in) -> ``scores`` [B, K, C],
``kernels`` [B, K, E], ``mask_feat`` [B, E, H/4, W/4] (K = sum of S*S, level order then
row-major); traced again with the ``regions`` input [B, 2] for size buckets (``SOLOv2.forward``).
``network_feed`` is what every runtime feeds either graph; the data-dependent rest stays in
Python (``postprocess.postprocess_flat``).
"""
import os
import warnings
from typing import Collection, Dict, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from solov2.core.errors import InputError
from solov2.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from solov2.model.inference.postprocess import flatten_levels
from solov2.model.solov2 import SOLOv2

SIZE_DIVISOR = 32
MIN_SIZE = 64          # P5 (stride 32) must be at least 2x2 for the CoordConv channels
INPUT_NAME = 'image'
TENSORRT_MAX_BATCH = 8      # the largest batch of TensorRT's optimisation profiles (Paddle Inference, onnxruntime)
REGIONS_NAME = 'regions'
OUTPUTS = (        # the one description of the network's outputs (infer_cfg.json, the demo's input dumps)
    {'name': 'scores', 'shape': ['B', 'K', 'C'],
     'meaning': 'sigmoid + points-NMS category scores, cells in level order then row-major'},
    {'name': 'kernels', 'shape': ['B', 'K', 'E'], 'meaning': 'dynamic mask kernels'},
    {'name': 'mask_feat', 'shape': ['B', 'E', 'Hr/4', 'Wr/4'],
     'meaning': 'mask features of the region the regions input gives (Hr, Wr: its largest over the batch)'},
)
OUTPUT_NAMES = tuple(output['name'] for output in OUTPUTS)


def input_description() -> dict:
    """The network input as a runtime must prepare it (infer_cfg.json, the demo's input dumps)."""
    return {
        'name': INPUT_NAME, 'layout': 'NCHW', 'dtype': 'float32', 'channels': 'RGB',
        'mean': list(IMAGENET_MEAN_RGB), 'std': list(IMAGENET_STD_RGB),
        'normalize': '(pixel - mean) / std per RGB channel, pixels 0..255',
        'resize': 'keep ratio: scale = min(test_short / short side, test_max / long side), '
                  'sides int(side * scale + 0.5), bilinear',
        'pad': f'zeros at the bottom/right to multiples of {SIZE_DIVISOR}',
        'size_divisor': SIZE_DIVISOR,
        'regions': {'name': REGIONS_NAME, 'shape': ['B', 2], 'dtype': 'int64',
                    'meaning': 'input of the regions graph only (model_regions.onnx): rows and columns of each '
                               f"image before any padding beyond its multiples of {SIZE_DIVISOR} (the batch's H, W "
                               'unless padded further)'},
    }


def network_feed(names: Collection[str], batch: np.ndarray, regions=None) -> Dict[str, np.ndarray]:
    """The inputs, by name, of an exported graph whose input names are ``names``: ``image`` =
    ``batch`` [B, 3, H, W] as contiguous float32 and, when the graph takes it, ``regions`` [B, 2]
    int64: ``regions`` (each image's rows and columns before further padding, [B, 2], or one
    (rows, cols) for every image; None: (H, W))."""
    feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
    if REGIONS_NAME in names:
        rows_cols = np.asarray(batch.shape[2:] if regions is None else regions, np.int64)
        feed[REGIONS_NAME] = np.ascontiguousarray(np.broadcast_to(rows_cols, (batch.shape[0], 2)))
    return feed


def outputs_text() -> str:
    """'scores [B, K, C], kernels [B, K, E], mask_feat [B, E, H/4, W/4]' (for messages)."""
    return ', '.join(f"{o['name']} [{', '.join(o['shape'])}]" for o in OUTPUTS)


class ExportableSOLOv2(nn.Layer):
    """SOLOv2 + ``flatten_levels``: the static-graph-friendly part of inference.
    The wrapped model is shared, not copied; its parameters keep their names under
    ``model.``."""

    def __init__(self, model: SOLOv2):
        super().__init__()
        self.model = model

    def forward(self, images: paddle.Tensor, regions: Optional[paddle.Tensor] = None
                ) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """images [B, 3, H, W] normalised, regions [B, 2] int64 (None: (H, W)) -> (scores
        [B, K, C], kernels [B, K, E], mask_feat [B, E, Hr/4, Wr/4])."""
        outputs = self.model(images, regions)
        return (*flatten_levels(outputs['cate_logits'], outputs['kernels']), outputs['mask_feat'])


def check_input_size(height: int, width: int, min_size: int, max_size: int) -> None:
    """Raise InputError unless H and W are multiples of 32 within an export's [min_size, max_size]."""
    for name, side in (('height', height), ('width', width)):
        if side % SIZE_DIVISOR:
            raise InputError(f'input {name} {side} is not a multiple of {SIZE_DIVISOR}')
        if not min_size <= side <= max_size:
            raise InputError(f'input {name} {side} is outside the exported range {min_size}..{max_size} — lower '
                             'test_short/test_max or export again with a larger max size')


def _trace_unconverted(net: nn.Layer) -> None:
    """Mark the toolkit's forwards in ``net`` to run as plain Python while ``to_static`` traces them
    (Paddle's own layers are never rewritten): none branches or loops on a tensor's value (sizes
    under tracing are tensors, handled in ``layers``), so rewriting their source (dy2static's AST
    pass, most of an export's time) changes nothing in the graph; it also spares Paddle 2.x's
    failure on a forward that calls ``super()`` without arguments."""
    for layer in net.sublayers(include_self=True):
        if not type(layer).__module__.startswith('paddle.'):
            paddle.jit.not_to_static(type(layer).forward)


def save_inference_model(model: SOLOv2, prefix: str, regions: bool = False) -> str:
    """Trace ``ExportableSOLOv2(model)`` with inputs [None, 3, None, None] (``regions``: and [None, 2])
    and ``paddle.jit.save`` it: PREFIX.json (Paddle >= 3) or PREFIX.pdmodel, plus PREFIX.pdiparams;
    returns the model file's path. The process's warning filters are put back afterwards."""
    model.eval()
    net = ExportableSOLOv2(model)
    net.eval()
    _trace_unconverted(net)
    spec = [InputSpec([None, 3, None, None], 'float32', INPUT_NAME)]
    spec += [InputSpec([None, 2], 'int64', REGIONS_NAME)] if regions else []
    with warnings.catch_warnings():
        paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), prefix)
    return next(prefix + suffix for suffix in ('.json', '.pdmodel') if os.path.isfile(prefix + suffix))
