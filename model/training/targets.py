"""SOLOv2 training targets as pure numpy functions (no paddle).

LABEL CONVENTION (used by every target array and by ``model.training.losses``):

    0 .. C-1  foreground class index (0-based, the same index as the C channels
              of the category head; no background channel exists)
    -1        background (``BACKGROUND``)

The original SOLO writes 1..C with 0 = background, PaddleDetection's
``Gt2Solov2Target`` does the same (it adds 1 to ``gt_class``); ours is theirs
minus one.

Assignment follows WXinlong/SOLO ``SOLOv2Head.solov2_target_single``:

* box = extents of the instance mask, x2/y2 EXCLUSIVE: ``box_w = x2 - x1`` is the
  number of columns the mask spans (a single-pixel mask has w = h = 1);
  ``scale = sqrt(box_w * box_h)``.
* the instance goes to EVERY level whose ``(lower, upper)`` range contains the
  scale, both ends inclusive (ranges overlap, so up to two levels); empty masks
  are skipped.
* centre = ``scipy.ndimage.center_of_mass`` of the mask (not the box centre);
  half extents ``0.5 * box_w * sigma`` / ``0.5 * box_h * sigma``; a coordinate
  ``c`` maps to cell ``int((c / size) // (1 / S))`` with ``size`` the padded
  input height or width; the region is clipped to the grid and to at most one
  cell around the centre cell (<= 3 x 3 cells).
* every cell of the region gets the class label (a later instance overwrites an
  earlier one's label) and one positive ``(cell = i * S + j, mask target)``,
  cells in row-major order, instances in input order; positives of instances
  sharing a cell are ALL kept.
* mask target = the padded-size mask rescaled by 1 / mask_stride with
  ``cv2.resize(INTER_LINEAR)`` on uint8 to ``(int(Wp / s + 0.5), int(Hp / s + 0.5))``
  (mmcv.imrescale rounding), pasted top-left into zeros ``[Hp / s, Wp / s]``.

Cell indices use the same order as ``model.inference.postprocess.flatten_levels`` within a
level (row-major, index = i * S + j).
"""
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from solov2.data.masks import mask_to_box

with warnings.catch_warnings():      # scipy.special, under ndimage, adds a warnings filter on import: not ours to add
    from scipy import ndimage

BACKGROUND = -1


@dataclass
class ImageTargets:
    """Targets of one image, one entry per level (L levels, grid S_l, P_l positives).

    ``cate_labels``: [S, S] int64, class index 0..C-1, ``BACKGROUND`` (-1) elsewhere.
    ``ins_masks``: [P, Hp / stride, Wp / stride] uint8 0/1 mask target per positive.
    ``ins_cells``: [P] int64 cell index i * S + j of each positive.
    """
    cate_labels: List[np.ndarray] = field(default_factory=list)
    ins_masks: List[np.ndarray] = field(default_factory=list)
    ins_cells: List[np.ndarray] = field(default_factory=list)


@dataclass
class BatchTargets:
    """Targets of a padded batch of B images, one entry per level.

    ``cate_labels``: [B, S, S] int64 (-1 background).
    ``ins_masks``: [P, Hf, Wf] uint8, positives of all images concatenated (image 0
    first, each image's positives in assignment order).
    ``ins_images``: [P] int64 image index in the batch of each positive.
    ``ins_cells``: [P] int64 cell index i * S + j of each positive.
    ``num_positives``: foreground CELLS over all levels and images, i.e. SOLO's
    ``num_ins`` / PaddleDetection's ``fg_num`` (a cell claimed by two instances
    counts once here but contributes two mask positives); the category loss is
    divided by ``num_positives + 1``.
    """
    cate_labels: List[np.ndarray]
    ins_masks: List[np.ndarray]
    ins_images: List[np.ndarray]
    ins_cells: List[np.ndarray]
    num_positives: int

    @property
    def num_masks(self) -> int:
        """Mask positives (dice terms) over all levels."""
        return int(sum(len(cells) for cells in self.ins_cells))


@dataclass
class _Instance:
    """A non-empty instance: its input index, label, box size and centre of mass."""
    index: int
    label: int
    box_w: int
    box_h: int
    center_h: float
    center_w: float
    target: Optional[np.ndarray] = None   # rescaled mask, made on first use


