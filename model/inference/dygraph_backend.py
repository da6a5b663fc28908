"""The 'dygraph' engine: config + weights -> the Paddle model, run on its own device and
threads; its outputs stay there as Paddle tensors (``device_outputs``: on a GPU the predictor
post-processes them there, ``device_postprocess``)."""
from typing import Optional, Tuple

import numpy as np
import paddle

from solov2.config.device import on_gpu
from solov2.config.sidecar import apply_sidecar, read_sidecar
from solov2.core.errors import param
from solov2.model.build import build_model
from solov2.model.checkpoint import CheckpointError, assign_params, load_paddle_params
from solov2.model.inference.backend import Backend
from solov2.model.inference.export_network import ExportableSOLOv2
from solov2.model.runtime import Placement, cpu_threads, default_device


class DygraphBackend(Backend):
    """The network of one config as the Paddle dygraph model: the 'dygraph' engine.

    Args:
        cfg: config class; the checkpoint sidecar's classes and recorded settings are
            applied to it (config.sidecar.apply_sidecar).
        weights: project checkpoint (.pdparams); None keeps the random init (tests).
        device: 'cpu' or 'gpu' (default: ``default_device()``).
        sidecar: apply the weights' sidecar to ``cfg``; False when ``cfg`` already comes from
            ``config.sidecar.resolve_config`` (the sidecar is then not read again).
        threads: CPU math threads (0: every core).
        model: a model built already (a training run's, in the mode its caller set), run as it is
            instead of one built from ``cfg`` and ``weights``.
    Paddle's device and threads are the process's: the model is built and run with its own
    (``model.runtime.paddle_on``, ``placement``, also ``placed()``), the process's put back after each call.
    """
    name = 'dygraph'
    mixes_sizes = True
    device_outputs = True

    def __init__(self, cfg, weights: Optional[str] = None, device: Optional[str] = None, sidecar: bool = True,
                 threads: int = 0, model: Optional[paddle.nn.Layer] = None, fallback: Optional[str] = None):
        self.placement = Placement(device or default_device(), cpu_threads(threads))
        self.network_on_gpu = on_gpu(self.placement.device)
        if model is None:
            with self.placement():
                cfg, model = checkpoint_model(cfg, weights, sidecar)
        super().__init__(cfg)
        self.model, self.net, self.fallback = model, ExportableSOLOv2(model), fallback

    def placed(self):
        """The model's device and threads for the block (``placement``)."""
        return self.placement()

    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None):
        """[B, 3, H, W] float32 (``regions`` [B, 2]: each image's own size) -> (scores [B, K, C],
        kernels [B, K, E], mask_feat [B, E, H/4, W/4])."""
        with self.placement(), paddle.no_grad():
            return self.net(paddle.to_tensor(batch), None if regions is None else paddle.to_tensor(regions))


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
    model = build_model(cfg, random_weights=params is None)
    if params is not None:
        try:
            assign_params(model, params, weights)
        except CheckpointError as exc:
            if meta is not None and 'config' in meta:
                raise CheckpointError(*exc.args, ' (it was made for ', param('config', meta['config']), ')')
            raise
    model.eval()
    return cfg, model
