"""SOLOv2 inference post-processing as pure functions.

Dimension letters: K = sum of S*S over levels (grid cells), C classes, E kernel
channels, M candidates, N kept instances, Hf x Wf mask-feature size (1/4 of the
padded input).

Order (as in the original SOLO and PaddleDetection): sigmoid + points-NMS on the
category maps -> score threshold -> dynamic 1x1 conv -> binary masks -> drop masks
whose area <= level stride -> maskness re-scoring -> top ``nms_pre`` -> Matrix NMS ->
``update_threshold`` -> top ``max_per_image``. Masks stay at 1/4 resolution until
``paste_masks`` resizes them once to the original image.
"""
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import paddle
import paddle.nn.functional as F


@dataclass(frozen=True)
class InferenceParams:
    """Thresholds and sizes of the post-processing (see config.base for meanings)."""
    num_grids: Tuple[int, ...] = (40, 36, 24, 16, 12)
    segm_strides: Tuple[int, ...] = (8, 8, 16, 32, 32)
    score_threshold: float = 0.1
    mask_threshold: float = 0.5
    nms_pre: int = 500
    update_threshold: float = 0.05
    max_per_image: int = 100
    nms_kernel: str = 'gaussian'
    nms_sigma: float = 2.0

    @classmethod
    def from_config(cls, cfg) -> 'InferenceParams':
        """Take the matching fields of a config class."""
        return cls(**{name: getattr(cfg, name) for name in cls.__dataclass_fields__})

    def to_json(self) -> Dict:
        """The fields as JSON values (tuples as lists), as infer_cfg.json and the demo's
        input manifest store them."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, values: Dict) -> 'InferenceParams':
        """The inverse of ``to_json`` (lists back to tuples)."""
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in values.items()})


@dataclass
class Detections:
    """One image's instances, best first. ``masks`` are soft masks [N, Hf, Wf]
    float32 before ``paste_masks`` and binary [N, H, W] bool after it."""
    masks: np.ndarray
    labels: np.ndarray   # [N] int64, 0-based class index
    scores: np.ndarray   # [N] float32

    def __len__(self) -> int:
        return len(self.scores)


def points_nms(heat: paddle.Tensor) -> paddle.Tensor:
    """Keep only 2x2 local maxima. heat [B, C, S, S] (probabilities) -> same shape."""
    hmax = F.max_pool2d(heat, kernel_size=2, stride=1, padding=1)
    return heat * (hmax[:, :, :-1, :-1] == heat).astype(heat.dtype)


def flatten_levels(cate_logits: Sequence[paddle.Tensor], kernels: Sequence[paddle.Tensor]
                   ) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Per-level head outputs -> scores [B, K, C] (sigmoid + points-NMS) and
    kernels [B, K, E], cells in level order then row-major (index = i*S + j)."""
    scores = [points_nms(F.sigmoid(c)).transpose([0, 2, 3, 1]).flatten(1, 2)
              for c in cate_logits]                                   # [B, S*S, C] each
    flat_kernels = [k.transpose([0, 2, 3, 1]).flatten(1, 2) for k in kernels]  # [B, S*S, E]
    return paddle.concat(scores, axis=1), paddle.concat(flat_kernels, axis=1)


def cell_strides(num_grids: Sequence[int], segm_strides: Sequence[int]) -> np.ndarray:
    """Stride of every grid cell's level, [K] float32 (area filter threshold)."""
    return np.concatenate([np.full(s * s, stride, np.float32)
                           for s, stride in zip(num_grids, segm_strides)])


