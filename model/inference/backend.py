"""The inference interface every backend implements: ``prepare`` (numpy) -> the pipeline's
two stages: ``model_stage`` on the network's thread (``forward``: the network only) and
``finish_stage`` in ``finish_workers()`` workers (``finish_outputs``: post-processing and
masks on the original image); a backend that post-processes on its GPU does it all in
``model_stage``. ``run_network`` runs the first stage on pictures in batches, ``detect_picture``
both on one picture.

A backend's ``run`` returns the exportable network's three outputs for a preprocessed
batch: (scores [B, K, C], kernels [B, K, E], mask_feat [B, E, H/4, W/4]); the rest is
shared: ``postprocess_flat`` (threshold, dynamic convolution, Matrix NMS, top-k) and
``paste_detections``.
"""
import abc
from typing import List, Optional, Sequence, Tuple

import numpy as np
import paddle

from solov2.core.errors import InputError, param
from solov2.data.transforms import ImageMeta, batch_images, preprocess
from solov2.model.inference.export_network import check_input_size
from solov2.model.inference.postprocess import Detections, InferenceParams, paste_detections, postprocess_flat
from solov2.model.runtime import cpu_threads


def default_finish_workers(cores: Optional[int] = None, network_on_gpu: bool = False) -> int:
    """Finishing workers, at least one. With the network on the CPU: a quarter of the cores
    (post-processing of an image takes a fraction of the network's time on one core,
    docs/benchmark.md, so a few workers keep up while the network keeps most cores). With
    the network and the post-processing on a GPU the cores are free: all but three (the
    network's thread and two loaders) encode and draw."""
    cores = cores or cpu_threads()
    return max(1, cores - 3 if network_on_gpu else cores // 4)


class BackendError(InputError):
    """A backend cannot be created (missing files or packages, wrong folder)."""


class Backend(abc.ABC):
    """prepare (numpy) -> ``model_stage`` (the network) -> ``finish_stage`` (post-processing, masks
    on the original image). Subclasses implement ``run``: the exportable network's three outputs.
    ``mixes_sizes``: whether ``run`` takes pictures of several padded sizes in one batch
    (``regions``, ``model.region``), each computed as alone; ``max_batch``: the most pictures a
    batch may hold (0: any; through TensorRT, its optimisation profile's). ``fallback``: why this
    engine runs instead of the one asked for (``backend='auto'`` that could not export: one line;
    None: as asked). ``network_on_gpu``: the network runs on a GPU, leaving the CPU's cores to
    the finishing workers (``finish_workers``)."""
    name = 'backend'
    mixes_sizes = False
    fallback: Optional[str] = None
    fast_decode = False     # JPEGs decoded at the network's scale (``decode_fit``); open_backend sets it
    max_batch = 0
    network_on_gpu = False

    def __init__(self, cfg, size_range: Optional[Tuple[int, int]] = None):
        self.cfg = cfg
        self.params = InferenceParams.from_config(cfg)
        self.size_range = size_range

    @property
    def class_names(self) -> Sequence[str]:
        return self.cfg.class_names

    @property
    def decode_fit(self) -> Optional[Tuple[int, int]]:
        """The network input's (short, max_size) that a JPEG may be decoded reduced for
        (``data.transforms.decode_image``'s ``fit``) with ``fast_decode``, else None."""
        return (self.cfg.test_short, self.cfg.test_max) if self.fast_decode else None

    def prepare(self, image: np.ndarray) -> Tuple[np.ndarray, ImageMeta]:
        """[H, W, 3] uint8 RGB -> ([3, Hp, Wp] float32, sizes)."""
        return preprocess(image, self.cfg.test_short, self.cfg.test_max)

    @abc.abstractmethod
    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None):
        """[B, 3, H, W] float32 -> (scores, kernels, mask_feat), numpy or paddle; ``regions``
        [B, 2] int64 (``mixes_sizes`` backends only): each image's own padded size, None: (H, W)."""

    def run_numpy(self, batch: np.ndarray, regions: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """``run`` with numpy results."""
        return [t.numpy() if isinstance(t, paddle.Tensor) else np.asarray(t) for t in self.run(batch, regions)]

    def compile_ahead(self, max_batch: int, mixed: bool = False) -> None:
        """Compile or open now what batches of up to ``max_batch`` pictures (``mixed``: of
        several sizes) will need, so that no later call waits for it (here only
        ``check_batch``)."""
        self.check_batch(max_batch, 'max_batch')

    def check_batch(self, size: int, option: str = 'batch_size') -> None:
        """InputError naming ``option`` when batches of ``size`` pictures are over ``max_batch``."""
        if self.max_batch and size > self.max_batch:
            raise InputError(f'the {self.name} engine through TensorRT takes batches of up to {self.max_batch} '
                             f'pictures (its optimisation profile), not {size}: pass ', param(option, self.max_batch),
                             ' or less, or open it without tensorrt')

    def run_size(self, padded_hw: Tuple[int, int]) -> Tuple[int, int]:
        """The input size a picture of ``padded_hw`` (H, W) runs at alone (here itself; a
        backend that pads to size buckets: its bucket)."""
        return tuple(padded_hw)

    def batch(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocessed images [3, Hp, Wp] each -> their batch [B, 3, Hp, Wp], its size checked."""
        self.check_batch(len(inputs))
        batch = batch_images(inputs)
        if self.size_range is not None:
            check_input_size(batch.shape[2], batch.shape[3], *self.size_range)
        return batch

    def forward(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Preprocessed images -> the network's outputs for their batch, as numpy arrays
        (scores [B, K, C], kernels [B, K, E], mask_feat [B, E, H/4, W/4]); images of several
        sizes run as one batch with their sizes as ``regions`` (mask_feat then holds image b's
        own in its top-left [Hb/4, Wb/4]; ``finish_outputs`` crops it), where ``mixes_sizes``."""
        return self.run_numpy(*self.batch_regions(inputs))

    def batch_regions(self, inputs: Sequence[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Preprocessed images [3, Hb, Wb] each -> (their batch [B, 3, H, W], the regions [B, 2]
        of images of several sizes, None for one size); InputError for several sizes where
        the backend does not mix them."""
        batch = self.batch(inputs)
        sizes = np.asarray([chw.shape[1:] for chw in inputs], np.int64)
        if (sizes == batch.shape[2:]).all():
            return batch, None
        if not self.mixes_sizes:
            raise InputError(f'the {self.name} backend runs one input size a batch, not {sizes.tolist()}')
        return batch, sizes

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
        """Finishing workers for a pipeline: ``default_finish_workers`` for where the network runs."""
        return default_finish_workers(network_on_gpu=self.network_on_gpu)

    def finish_outputs(self, outputs: Sequence[np.ndarray], meta: ImageMeta,
                       params: Optional[InferenceParams] = None) -> Detections:
        """``forward``'s outputs for one image -> its instances on the original image (binary masks
        [N, H, W]): what a pipeline's worker does after the network (``postprocess_flat`` with
        ``params``, default ``self.params``, then ``paste_detections``; mask features cropped to
        the image's own padded size first)."""
        params = params or self.params
        scores, kernels, mask_feat = outputs
        own = mask_feat[..., :meta.padded_hw[0] // 4, :meta.padded_hw[1] // 4]
        return paste_detections(postprocess_flat(scores, kernels, own, params)[0], meta, params.mask_threshold)


def share_batches(sizes: Sequence[Tuple[int, int]], backend: Backend, max_batch: int = 0,
                  max_padding: float = 0.0) -> List[List[int]]:
    """Pictures of padded sizes ``sizes`` (H, W), grouped into the batches ``backend`` runs them
    in: lists of indices, each batch taking the first picture left and every later one that
    joins it (at most ``max_batch``, 0: any number). A picture joins pictures of its padded size,
    or, where the backend mixes sizes, of its run size (``run_size``: a size bucket), or any whose
    batch then has at most ``1 + max_padding`` times the pixels they run with alone."""
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


def run_network(backend: Backend, ready: Sequence[Tuple[np.ndarray, ImageMeta]],
                params: Optional[InferenceParams] = None, max_padding: float = 0.0) -> list:
    """``backend.model_stage``'s result for each prepared picture ((chw [3, Hp, Wp], meta)),
    ready for ``finish_stage``, in the batches ``share_batches`` groups them in (on a GPU
    post-processed there with ``params``, the call's thresholds): pictures of one padded size,
    or of several where the backend runs each as alone (``model.region``: size buckets, and any
    sizes with ``max_padding`` > 0), so a batch gives what one picture at a time gives."""
    outputs: list = [None] * len(ready)
    for indices in share_batches([chw.shape[1:] for chw, _ in ready], backend, max_padding=max_padding):
        staged = backend.model_stage([ready[i][0] for i in indices], [ready[i][1] for i in indices], params)
        for index, row in zip(indices, backend.staged_rows(staged)):
            outputs[index] = row
    return outputs


def detect_picture(backend: Backend, image: np.ndarray, params: Optional[InferenceParams] = None) -> Detections:
    """[H, W, 3] uint8 RGB -> its instances (masks [N, H, W] on it): the picture prepared and
    run alone through both stages (``run_network``, ``finish_stage``) with ``params``."""
    chw, meta = backend.prepare(image)
    return backend.finish_stage(run_network(backend, [(chw, meta)], params)[0], meta, params)
