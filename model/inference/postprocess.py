"""SOLOv2 inference post-processing as pure functions.

Dimension letters: K = sum of S*S over levels (grid cells), C classes, E kernel
channels, M candidates, N kept instances, Hf x Wf mask-feature size (1/4 of the
padded input).

Order (as in the original SOLO and PaddleDetection): sigmoid + points-NMS on the
category maps -> score threshold -> dynamic 1x1 conv -> binary masks -> drop masks
whose area <= level stride -> maskness re-scoring -> top ``nms_pre`` -> Matrix NMS ->
``update_threshold`` -> top ``max_per_image``. Masks stay at 1/4 resolution until
``paste_detections`` resizes them once to the original image.
"""
import functools
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import paddle
import paddle.nn.functional as F

from solov2.core.errors import InputError
from solov2.data.masks import EMPTY_CROP, CroppedMasks, mask_to_box


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
        """The fields as JSON values (tuples as lists), as infer_cfg.json stores them."""
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
    float32 before ``paste_detections`` and binary ``CroppedMasks`` on the picture after
    it (each mask cropped to its tight box, ``masks.boxes``, so encoding and drawing work inside it)."""
    masks: Union[np.ndarray, CroppedMasks]
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


def checked_strides(score_cells: int, kernel_cells: int, params: InferenceParams) -> np.ndarray:
    """Stride of every grid cell's level of ``params``, [K] float32 (area filter threshold); InputError when
    the network's scores or kernels have another number of grid cells than its ``num_grids``."""
    cells = sum(s * s for s in params.num_grids)
    if score_cells != cells or kernel_cells != cells:
        raise InputError(f'the network outputs {score_cells} grid cells but num_grids '
                         f'{tuple(params.num_grids)} has {cells}')
    return np.concatenate([np.full(s * s, stride, np.float32)
                           for s, stride in zip(params.num_grids, params.segm_strides)])


def _decay(masks: np.ndarray, labels: np.ndarray, areas: np.ndarray, kernel: str, sigma: float) -> np.ndarray:
    """Matrix NMS decay factors [n] of binary masks [n, P] (best first) with labels [n]."""
    covered = np.flatnonzero(masks.any(axis=0))            # pixels no mask covers add nothing
    flat = masks[:, covered].astype(np.float32)
    inter = flat @ flat.T                                   # exact: integer sums < 2^24
    union = areas[None, :] + areas[:, None] - inter
    iou = np.triu(inter / union, k=1) * (labels[:, None] == labels[None, :])
    with np.errstate(divide='ignore'):     # linear: a duplicate's own row: x / 0 = inf, never the minimum
        return decays(iou, np.exp, kernel, sigma)


def decays(iou, exp, kernel: str, sigma: float):
    """Matrix NMS decay factors [n] from ``iou`` [n, n] (entry i, j: of a higher-scored mask i of j's
    class, else 0), numpy or paddle (``exp``: its exponential): min_i f(iou_ij) / f(max_k iou_ki)."""
    compensate = iou.max(axis=0).reshape([-1, 1])            # row i: max_k iou_ki
    if kernel == 'gaussian':
        decay = exp(-sigma * iou ** 2) / exp(-sigma * compensate ** 2)
    elif kernel == 'linear':
        decay = (1 - iou) / (1 - compensate)
    else:
        raise ValueError(f"unknown Matrix NMS kernel {kernel!r} (expected 'gaussian' or 'linear')")
    return decay.min(axis=0)


NMS_BLOCK = 64   # classes are batched into Matrix NMS blocks of at least this many masks


def _class_blocks(labels: np.ndarray) -> List[np.ndarray]:
    """Indices (ascending) of the masks of classes with 2+ masks, whole classes batched until a
    block holds ``NMS_BLOCK`` masks (classes never interact; one product per block, not per class)."""
    classes, counts = np.unique(labels, return_counts=True)
    blocks: List[List[np.ndarray]] = [[]]
    for label in classes[counts > 1]:
        if sum(map(len, blocks[-1])) >= NMS_BLOCK:
            blocks.append([])
        blocks[-1].append(np.flatnonzero(labels == label))
    return [np.sort(np.concatenate(block)) for block in blocks if block]