def matrix_nms(masks: paddle.Tensor, labels: paddle.Tensor, scores: paddle.Tensor,
               areas: paddle.Tensor, kernel: str = 'gaussian', sigma: float = 2.0
               ) -> paddle.Tensor:
    """Matrix NMS (SOLOv2 paper, decay written as the released code does).

    Args:
        masks: [N, P] binary float masks, sorted by score, best first.
        labels: [N] class of each mask.
        scores: [N] scores, descending.
        areas: [N] pixel count of each mask.
        kernel: 'gaussian' (exp(-sigma * iou^2)) or 'linear' (1 - iou).
    Returns:
        [N] decayed scores. Mask j is decayed by the most-overlapping
        higher-scored mask i of its class, compensated by how much i itself
        was overlapped: min_i f(iou_ij) / f(max_k iou_ki).
    """
    count = masks.shape[0]
    inter = paddle.matmul(masks, masks, transpose_y=True)                      # [N, N]
    union = areas.unsqueeze(0) + areas.unsqueeze(1) - inter
    iou = paddle.triu(inter / union, diagonal=1)
    same = paddle.triu((labels.unsqueeze(0) == labels.unsqueeze(1)).astype(masks.dtype),
                       diagonal=1)
    decay_iou = iou * same                                                     # [N, N]
    compensate = decay_iou.max(axis=0).unsqueeze(1).expand([count, count])     # row i: max_k iou_ki
    if kernel == 'gaussian':
        decay = paddle.exp(-sigma * decay_iou ** 2) / paddle.exp(-sigma * compensate ** 2)
    elif kernel == 'linear':
        decay = (1 - decay_iou) / (1 - compensate)
    else:
        raise ValueError(f"unknown Matrix NMS kernel '{kernel}' (expected 'gaussian' or 'linear')")
    return scores * decay.min(axis=0)


def _empty(mask_hw: Sequence[int]) -> Detections:
    return Detections(np.zeros((0, *mask_hw), np.float32), np.zeros(0, np.int64),
                      np.zeros(0, np.float32))


def _top(scores: paddle.Tensor, k: int) -> paddle.Tensor:
    """Indices of the k best scores, best first."""
    if scores.shape[0] > k:
        return paddle.topk(scores, k)[1]
    return paddle.argsort(scores, descending=True)


CHUNK_ELEMENTS = 1 << 24   # candidate-mask values materialised at once (64 MB float32)


