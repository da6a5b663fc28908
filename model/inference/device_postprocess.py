"""The post-processing of ``postprocess.py`` as Paddle ops on the network's device: only the
kept instances come back, each mask cropped to its box (``CroppedMasks``). The numpy path's
instances (``postprocess_flat`` + ``paste_in_boxes``): the same candidates, ranking and tie order,
Matrix NMS (other classes decay by exactly 1) and paste matrices (``_Axis``), so labels and order
match, scores to float rounding, masks but at threshold ties. The mask logits' products run with
cuBLAS TF32 off (TF32 would move them by ~1e-3 and swap near ties; ``runtime.tf32_off``), in
float32, or float64 where FP64 is fast or Paddle has no switch (``product_dtype``). The same code
runs on the CPU in the tests. Letters as in ``postprocess.py``; P = Hf * Wf, H x W the picture.
"""
import contextlib
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.base import core

from solov2.data.masks import CroppedMasks
from solov2.model.inference.postprocess import SCAN_LIMIT, Detections, InferenceParams, _Axis, checked_strides, decays
from solov2.model.runtime import tf32_off

ROWS_PER_STEP = 128   # candidates whose [rows, P] logits are made at once (bounds the device memory)
PASTE_BYTES = 1 << 30     # device memory the paste's masks take at once, at most (past one mask)
PASTE_PIXEL_BYTES = 10    # a pasted pixel of a mask at its peak: bool, the box's bool, int32, int32 selected
FAST_FP64 = ((6, 0), (7, 0), (8, 0), (9, 0), (10, 0))   # compute capabilities with FP64 at half FP32's rate


def product_dtype(capability: Optional[Tuple[int, int]], switch: bool) -> str:
    """The mask logits' products' dtype on compute ``capability`` (None: the CPU), ``switch``: Paddle
    has its cuBLAS TF32 switch. float32 on the CPU and on GPUs of slow FP64 (T4, RTX, L4, L40S);
    float64 where FP64 is fast (``FAST_FP64``) or no switch can turn TF32 off."""
    return 'float64' if capability is not None and (tuple(capability) in FAST_FP64 or not switch) else 'float32'


def device_capability(place) -> Optional[Tuple[int, int]]:
    """The compute capability (major, minor) of the GPU of ``place``; None on the CPU."""
    return tuple(paddle.device.cuda.get_device_capability(place.gpu_device_id())) if place.is_gpu_place() else None