def matrix_nms(masks, labels, scores, areas, kernel: str = 'gaussian', sigma: float = 2.0) -> np.ndarray:
    """Matrix NMS (SOLOv2 paper, decay as the released code): binary masks [N, P] best first,
    labels [N], scores [N] descending, areas [N] pixel counts, ``kernel`` 'gaussian'
    (exp(-sigma * iou^2)) or 'linear' (1 - iou) -> decayed scores [N] float32: min_i f(iou_ij) /
    f(max_k iou_ki) over the higher-scored masks i of j's class, per block of whole classes
    (``_class_blocks``) on the pixels its masks cover."""
    if kernel not in ('gaussian', 'linear'):
        raise ValueError(f"unknown Matrix NMS kernel '{kernel}' (expected 'gaussian' or 'linear')")
    masks, labels = as_numpy(masks), as_numpy(labels)
    scores, areas = as_numpy(scores).astype(np.float32), as_numpy(areas).astype(np.float32)
    decayed = scores.copy()
    for block in _class_blocks(labels):
        decayed[block] = scores[block] * _decay(masks[block], labels[block], areas[block], kernel, sigma)
    return decayed


def as_numpy(value) -> np.ndarray:
    """A numpy view of a paddle tensor or anything array-like."""
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first (ties: lower index first)."""
    return np.argsort(-scores, kind='stable')[:k]


def _sigmoid(logits: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """1 / (1 + exp(-logits)), into ``out`` when given (``out=logits``: in place)."""
    out = np.negative(logits, out=out)
    with np.errstate(over='ignore'):           # exp overflow -> inf -> 0, the right limit
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


SPARSE_MASK_SHARE = 0.06   # masks covering less of the candidates' pixels: sigmoid of the inside pixels only


def _mask_statistics(kernels: np.ndarray, feat: np.ndarray, mask_threshold: float
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates' kernels [m, E] over feat [E, P] -> binary masks [m, P] bool, areas [m] and
    maskness [m] float32 (mean sigmoid inside the mask; ``sigmoid(logit) > t`` tested as
    ``logit > log(t / (1 - t))``, the sigmoid of the inside pixels only when sparse)."""
    logits = kernels @ feat                                                # [m, P]
    binary = logits > np.log(mask_threshold / (1 - mask_threshold))
    counts = np.count_nonzero(binary, axis=1)
    if counts.sum() < SPARSE_MASK_SHARE * binary.size:
        rows = np.repeat(np.arange(len(counts)), counts)
        inside = np.bincount(rows, weights=_sigmoid(logits[binary]), minlength=len(counts))
    else:
        soft = _sigmoid(logits, out=logits)
        inside = np.multiply(soft, binary, out=soft).sum(axis=1, dtype=np.float64)
    return binary, counts.astype(np.float32), (inside / np.maximum(counts, 1)).astype(np.float32)


SCAN_LIMIT = 4   # mask statistics for at most SCAN_LIMIT * nms_pre candidates per image


class _Visited:
    """Mask statistics of the visited candidates that passed the area filter, in visit
    order, in buffers for up to ``capacity`` of them: ``index`` [n] into the candidates,
    ``binary`` [n, P] bool, ``areas`` [n] and ``rescored`` [n] (category score * maskness)."""

    def __init__(self, capacity: int, pixels: int):
        self._binary = np.empty((capacity, pixels), bool)
        self._columns = np.empty(capacity, np.int64), np.empty(capacity, np.float32), np.empty(capacity, np.float32)
        self.count = 0

    binary = property(lambda self: self._binary[:self.count])
    index = property(lambda self: self._columns[0][:self.count])
    areas = property(lambda self: self._columns[1][:self.count])
    rescored = property(lambda self: self._columns[2][:self.count])

    def add(self, index: np.ndarray, scores: np.ndarray, kernels: np.ndarray, feat: np.ndarray,
            strides: np.ndarray, mask_threshold: float) -> None:
        """Visit candidates ``index``: scores [M], kernels [M, E], strides [M] of all candidates."""
        binary, areas, maskness = _mask_statistics(kernels[index], feat, mask_threshold)
        keep = np.flatnonzero(areas > strides[index])    # drop masks not larger than their level's stride
        rows = slice(self.count, self.count + len(keep))
        np.take(binary, keep, axis=0, out=self._binary[rows])
        for column, values in zip(self._columns, (index, areas, scores[index] * maskness)):
            column[rows] = values[keep]
        self.count += len(keep)

    def ranked(self, k: int) -> np.ndarray:
        """Positions of the k best rescored values, best first (ties: lower candidate index first)."""
        return np.lexsort((self.index, -self.rescored))[:k]


