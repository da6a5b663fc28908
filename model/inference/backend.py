"""The engine interface: ``run``, the exportable network on a preprocessed batch and its regions ->
(scores [B, K, C], kernels [B, K, E], mask_feat [B, E, H/4, W/4]), with what a batch may hold.
One class per engine; ``pipeline.Predictor`` prepares and finishes pictures around one.
"""
import abc
import contextlib
from typing import ContextManager, List, Optional, Sequence, Tuple

import numpy as np

from solov2.core.errors import InputError, param
from solov2.data.transforms import batch_images
from solov2.model.inference.export_network import check_input_size
from solov2.model.inference.postprocess import as_numpy


class BackendError(InputError):
    """A backend cannot be created (missing files or packages, wrong folder)."""


class Backend(abc.ABC):
    """An engine: ``run``, the network's three outputs for a batch. ``mixes_sizes``: ``run`` takes
    several padded sizes a batch (``regions``, ``model.region``); ``max_batch``: the most pictures a
    batch may hold (0: any); ``fallback``: why this engine runs instead of the one asked for (None: as
    asked); ``pinned``: ``auto`` runs it because its cache entry pins it (``tools/cache.py bake --pin``);
    ``network_on_gpu``; ``device_outputs``: ``run`` gives Paddle tensors on that device (inside ``placed()``)."""
    name = 'backend'
    precision: Optional[str] = None     # OpenVINO's f32 | bf16 | int8, TensorRT's fp16 (None: float32)
    mixes_sizes = False
    fallback: Optional[str] = None
    pinned = False
    max_batch = 0
    network_on_gpu = False
    device_outputs = False

    def __init__(self, cfg, size_range: Optional[Tuple[int, int]] = None):
        self.cfg = cfg
        self.size_range = size_range

    @property
    def class_names(self) -> Sequence[str]:
        return self.cfg.class_names

    @property
    def label(self) -> str:
        """``name`` and ``precision`` where set: 'openvino bf16', 'onnx'."""
        return ' '.join(filter(None, (self.name, self.precision)))

    @abc.abstractmethod
    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None):
        """[B, 3, H, W] float32 -> (scores, kernels, mask_feat), numpy or paddle; ``regions``
        [B, 2] int64 (``mixes_sizes`` backends only): each image's own padded size, None: (H, W)."""

    def placed(self) -> ContextManager[None]:
        """The block Paddle ops on the engine's outputs run in (``device_outputs``: its device and
        threads, ``model.runtime.paddle_on``); nothing to set for an engine that answers numpy."""
        return contextlib.nullcontext()

    def run_numpy(self, batch: np.ndarray, regions: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """``run`` with numpy results."""
        return [as_numpy(t) for t in self.run(batch, regions)]

    def compile_ahead(self, max_batch: int, mixed: bool = False) -> None:
        """Compile or open now what batches of up to ``max_batch`` pictures (``mixed``: of several
        sizes) will need (here only ``check_batch``)."""
        self.check_batch(max_batch, 'max_batch')

    def expect(self, padded_hw: Tuple[int, int]) -> None:
        """A picture of ``padded_hw`` (H, W) is prepared and on its way to the network (``Predictor.prepare``):
        an engine that compiles a model per input size starts compiling its one now, beside the reading, so
        that the network waits for it at most (nothing here)."""

    def check_batch(self, size: int, option: str = 'batch_size') -> None:
        """InputError naming ``option`` when batches of ``size`` pictures are over ``max_batch``."""
        if self.max_batch and size > self.max_batch:
            raise InputError(f'the {self.name} engine through TensorRT takes batches of up to {self.max_batch} '
                             f'pictures (its optimisation profile), not {size}: pass ', param(option, self.max_batch),
                             ' or less, or open it without tensorrt')

    def run_size(self, padded_hw: Tuple[int, int]) -> Tuple[int, int]:
        """The input size a picture of ``padded_hw`` (H, W) runs at alone (with size buckets: its bucket)."""
        return tuple(padded_hw)

    def batch_regions(self, inputs: Sequence[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Preprocessed images [3, Hb, Wb] -> (batch [B, 3, H, W], regions [B, 2] of several sizes, else
        None); InputError for several sizes where the backend does not mix them."""
        self.check_batch(len(inputs))
        batch = batch_images(inputs)
        if self.size_range is not None:
            check_input_size(batch.shape[2], batch.shape[3], *self.size_range)
        sizes = np.asarray([chw.shape[1:] for chw in inputs], np.int64)
        if (sizes == batch.shape[2:]).all():
            return batch, None
        if not self.mixes_sizes:
            raise InputError(f'the {self.name} backend runs one input size a batch, not {sizes.tolist()}')
        return batch, sizes


def share_batches(sizes: Sequence[Tuple[int, int]], backend: Backend, max_batch: int = 0,
                  max_padding: float = 0.0) -> List[List[int]]:
    """Pictures of padded sizes ``sizes`` (H, W) as the batches ``backend`` runs (lists of indices, at
    most ``max_batch``, 0: any): the first picture left and each later one of its padded size, or
    where the backend mixes sizes, of its ``run_size`` or whose batch then has at most
    ``1 + max_padding`` times the pixels they run with alone."""
    def joins(members: List[int]) -> bool:
        runs = [backend.run_size(sizes[i]) if backend.mixes_sizes else tuple(sizes[i]) for i in members]
        if len(set(runs)) == 1:
            return True
        height, width = max(h for h, _ in runs), max(w for _, w in runs)
        return backend.mixes_sizes and len(runs) * height * width <= (1 + max_padding) * sum(h * w for h, w in runs)

    left, groups = list(range(len(sizes))), []
    while left:
        group = [left.pop(0)]
        for index in list(left):
            if max_batch and len(group) >= max_batch:
                break
            if joins(group + [index]):
                group.append(index)
                left.remove(index)
        groups.append(group)
    return groups