def paste_step(height: int, width: int, budget: int = PASTE_BYTES) -> int:
    """Masks pasted at once on a ``height`` x ``width`` picture: as many as ``budget`` bytes hold
    at ``PASTE_PIXEL_BYTES`` a pixel, at least one."""
    return max(1, budget // (PASTE_PIXEL_BYTES * height * width))


def ranked(values: paddle.Tensor, k: Optional[int] = None) -> paddle.Tensor:
    """Positions of the ``k`` largest of ``values`` [n], best first, ties in ascending position
    (numpy's stable sort of the negated values), keyed on dense rank and position."""
    n = values.shape[0]
    order = paddle.argsort(values)
    ascending = paddle.gather(values, order)
    steps = paddle.concat([paddle.ones([1], 'int64'), (ascending[1:] != ascending[:-1]).astype('int64')])
    rank = paddle.scatter(paddle.zeros([n], 'int64'), order, paddle.cumsum(steps))
    return paddle.argsort(rank * n + (n - 1 - paddle.arange(n, dtype='int64')), descending=True)[:k]


def _logits(kernels: paddle.Tensor, feat: paddle.Tensor) -> paddle.Tensor:
    """Mask logits [r, P] float32 of kernels [r, E] over feat [E, P], in feat's dtype."""
    return paddle.matmul(kernels.astype(feat.dtype), feat).astype('float32')


def _statistics(kernels: paddle.Tensor, feat: paddle.Tensor, logit_threshold: float):
    """Areas [m] and maskness [m] float32 (summed in float64, as numpy) of kernels [m, E] over feat [E, P]."""
    areas, maskness = [], []
    for start in range(0, kernels.shape[0], ROWS_PER_STEP):
        logits = _logits(kernels[start:start + ROWS_PER_STEP], feat)              # [r, P]
        inside = (logits > logit_threshold).astype('float32')
        count = inside.sum(axis=1)
        total = (F.sigmoid(logits) * inside).astype('float64').sum(axis=1)
        areas.append(count)
        maskness.append((total / paddle.clip(count, min=1).astype('float64')).astype('float32'))
    return paddle.concat(areas), paddle.concat(maskness)


def matrix_nms(binary: paddle.Tensor, labels: paddle.Tensor, scores: paddle.Tensor, areas: paddle.Tensor,
               kernel: str, sigma: float) -> paddle.Tensor:
    """Matrix NMS of binary masks [n, P] float32 (0/1, best first) with labels [n], scores
    [n] and areas [n] -> decayed scores [n] (``postprocess.matrix_nms`` on one matrix)."""
    inter = paddle.matmul(binary, binary, transpose_y=True)    # exact, TF32 too: 0/1 terms, integer sums < 2^24
    union = areas.unsqueeze(0) + areas.unsqueeze(1) - inter
    same = (labels.unsqueeze(1) == labels.unsqueeze(0)).astype('float32')
    iou = paddle.triu(inter / union, diagonal=1) * same
    return scores * decays(iou, paddle.exp, kernel, sigma)


def select_instances(scores, kernels, feat, strides, params: InferenceParams):
    """One image: scores [K, C], kernels [K, E], feat [E, P], strides [K] -> (cells [N], labels [N],
    decayed scores [N]) of the kept instances, best first, or None when there are none."""
    hits = paddle.nonzero(scores > params.score_threshold)                     # [M, 2]
    if hits.shape[0] == 0:
        return None
    cells, labels = hits[:, 0], hits[:, 1]
    category = paddle.gather_nd(scores, hits)
    visit = paddle.sort(ranked(category, SCAN_LIMIT * max(1, params.nms_pre)))  # candidate order
    cells, labels, category = (paddle.gather(t, visit) for t in (cells, labels, category))
    cand_kernels = paddle.gather(kernels, cells)
    logit_threshold = math.log(params.mask_threshold / (1 - params.mask_threshold))
    areas, maskness = _statistics(cand_kernels, feat, logit_threshold)
    kept = paddle.nonzero(areas > paddle.gather(strides, cells)).flatten()
    if kept.shape[0] == 0:
        return None
    top = paddle.gather(kept, ranked(paddle.gather(category * maskness, kept), params.nms_pre))
    binary = (_logits(paddle.gather(cand_kernels, top), feat) > logit_threshold).astype('float32')
    decayed = matrix_nms(binary, paddle.gather(labels, top), paddle.gather(category * maskness, top),
                         paddle.gather(areas, top), params.nms_kernel, params.nms_sigma)
    passing = paddle.nonzero(decayed >= params.update_threshold).flatten()
    if passing.shape[0] == 0:
        return None
    best = paddle.gather(passing, ranked(paddle.gather(decayed, passing), params.max_per_image))
    chosen = paddle.gather(top, best)
    return paddle.gather(cells, chosen), paddle.gather(labels, chosen), paddle.gather(decayed, best)


def _tight_boxes(binary: paddle.Tensor) -> paddle.Tensor:
    """[n, 4] int64 half-open x0, y0, x1, y1 of the True pixels of binary [n, H, W] bool
    (zeros when empty), as ``data.masks.mask_to_box``."""
    boxes = []
    for line in (binary.any(axis=1), binary.any(axis=2)):                       # columns, rows
        hit = line.astype('int32')
        first = paddle.argmax(hit, axis=1)
        last = line.shape[1] - paddle.argmax(paddle.flip(hit, [1]), axis=1)
        found = line.any(axis=1).astype('int64')
        boxes.append((first * found, last * found))
    (x0, x1), (y0, y1) = boxes
    return paddle.stack([x0, y0, x1, y1], axis=1)


def paste_on_device(soft: paddle.Tensor, resized_hw: Sequence[int], orig_hw: Sequence[int],
                    mask_threshold: float) -> CroppedMasks:
    """Soft masks [N, Hf, Wf] on the device -> binary ``CroppedMasks`` on the original
    picture (``paste_in_boxes``'s values); only the crops come to the host."""
    rows = paddle.to_tensor(_Axis.build(soft.shape[1], resized_hw[0], orig_hw[0]).matrix)      # [H, Hf]
    cols = paddle.to_tensor(_Axis.build(soft.shape[2], resized_hw[1], orig_hw[1]).matrix)      # [W, Wf]
    height, width = orig_hw
    ys, xs = paddle.arange(height, dtype='int64'), paddle.arange(width, dtype='int64')
    crops, all_boxes = [], []
    step = paste_step(height, width)
    for start in range(0, soft.shape[0], step):
        binary = paddle.matmul(paddle.matmul(rows, soft[start:start + step]), cols, transpose_y=True) > mask_threshold
        boxes = _tight_boxes(binary)
        inside = (((ys.unsqueeze(0) >= boxes[:, 1:2]) & (ys.unsqueeze(0) < boxes[:, 3:4])).unsqueeze(2)
                  & ((xs.unsqueeze(0) >= boxes[:, 0:1]) & (xs.unsqueeze(0) < boxes[:, 2:3])).unsqueeze(1))
        pixels = paddle.masked_select(binary.astype('int32'), inside).numpy().astype(bool)
        boxes = boxes.numpy()
        sizes = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0])
        for part, (x0, y0, x1, y1) in zip(np.split(pixels, np.cumsum(sizes)[:-1]), boxes):
            crops.append(part.reshape(y1 - y0, x1 - x0))
        all_boxes.append(boxes)
    return CroppedMasks(crops, np.concatenate(all_boxes), orig_hw)