def _select(visited: _Visited, labels: np.ndarray, bound: float, params: InferenceParams):
    """(positions into ``visited`` best first, their decayed scores) when the visited candidates
    decide the instances, else None. ``labels`` [M] of all candidates; ``bound``: the highest
    rescored value a candidate left to visit can have (-inf: none left). The top ``nms_pre``
    above ``bound`` have final Matrix NMS scores (a mask is decayed by higher-ranked ones only);
    decided when ``nms_pre`` are final, ``bound`` is under ``update_threshold``, or
    ``max_per_image`` final scores pass both."""
    top = visited.ranked(params.nms_pre)
    final = top[visited.rescored[top] > bound]
    undecided = bound >= params.update_threshold and len(final) < params.nms_pre
    if undecided and len(final) < params.max_per_image:      # decayed <= rescored: not enough yet
        return None
    decayed = matrix_nms(visited.binary[final], labels[visited.index[final]], visited.rescored[final],
                         visited.areas[final], params.nms_kernel, params.nms_sigma)
    passing = np.flatnonzero(decayed >= params.update_threshold)
    if undecided and np.count_nonzero(decayed[passing] > bound) < params.max_per_image:
        return None
    order = passing[_top(decayed[passing], params.max_per_image)]
    return final[order], decayed[order]


