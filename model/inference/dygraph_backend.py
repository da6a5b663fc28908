"""Config + weights -> instances on images, in the pipeline's stages of ``backend.Backend``:
``prepare`` (numpy), ``model_stage`` (Paddle) and ``finish_stage`` (numpy/OpenCV). On a GPU
the post-processing runs there too (``device_postprocess``), and only the kept instances
come back."""
from typing import Optional, Sequence, Tuple

import numpy as np
import paddle

from solov2.config.device import on_gpu
from solov2.config.sidecar import apply_sidecar, read_sidecar
from solov2.core.errors import param
from solov2.data.transforms import ImageMeta
from solov2.model.build import build_model
from solov2.model.checkpoint import CheckpointError, assign_params, load_paddle_params
from solov2.model.inference.backend import Backend
from solov2.model.inference.device_postprocess import postprocess_on_device
from solov2.model.inference.export_network import ExportableSOLOv2
from solov2.model.inference.postprocess import Detections, InferenceParams
from solov2.model.runtime import Placement, cpu_threads, default_device


class DygraphBackend(Backend):
    """SOLOv2 inference for one config with the Paddle dygraph model: the 'dygraph'
    backend (``prepare`` and ``finish_outputs`` come from ``Backend``).

    Args:
        cfg: config class; the checkpoint sidecar's classes and recorded settings are
            applied to it (config.sidecar.apply_sidecar).
        weights: project checkpoint (.pdparams); None keeps the random init (tests).
        device: 'cpu' or 'gpu' (default: ``default_device()``).
        sidecar: apply the weights' sidecar to ``cfg``; False when ``cfg`` already comes from
            ``config.sidecar.resolve_config`` (the sidecar is then not read again).
        threads: CPU math threads (0: every core).
        on_device: post-process with Paddle ops where the network runs
            (``device_postprocess``; default: on a GPU; the numpy path is faster on a CPU).
        model: a model built already (a training run's, in the mode its caller set), run as it is
            instead of one built from ``cfg`` and ``weights``.
    Paddle's device and threads are the process's: the model is built and run with its own
    (``model.runtime.paddle_on``), the process's put back after each call.
    """
    name = 'dygraph'
    mixes_sizes = True

    def __init__(self, cfg, weights: Optional[str] = None, device: Optional[str] = None, sidecar: bool = True,
                 threads: int = 0, on_device: Optional[bool] = None, model: Optional[paddle.nn.Layer] = None):
        self.placed = Placement(device or default_device(), cpu_threads(threads))
        self.network_on_gpu = on_gpu(self.placed.device)
        self.on_device = self.network_on_gpu if on_device is None else on_device
        if model is None:
            with self.placed():
                cfg, model = checkpoint_model(cfg, weights, sidecar)
        super().__init__(cfg)
        self.model, self.net = model, ExportableSOLOv2(model)

    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None):
        """[B, 3, H, W] float32 (``regions`` [B, 2]: each image's own size) -> (scores [B, K, C],
        kernels [B, K, E], mask_feat [B, E, H/4, W/4])."""
        with self.placed(), paddle.no_grad():
            return self.net(paddle.to_tensor(batch), None if regions is None else paddle.to_tensor(regions))

    def model_stage(self, inputs: Sequence[np.ndarray], metas: Sequence[ImageMeta],
                    params: Optional[InferenceParams] = None):
        """``on_device``: the network and all the post-processing with ``params`` (default
        ``self.params``; pasted crops come back, one Detections per image); else ``forward``
        (the numpy post-processing is left to ``finish_stage``)."""
        if not self.on_device:
            return super().model_stage(inputs, metas, params)
        with self.placed(), paddle.no_grad():
            return postprocess_on_device(*self.run(*self.batch_regions(inputs)), params or self.params, metas)

    def staged_rows(self, staged) -> list:
        """``model_stage``'s result for a batch -> one ``finish_stage`` input per image."""
        return [[detections] for detections in staged] if self.on_device else super().staged_rows(staged)

    def finish_stage(self, staged, meta: ImageMeta, params: Optional[InferenceParams] = None) -> Detections:
        """The instances of ``model_stage``'s one image: finished there when ``on_device``."""
        return staged[0] if self.on_device else super().finish_stage(staged, meta, params)


def checkpoint_model(cfg, weights: Optional[str], sidecar: bool = True) -> Tuple[type, paddle.nn.Layer]:
    """(``cfg`` with the sidecar of ``weights`` applied where ``sidecar``, its model in eval mode with
    ``weights`` loaded; random where None), built on Paddle's current device; CheckpointError for
    weights that do not fit (naming the config they were made for)."""
    params = load_paddle_params(weights) if weights else None   # read (safely) before building
    meta = read_sidecar(weights) if weights and sidecar else None
    if meta is not None:
        try:
            cfg = apply_sidecar(cfg, meta)
        except ValueError as exc:
            raise CheckpointError(f'{weights}: ', *exc.args) from None
    model = build_model(cfg)
    if params is not None:
        try:
            assign_params(model, params, weights)
        except CheckpointError as exc:
            if meta is not None and 'config' in meta:
                raise CheckpointError(*exc.args, ' (it was made for ', param('config', meta['config']), ')')
            raise
    model.eval()
    return cfg, model


__all__ = ['DygraphBackend', 'CheckpointError']
