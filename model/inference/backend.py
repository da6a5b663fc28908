"""The inference interface every backend implements: ``prepare`` (numpy) -> ``infer``
(network + post-processing) -> ``finish`` (masks on the original image). Pipelines split
the work in two stages: ``model_stage`` on the network's thread (``forward``: the network
only) and ``finish_stage`` in ``finish_workers()`` workers (``finish_outputs``: ``detect`` +
``finish``); a backend that post-processes on its GPU does it all in ``model_stage``.

A backend's ``run`` returns the exportable network's three outputs for a preprocessed
batch: (scores [B, K, C], kernels [B, K, E], mask_feat [B, E, H/4, W/4]); the rest is
shared: ``postprocess_flat`` (threshold, dynamic convolution, Matrix NMS, top-k) and
``paste_detections``.
"""
import abc
from typing import List, Optional, Sequence, Tuple

import numpy as np
import paddle

from solov2.core.errors import InputError
from solov2.data.transforms import ImageMeta, batch_images, preprocess
from solov2.model.inference.export_network import check_input_size
from solov2.model.inference.pipeline import default_finish_workers
from solov2.model.inference.postprocess import Detections, InferenceParams, paste_detections, postprocess_flat


class BackendError(InputError):
    """A backend cannot be created (missing files or packages, wrong folder)."""


class Backend(abc.ABC):
    """prepare (numpy) -> infer (network + post-processing) -> finish (masks on the
    original image). Subclasses implement ``run``: the exportable network's three outputs."""
    name = 'backend'

    def __init__(self, cfg, size_range: Optional[Tuple[int, int]] = None):
        self.cfg = cfg
        self.params = InferenceParams.from_config(cfg)
        self.size_range = size_range

    @property
    def class_names(self) -> Sequence[str]:
        return self.cfg.class_names

    def prepare(self, image: np.ndarray) -> Tuple[np.ndarray, ImageMeta]:
        """[H, W, 3] uint8 RGB -> ([3, Hp, Wp] float32, sizes)."""
        return preprocess(image, self.cfg.test_short, self.cfg.test_max)

    @abc.abstractmethod
    def run(self, batch: np.ndarray):
        """[B, 3, H, W] float32 -> (scores, kernels, mask_feat), numpy or paddle."""

    def run_numpy(self, batch: np.ndarray) -> List[np.ndarray]:
        """``run`` with numpy results."""
        return [t.numpy() if isinstance(t, paddle.Tensor) else np.asarray(t) for t in self.run(batch)]

    def batch(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocessed images [3, Hp, Wp] each -> their batch [B, 3, Hp, Wp], its size checked."""
        batch = batch_images(inputs)
        if self.size_range is not None:
            check_input_size(batch.shape[2], batch.shape[3], *self.size_range)
        return batch

    def forward(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Preprocessed images -> the network's outputs for their batch, as numpy arrays
        (scores [B, K, C], kernels [B, K, E], mask_feat [B, E, H/4, W/4])."""
        return self.run_numpy(self.batch(inputs))

    def model_stage(self, inputs: Sequence[np.ndarray], metas: Sequence[ImageMeta],
                    params: Optional[InferenceParams] = None):
        """A pipeline's network-thread work for preprocessed images ([inputs], [metas]; here
        ``forward``, ``params`` unused); what it returns goes, split by ``staged_rows``, to
        ``finish_stage``."""
        return self.forward(inputs)

    def staged_rows(self, staged) -> list:
        """``model_stage``'s result for a batch -> one ``finish_stage`` input per image."""
        return [[array[row:row + 1] for array in staged] for row in range(len(staged[0]))]

    def finish_stage(self, staged, meta: ImageMeta, params: Optional[InferenceParams] = None) -> Detections:
        """A pipeline's worker work on ``model_stage``'s result for one image: the instances on
        the original image (here ``finish_outputs``). ``params`` (default ``self.params``) must
        be those given to ``model_stage``."""
        return self.finish_outputs(staged, meta, params)

    def finish_workers(self) -> int:
        """Finishing workers for a pipeline (``pipeline.default_finish_workers``: the
        network here runs on the CPU's cores)."""
        return default_finish_workers()

    def detect(self, outputs: Sequence[np.ndarray], params: Optional[InferenceParams] = None) -> List[Detections]:
        """``forward``'s outputs -> soft-mask detections (one per image, [N, Hf, Wf]), selected with
        ``params`` (default ``self.params``; a call's thresholds: ``model.api.segmenter.per_call_params``)."""
        return postprocess_flat(*outputs, params or self.params)

    def infer(self, inputs: Sequence[np.ndarray]) -> List[Detections]:
        """Preprocessed images -> soft-mask detections (one per image, [N, Hf, Wf])."""
        return self.detect(self.forward(inputs))

    def finish(self, detections: Detections, meta: ImageMeta) -> Detections:
        """Soft masks -> binary masks [N, H, W] bool on the original image."""
        return paste_detections(detections, meta, self.params.mask_threshold)

    def finish_outputs(self, outputs: Sequence[np.ndarray], meta: ImageMeta,
                       params: Optional[InferenceParams] = None) -> Detections:
        """``forward``'s outputs for one image -> its instances on the original image: what
        a pipeline's worker does after the network (``detect`` with ``params``, then ``finish``)."""
        return self.finish(self.detect(outputs, params)[0], meta)

    def __call__(self, image: np.ndarray) -> Detections:
        inputs, meta = self.prepare(image)
        return self.finish(self.infer([inputs])[0], meta)