def segment_image(scores, kernels, mask_feat, strides, params: InferenceParams) -> Detections:
    """One image: scores [K, C], kernels [K, E], mask_feat [E, Hf, Wf], strides [K] (numpy or
    paddle) -> Detections with soft masks [N, Hf, Wf]. The instances of scoring every candidate,
    visiting them best category score first (at most ``SCAN_LIMIT * nms_pre``: ``nms_pre``, then
    a quarter more each time) until the visited ones decide (``_select``)."""
    scores, kernels, mask_feat, strides = (as_numpy(a) for a in (scores, kernels, mask_feat, strides))
    feat = mask_feat.reshape(mask_feat.shape[0], -1)                           # [E, P]
    cells, labels = np.nonzero(scores > params.score_threshold)               # [M] each
    scores = scores[cells, labels]
    order = _top(scores, SCAN_LIMIT * max(1, params.nms_pre))
    visited = _Visited(len(order), feat.shape[1])
    cand_kernels, cand_strides = kernels[cells], strides[cells]
    start, block, chosen = 0, max(1, params.nms_pre), None
    while chosen is None:
        visited.add(order[start:start + block], scores, cand_kernels, feat, cand_strides, params.mask_threshold)
        start += block
        block = max(1, start // 4)
        chosen = _select(visited, labels, scores[order[start]] if start < len(order) else -np.inf, params)
    index = visited.index[chosen[0]]
    soft = _sigmoid(kernels[cells[index]] @ feat).astype(np.float32)
    return Detections(soft.reshape(len(index), *mask_feat.shape[1:]), labels[index].astype(np.int64), chosen[1])


def postprocess_flat(scores, kernels, mask_feat, params: InferenceParams) -> List[Detections]:
    """After the exportable network (``export_network.ExportableSOLOv2``): scores [B, K, C],
    kernels [B, K, E], mask_feat [B, E, Hf, Wf] (numpy or paddle) -> one Detections (soft masks) per image."""
    scores, kernels, mask_feat = (np.asarray(as_numpy(a), np.float32) for a in (scores, kernels, mask_feat))
    strides = checked_strides(scores.shape[1], kernels.shape[1], params)
    return [segment_image(scores[b], kernels[b], mask_feat[b], strides, params)
            for b in range(mask_feat.shape[0])]


def _linear_taps(src: int, dst: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.INTER_LINEAR`` along one axis: output i = (1 - frac[i]) * input[left[i]] + frac[i] * input[right[i]]."""
    x = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    left = np.floor(x)
    frac, left = x - left, left.astype(np.int64)
    frac[left < 0], left[left < 0] = 0, 0
    over = left >= src - 1
    frac[over], left[over] = 0, src - 1
    return left, np.minimum(left + 1, src - 1), frac


def _paste_weights(feat: int, resized: int, orig: int) -> np.ndarray:
    """[orig, feat] float64: the paste along one axis as a matrix (``_Axis``)."""
    left, right, frac = _linear_taps(feat, 4 * feat)
    dense = np.zeros((resized, feat))
    rows = np.arange(resized)
    dense[rows, left[:resized]] += 1 - frac[:resized]
    dense[rows, right[:resized]] += frac[:resized]
    if resized == orig:
        return dense
    left, right, frac = _linear_taps(resized, orig)
    return (1 - frac)[:, None] * dense[left] + frac[:, None] * dense[right]


def _extent(nonzero: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """First and last index along ``axis`` of the True values of each line of a 2-D array."""
    return nonzero.argmax(axis=axis), nonzero.shape[axis] - 1 - np.flip(nonzero, axis).argmax(axis=axis)


@dataclass(frozen=True)
class _Axis:
    """The paste along one axis (x4 to the padded size, crop to the resized size, resize to
    the original) as a matrix, ``matrix`` [out, feat] float32 (output o = matrix[o] @ feature);
    ``reach``: for each feature index the first/last output index that reads it; ``reads``:
    for each output index the first/last feature index it reads."""
    matrix: np.ndarray
    reach: Tuple[np.ndarray, np.ndarray]
    reads: Tuple[np.ndarray, np.ndarray]

    @classmethod
    @functools.lru_cache(maxsize=16)
    def build(cls, feat: int, resized: int, orig: int) -> '_Axis':
        """The paste of ``feat`` mask-feature indices to ``orig`` picture indices (cached)."""
        dense = _paste_weights(feat, resized, orig)                           # [orig, feat]
        nonzero = dense != 0
        return cls(dense.astype(np.float32), _extent(nonzero, 0), _extent(nonzero, 1))

    def window(self, start: int, stop: int) -> Tuple[slice, slice]:
        """Outputs that feature indices [start, stop) reach, and the features they read."""
        out = slice(int(self.reach[0][start]), int(self.reach[1][stop - 1]) + 1)
        return out, slice(int(self.reads[0][out.start]), int(self.reads[1][out.stop - 1]) + 1)


WHOLE_PASTE_SHARE = 0.4   # a mask whose window covers more of the picture is resized whole by OpenCV


def _paste_whole(soft: np.ndarray, resized_hw: Sequence[int], orig_hw: Sequence[int]) -> np.ndarray:
    """One soft mask [Hf, Wf] -> [H, W] float32 on the original picture, with OpenCV:
    bilinear x4 to the padded size, crop of the resized area, bilinear to the original."""
    feat_h, feat_w = soft.shape
    resized = cv2.resize(soft, (4 * feat_w, 4 * feat_h), interpolation=cv2.INTER_LINEAR)
    resized = resized[:resized_hw[0], :resized_hw[1]]
    return resized if tuple(resized_hw) == tuple(orig_hw) else cv2.resize(resized, (orig_hw[1], orig_hw[0]),
                                                                          interpolation=cv2.INTER_LINEAR)


def paste_in_boxes(soft_masks: np.ndarray, resized_hw: Sequence[int], orig_hw: Sequence[int],
                   mask_threshold: float = 0.5) -> CroppedMasks:
    """Soft masks [N, Hf, Wf] at 1/4 of the padded input -> binary ``CroppedMasks`` on the original
    image, each cropped to its tight half-open box (empty: an empty crop, a zero box), pasted when
    first read (``CroppedMasks.lazy``; a box read alone is measured near its edges, ``_pending_box``),
    each keeping only the part of its soft mask its paste reads (``_PendingPaste``).

    PaddleDetection's values (bilinear x4, crop to the resized area, bilinear to the original,
    threshold; OpenCV's) up to float rounding, computed only over the window the mask's pixels
    above the threshold reach (bilinear weights are convex), as two small matrix products
    (``_Axis``, ``_product``); a mask reaching over ``WHOLE_PASTE_SHARE`` of the picture by OpenCV."""
    rows = _Axis.build(soft_masks.shape[1], resized_hw[0], orig_hw[0])
    cols = _Axis.build(soft_masks.shape[2], resized_hw[1], orig_hw[1])
    pending = [_pending(soft, rows, cols, resized_hw, orig_hw, mask_threshold) for soft in soft_masks]
    return CroppedMasks.lazy(pending, _paste_pending, orig_hw, _pending_box)


@dataclass(frozen=True)
class _PendingPaste:
    """One mask's paste still to do: ``soft`` the part of its soft mask it reads (all of it when
    resized whole), the picture's rows ``out_y`` and columns ``out_x`` it reaches, the window's
    weights ``row_weights`` [out rows, read rows] and ``col_weights`` [out columns, read columns]
    (None when resized whole), each column's first and last read column (``col_reads``)."""
    soft: np.ndarray
    out_y: slice
    out_x: slice
    row_weights: Optional[np.ndarray]
    col_weights: Optional[np.ndarray]
    col_reads: Optional[Tuple[np.ndarray, np.ndarray]]
    resized_hw: Tuple[int, int]
    orig_hw: Tuple[int, int]
    mask_threshold: float


def _pending(soft: np.ndarray, rows: '_Axis', cols: '_Axis', resized_hw: Sequence[int], orig_hw: Sequence[int],
             mask_threshold: float) -> Optional[_PendingPaste]:
    """The paste of one soft mask [Hf, Wf], or None when no value is above the threshold (an
    empty mask)."""
    box = mask_to_box(soft > mask_threshold)
    if box is None:
        return None
    (out_y, read_y), (out_x, read_x) = rows.window(box[1], box[3]), cols.window(box[0], box[2])
    sizes = tuple(resized_hw), tuple(orig_hw), mask_threshold
    if (out_y.stop - out_y.start) * (out_x.stop - out_x.start) > WHOLE_PASTE_SHARE * orig_hw[0] * orig_hw[1]:
        return _PendingPaste(soft.copy(), out_y, out_x, None, None, None, *sizes)
    reads = tuple(ends[out_x] - read_x.start for ends in cols.reads)
    return _PendingPaste(soft[read_y, read_x].copy(), out_y, out_x, rows.matrix[out_y, read_y],
                         cols.matrix[out_x, read_x], reads, *sizes)


PRODUCT_WORK = 1 << 18   # multiply-adds of one matrix product of the paste, at most
TILE_COLUMNS = 64        # picture columns of one product: they weigh a few read columns, not all
SCAN_WIDTH = 16          # rows and columns of a product when a box is measured from the window's edges


def _cut(count: int, size: int) -> List[slice]:
    """[0, count) in pieces of ``size`` (at least 2), none of one index (numpy computes a product
    of one row or column as a matrix-vector one, which may sum in another order)."""
    starts = list(range(0, count, max(2, size)))
    if len(starts) > 1 and count - starts[-1] < 2:
        starts.pop()
    return [slice(start, stop) for start, stop in zip(starts, starts[1:] + [count])]


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left [m, k] @ right [k, n] -> [m, n] float32, in bands of rows of at most ``PRODUCT_WORK``
    multiply-adds. OpenBLAS runs a product that small on one thread: a threaded small product
    waits for busy cores, 5-10x slower on a loaded machine (measured)."""
    bands = _cut(len(left), PRODUCT_WORK // max(1, right.size))
    return left @ right if len(bands) == 1 else np.concatenate([left[band] @ right for band in bands])


class _Window:
    """The window of a paste (``_PendingPaste``, not resized whole) as products: ``rows`` [out rows,
    read columns] (``row_weights @ soft``), output columns in ``tiles`` of about ``TILE_COLUMNS``,
    output rows in ``bands`` under ``PRODUCT_WORK``; a pixel's value does not depend on the cut."""

    def __init__(self, paste: _PendingPaste):
        self.rows, self.threshold = _product(paste.row_weights, paste.soft), paste.mask_threshold
        self.weights, self.reads = paste.col_weights, paste.col_reads
        self.tiles = self.cut(TILE_COLUMNS)
        self.size = PRODUCT_WORK // max((cols.stop - cols.start) * (reads.stop - reads.start)
                                        for cols, reads in self.tiles)

    def cut(self, width: int) -> List[Tuple[slice, slice]]:
        """The output columns in tiles of ``width`` (``_cut``), each with the read columns it weighs."""
        first, last = self.reads
        return [(cols, slice(int(first[cols.start]), int(last[cols.stop - 1]) + 1)) for cols in _cut(len(first), width)]

    def bands(self, start: int = 0, stop: Optional[int] = None, size: Optional[int] = None) -> List[slice]:
        """Rows [start, stop) of the window in bands (``_cut``) of ``size`` rows, default the most a product takes."""
        stop = len(self.rows) if stop is None else stop
        return [slice(start + band.start, start + band.stop) for band in _cut(stop - start, size or self.size)]

    def values(self, band: slice, tiles: Optional[Sequence[Tuple[slice, slice]]] = None) -> np.ndarray:
        """[band rows, the tiles' columns] float32: the pasted values of rows ``band`` (every tile by default)."""
        return np.hstack([self.rows[band, reads] @ self.weights[cols, reads].T for cols, reads in tiles or self.tiles])

    def first_rows(self, bands: Sequence[slice]) -> np.ndarray:
        """The rows over the threshold of the first of ``bands`` that has one (in the order given), or none."""
        return self.first_over((band.start, self.values(band).max(axis=1)) for band in bands)

    def first_columns(self, bands: Sequence[slice], tiles: Sequence[Tuple[slice, slice]]) -> np.ndarray:
        """The columns over the threshold in rows ``bands`` of the first of ``tiles`` that has one (in the
        order given), or none."""
        return self.first_over((tile[0].start, functools.reduce(
            np.maximum, (self.values(band, [tile]).max(axis=0) for band in bands))) for tile in tiles)

    def first_over(self, peaks: Iterable[Tuple[int, np.ndarray]]) -> np.ndarray:
        """The indices over the threshold of the first of ``peaks`` ((start, values), computed in turn) that
        has one, moved by its start, or none."""
        for start, peak in peaks:
            found = np.flatnonzero(peak > self.threshold)
            if len(found):
                return found + start
        return np.zeros(0, np.int64)