def _cell(coord: float, size: int, grid: int) -> int:
    """Grid cell of a pixel coordinate, written as SOLO writes it."""
    return int((coord / size) // (1. / grid))


def rescale_mask(mask: np.ndarray, mask_stride: int = 4) -> np.ndarray:
    """[Hp, Wp] uint8 -> [Hp / stride, Wp / stride] uint8: bilinear rescale by
    1 / stride with mmcv.imrescale's size rounding, pasted top-left into zeros."""
    height, width = mask.shape
    size = (int(width / mask_stride + 0.5), int(height / mask_stride + 0.5))
    small = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    out = np.zeros((height // mask_stride, width // mask_stride), np.uint8)
    rows, cols = min(small.shape[0], out.shape[0]), min(small.shape[1], out.shape[1])
    out[:rows, :cols] = small[:rows, :cols]
    return out


def center_region(inst: '_Instance', height: int, width: int, grid: int, sigma: float) -> Tuple[int, int, int, int]:
    """(top, down, left, right), inclusive grid cells of the instance's centre region on a
    ``grid`` x ``grid`` level: the box scaled by ``sigma`` around the mass centre, clipped
    to the grid and to the 3x3 cells around the centre cell."""
    half_h, half_w = 0.5 * inst.box_h * sigma, 0.5 * inst.box_w * sigma
    coord_h, coord_w = _cell(inst.center_h, height, grid), _cell(inst.center_w, width, grid)
    top = max(0, _cell(inst.center_h - half_h, height, grid))
    down = min(grid - 1, _cell(inst.center_h + half_h, height, grid))
    left = max(0, _cell(inst.center_w - half_w, width, grid))
    right = min(grid - 1, _cell(inst.center_w + half_w, width, grid))
    return max(top, coord_h - 1), min(down, coord_h + 1), max(left, coord_w - 1), min(right, coord_w + 1)


def assign_targets(masks: np.ndarray, labels: np.ndarray, num_grids: Sequence[int],
                   scale_ranges: Sequence[Sequence[float]], sigma: float = 0.2, mask_stride: int = 4) -> ImageTargets:
    """``ImageTargets`` of ONE image by the module docstring's rules: ``masks`` [N, Hp, Wp] uint8 (or
    bool) 0/1 at the PADDED input size (multiples of ``mask_stride``, the mask features' stride),
    ``labels`` [N] int64 0-based, ``num_grids`` S per level, ``scale_ranges`` (lower, upper) of
    sqrt(box_w * box_h) per level, inclusive (as many as ``num_grids``: the config's rules); ``sigma`` scales
    the centre region."""
    masks = np.asarray(masks)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if masks.ndim != 3 or masks.shape[0] != labels.shape[0]:
        raise ValueError(f'masks must be [N, Hp, Wp] with N = len(labels); got {masks.shape} '
                         f'and {labels.shape[0]} labels')
    height, width = masks.shape[1:]
    if height % mask_stride or width % mask_stride:
        raise ValueError(f'padded size {height}x{width} is not a multiple of {mask_stride}')
    masks = masks.astype(np.uint8, copy=False)
    feat_hw = (height // mask_stride, width // mask_stride)

    instances = []      # shared by all levels; empty masks skipped
    for index, (mask, label) in enumerate(zip(masks, labels)):
        if not mask.any():
            continue
        x1, y1, x2, y2 = mask_to_box(mask)
        center_h, center_w = ndimage.center_of_mass(mask)
        instances.append(_Instance(index, int(label), x2 - x1, y2 - y1, center_h, center_w))

    out = ImageTargets()
    for (lower, upper), grid in zip(scale_ranges, num_grids):
        cate = np.full((grid, grid), BACKGROUND, np.int64)
        cells, targets = [], []
        for inst in instances:
            if not lower <= np.sqrt(inst.box_w * inst.box_h) <= upper:      # the scale, module docstring
                continue
            top, down, left, right = center_region(inst, height, width, grid, sigma)
            cate[top:down + 1, left:right + 1] = inst.label
            if inst.target is None:     # rescaled once, shared by levels and cells
                inst.target = rescale_mask(masks[inst.index], mask_stride)
            for i in range(top, down + 1):
                for j in range(left, right + 1):
                    cells.append(i * grid + j)
                    targets.append(inst.target)
        out.cate_labels.append(cate)
        out.ins_cells.append(np.asarray(cells, np.int64))
        out.ins_masks.append(np.stack(targets) if targets else np.zeros((0, *feat_hw), np.uint8))
    return out


def collate_targets(images: Sequence[ImageTargets]) -> BatchTargets:
    """Per-image targets of one padded batch (at least one image; the same size and levels, as
    ``assign_targets`` gives them for one config) -> BatchTargets."""
    cate_labels, ins_masks, ins_images, ins_cells = [], [], [], []
    for level in range(len(images[0].cate_labels)):
        cate_labels.append(np.stack([t.cate_labels[level] for t in images]))
        ins_masks.append(np.concatenate([t.ins_masks[level] for t in images]))
        ins_images.append(np.concatenate([np.full(len(t.ins_cells[level]), b, np.int64)
                                          for b, t in enumerate(images)]))
        ins_cells.append(np.concatenate([t.ins_cells[level] for t in images]).astype(np.int64))
    num_positives = int(sum((labels != BACKGROUND).sum() for labels in cate_labels))
    return BatchTargets(cate_labels, ins_masks, ins_images, ins_cells, num_positives)
