"""Config + weights -> instances on images. Split in three steps so a pipeline can
run them on different threads: ``prepare`` (numpy), ``infer`` (Paddle) and
``finish`` (numpy/OpenCV)."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import paddle

from config import with_classes
from data.transforms import ImageMeta, batch_images, preprocess
from model.build import build_model
from model.checkpoint import CheckpointError, load_weights, read_sidecar
from model.postprocess import Detections, InferenceParams, paste_masks, postprocess
from model.runtime import default_device


class Predictor:
    """SOLOv2 inference for one config.

    Args:
        cfg: config class; its class list is replaced by the checkpoint sidecar's.
        weights: project checkpoint (.pdparams); None keeps the random init (tests).
        device: 'cpu' or 'gpu' (default: ``default_device()``).
    """

    def __init__(self, cfg, weights: Optional[str] = None, device: Optional[str] = None):
        if device is not None or weights is not None:
            paddle.set_device(device or default_device())
        meta = read_sidecar(weights) if weights else None
        if meta is not None:
            cfg = with_classes(cfg, meta['num_classes'], meta.get('class_names'))
        self.cfg = cfg
        self.model = build_model(cfg)
        if weights:
            try:
                load_weights(self.model, weights)
            except CheckpointError as exc:
                if meta is not None and 'config' in meta:
                    raise CheckpointError(f"{exc} (it was made for --config={meta['config']})")
                raise
        self.model.eval()
        self.params = InferenceParams.from_config(cfg)

    @classmethod
    def for_model(cls, model: paddle.nn.Layer, cfg) -> 'Predictor':
        """A predictor around an existing (e.g. training) model, on the current device."""
        predictor = cls.__new__(cls)
        predictor.cfg, predictor.model = cfg, model
        predictor.params = InferenceParams.from_config(cfg)
        return predictor

    @property
    def class_names(self) -> Sequence[str]:
        return self.cfg.class_names

    def prepare(self, image: np.ndarray) -> Tuple[np.ndarray, ImageMeta]:
        """[H, W, 3] uint8 RGB -> ([3, Hp, Wp] float32, sizes)."""
        return preprocess(image, self.cfg.test_short, self.cfg.test_max)

    def infer(self, inputs: Sequence[np.ndarray]) -> List[Detections]:
        """Preprocessed images -> soft-mask detections (one per image, [N, Hf, Wf])."""
        with paddle.no_grad():
            outputs = self.model(paddle.to_tensor(batch_images(inputs)))
            return postprocess(outputs, self.params)

    def finish(self, detections: Detections, meta: ImageMeta) -> Detections:
        """Soft masks -> binary masks [N, H, W] bool on the original image."""
        masks = paste_masks(detections.masks, meta.resized_hw, meta.orig_hw,
                            self.params.mask_threshold)
        return Detections(masks, detections.labels, detections.scores)

    def __call__(self, image: np.ndarray) -> Detections:
        """One image [H, W, 3] uint8 RGB -> Detections on it."""
        inputs, meta = self.prepare(image)
        return self.finish(self.infer([inputs])[0], meta)


__all__ = ['Predictor', 'CheckpointError']