def _mask_statistics(kernels: paddle.Tensor, feat: paddle.Tensor, mask_threshold: float
                     ) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Area and mean soft value inside the binary mask for every candidate,
    computed in chunks so memory stays bounded for any candidate count.
    kernels [M, E], feat [E, P] -> areas [M], maskness [M]."""
    chunk = max(1, CHUNK_ELEMENTS // feat.shape[1])
    areas, inside = [], []
    for start in range(0, kernels.shape[0], chunk):
        soft = F.sigmoid(paddle.matmul(kernels[start:start + chunk], feat))   # [m, P]
        binary = (soft > mask_threshold).astype(soft.dtype)
        areas.append(binary.sum(axis=1))
        inside.append((soft * binary).sum(axis=1))
    areas, inside = paddle.concat(areas), paddle.concat(inside)
    return areas, inside / paddle.clip(areas, min=1.0)


def segment_image(scores: paddle.Tensor, kernels: paddle.Tensor, mask_feat: paddle.Tensor,
                  strides: paddle.Tensor, params: InferenceParams) -> Detections:
    """One image: scores [K, C], kernels [K, E], mask_feat [E, Hf, Wf], strides [K]
    -> Detections with soft masks [N, Hf, Wf] (N may be 0)."""
    mask_hw = mask_feat.shape[1:]
    feat = mask_feat.flatten(1)                                                # [E, P]
    candidates = paddle.nonzero(scores > params.score_threshold)              # [M, 2]
    if candidates.shape[0] == 0:
        return _empty(mask_hw)
    cells, labels = candidates[:, 0], candidates[:, 1]
    cand_kernels = paddle.gather(kernels, cells)                              # [M, E]
    areas, maskness = _mask_statistics(cand_kernels, feat, params.mask_threshold)
    keep = paddle.nonzero(areas > paddle.gather(strides, cells)).flatten()    # drop tiny masks
    if keep.shape[0] == 0:
        return _empty(mask_hw)
    cand_scores = paddle.gather(paddle.gather_nd(scores, candidates) * maskness, keep)
    top = _top(cand_scores, params.nms_pre)
    best = paddle.gather(keep, top)                                           # [n] into M
    cand_scores = paddle.gather(cand_scores, top)
    labels, areas = paddle.gather(labels, best), paddle.gather(areas, best)
    soft = F.sigmoid(paddle.matmul(paddle.gather(cand_kernels, best), feat))  # [n, P]
    binary = (soft > params.mask_threshold).astype(soft.dtype)
    decayed = matrix_nms(binary, labels, cand_scores, areas, params.nms_kernel, params.nms_sigma)

    keep = paddle.nonzero(decayed >= params.update_threshold).flatten()
    if keep.shape[0] == 0:
        return _empty(mask_hw)
    order = paddle.gather(keep, _top(paddle.gather(decayed, keep), params.max_per_image))
    return Detections(paddle.gather(soft, order).reshape([-1, *mask_hw]).numpy(),
                      paddle.gather(labels, order).numpy().astype(np.int64),
                      paddle.gather(decayed, order).numpy())


def _as_tensor(array) -> paddle.Tensor:
    """A paddle tensor as is; a numpy array (or anything array-like) as float32."""
    if isinstance(array, paddle.Tensor):
        return array
    return paddle.to_tensor(np.ascontiguousarray(array, dtype=np.float32))


def postprocess_flat(scores, kernels, mask_feat, params: InferenceParams) -> List[Detections]:
    """The data-dependent part of inference, after the exportable network
    (``model.inference.exportable.ExportableSOLOv2``): scores [B, K, C] (sigmoid + points-NMS),
    kernels [B, K, E], mask_feat [B, E, Hf, Wf], numpy arrays or paddle tensors ->
    one Detections (soft masks) per image."""
    scores, kernels, mask_feat = _as_tensor(scores), _as_tensor(kernels), _as_tensor(mask_feat)
    cells = sum(s * s for s in params.num_grids)
    if scores.shape[1] != cells or kernels.shape[1] != cells:
        raise ValueError(f'the network outputs {scores.shape[1]} grid cells but num_grids '
                         f'{tuple(params.num_grids)} has {cells}')
    strides = paddle.to_tensor(cell_strides(params.num_grids, params.segm_strides))
    return [segment_image(scores[b], kernels[b], mask_feat[b], strides, params)
            for b in range(mask_feat.shape[0])]


def postprocess(outputs: Dict, params: InferenceParams) -> List[Detections]:
    """Network outputs of a batch -> one Detections (soft masks) per image."""
    scores, kernels = flatten_levels(outputs['cate_logits'], outputs['kernels'])
    return postprocess_flat(scores, kernels, outputs['mask_feat'], params)


def paste_masks(soft_masks: np.ndarray, resized_hw: Sequence[int], orig_hw: Sequence[int],
                mask_threshold: float = 0.5) -> np.ndarray:
    """Soft masks [N, Hf, Wf] at 1/4 of the padded input -> binary [N, H, W] bool
    on the original image: bilinear x4 to the padded size, crop the resized image
    area, bilinear to the original size, threshold (PaddleDetection's order)."""
    count, feat_h, feat_w = soft_masks.shape
    out = np.zeros((count, *orig_hw), dtype=bool)
    height, width = resized_hw
    for i in range(count):
        padded = cv2.resize(soft_masks[i], (feat_w * 4, feat_h * 4), interpolation=cv2.INTER_LINEAR)
        crop = padded[:height, :width]
        if (height, width) != tuple(orig_hw):
            crop = cv2.resize(crop, (orig_hw[1], orig_hw[0]), interpolation=cv2.INTER_LINEAR)
        out[i] = crop > mask_threshold
    return out


def paste_detections(detections: Detections, meta, mask_threshold: float = 0.5) -> Detections:
    """``paste_masks`` on a Detections: soft masks [N, Hf, Wf] -> binary [N, H, W] bool on
    the original image (``meta``: an ImageMeta with resized_hw and orig_hw)."""
    masks = paste_masks(detections.masks, meta.resized_hw, meta.orig_hw, mask_threshold)
    return Detections(masks, detections.labels, detections.scores)