def postprocess_on_device(scores: paddle.Tensor, kernels: paddle.Tensor, mask_feat: paddle.Tensor,
                          params: InferenceParams, metas: Sequence) -> List[Detections]:
    """The network's outputs on its device: scores [B, K, C], kernels [B, K, E], mask_feat
    [B, E, Hf, Wf] -> one Detections per image (ImageMeta each in ``metas``), as ``postprocess_flat``
    and ``paste_detections`` give on each image's mask features cropped to its own padded size.
    On a GPU with cuBLAS TF32 off, the logits' products in ``product_dtype``."""
    strides = paddle.to_tensor(checked_strides(scores.shape[1], kernels.shape[1], params))
    capability = device_capability(mask_feat.place)
    dtype = product_dtype(capability, hasattr(core, 'get_cublas_switch'))
    with tf32_off('cublas') if capability else contextlib.nullcontext():
        return [_one_image(scores[b], kernels[b], mask_feat[b, :, :meta.padded_hw[0] // 4, :meta.padded_hw[1] // 4],
                           strides, params, dtype, meta) for b, meta in enumerate(metas)]


def _one_image(scores, kernels, own, strides, params: InferenceParams, dtype: str, meta) -> Detections:
    """``postprocess_on_device`` of one image: scores [K, C], kernels [K, E], its mask features
    own [E, Hf, Wf], the products in ``dtype``, pasted on the picture of ``meta``."""
    feat = own.reshape([own.shape[0], -1]).astype(dtype)
    chosen = select_instances(scores, kernels, feat, strides, params)
    if chosen is None:
        return Detections(CroppedMasks([], np.zeros((0, 4), np.int64), meta.orig_hw), np.zeros(0, np.int64),
                          np.zeros(0, np.float32))
    cells, labels, decayed = chosen
    soft = F.sigmoid(_logits(paddle.gather(kernels, cells), feat)).reshape([-1, *own.shape[1:]])
    masks = paste_on_device(soft, meta.resized_hw, meta.orig_hw, params.mask_threshold)
    return Detections(masks, labels.numpy().astype(np.int64), decayed.numpy())