def _tight(binary: np.ndarray, x0: int = 0, y0: int = 0) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """(a copy of ``binary`` [h, w] bool cropped to its True pixels, their half-open box
    moved by (x0, y0)); an empty crop and a zero box when none is True."""
    tight = mask_to_box(binary)
    if tight is None:
        return EMPTY_CROP, (0, 0, 0, 0)
    left, top, right, bottom = tight
    return binary[top:bottom, left:right].copy(), (x0 + left, y0 + top, x0 + right, y0 + bottom)


def _paste_pending(paste: Optional[_PendingPaste]) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """One mask's paste (``_pending``) -> (its binary crop on the picture, tight box), as ``paste_in_boxes``."""
    if paste is None:
        return EMPTY_CROP, (0, 0, 0, 0)
    if paste.row_weights is None:
        return _tight(_paste_whole(paste.soft, paste.resized_hw, paste.orig_hw) > paste.mask_threshold)
    window = _Window(paste)
    binary = np.vstack([window.values(band) > paste.mask_threshold for band in window.bands()])
    return _tight(binary, paste.out_x.start, paste.out_y.start)


def _pending_box(paste: Optional[_PendingPaste]) -> Tuple[int, int, int, int]:
    """The box of ``_paste_pending(paste)`` computing only pixels near its edges: bands of rows
    from each end until one has a pixel over the threshold, then tiles of columns between them."""
    if paste is None or paste.row_weights is None:
        return (0, 0, 0, 0) if paste is None else _paste_pending(paste)[1]
    window = _Window(paste)
    bands = window.bands(size=SCAN_WIDTH)
    top = window.first_rows(bands)
    if not len(top):
        return 0, 0, 0, 0
    bottom = window.first_rows(bands[::-1])
    inside = [band for band in bands if band.start <= top[0] < band.stop] if bottom[-1] == top[-1] else \
        window.bands(int(top[0]), int(bottom[-1]) + 1)      # one band, or bands of 2 rows at least
    tiles = window.cut(SCAN_WIDTH)
    left, right = window.first_columns(inside, tiles), window.first_columns(inside, tiles[::-1])
    x0, y0 = paste.out_x.start, paste.out_y.start
    return x0 + int(left[0]), y0 + int(top[0]), x0 + int(right[-1]) + 1, y0 + int(bottom[-1]) + 1


def paste_detections(detections: Detections, meta, mask_threshold: float = 0.5) -> Detections:
    """``paste_in_boxes`` on a Detections: soft masks [N, Hf, Wf] -> binary ``CroppedMasks`` on
    the original image (``meta``: an ImageMeta with resized_hw and orig_hw)."""
    masks = paste_in_boxes(detections.masks, meta.resized_hw, meta.orig_hw, mask_threshold)
    return Detections(masks, detections.labels, detections.scores)


def finish_outputs(outputs: Sequence[np.ndarray], meta, params: InferenceParams) -> Detections:
    """One picture's network outputs (scores [1, K, C], kernels [1, K, E], mask_feat [1, E, h, w], h and w
    at least its padded size / 4) -> its instances on the original image: ``postprocess_flat`` with
    ``params`` on its own padded size's mask features (``meta``: an ImageMeta), ``paste_detections``; what
    every runtime's outputs go through (``pipeline.Predictor.finish``, ``tools/postprocess_raw.py``)."""
    scores, kernels, mask_feat = outputs
    own = mask_feat[..., :meta.padded_hw[0] // 4, :meta.padded_hw[1] // 4]
    return paste_detections(postprocess_flat(scores, kernels, own, params)[0], meta, params.mask_threshold)
