"""``CroppedMasks``: binary instance masks kept at the cost of the objects, not of the picture
(each its crop to its tight box, ``mask_to_box``: the one definition of a mask's box)."""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union, overload

import numpy as np

EMPTY_CROP = np.zeros((0, 0), dtype=bool)


def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open pixel box `(x0, y0, x1, y1)` of the True pixels of `[H, W] bool` (`mask[y0:y1,
    x0:x1]` is the tight crop), or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))
    return int(cols[0]), y0, int(cols[-1]) + 1, y1


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """`mask_to_box` of each of `[N, H, W] bool` masks: `[N, 4] int64` half-open x0, y0, x1, y1,
    zeros for an empty mask."""
    return np.array([mask_to_box(mask) or (0, 0, 0, 0) for mask in masks], dtype=np.int64).reshape(-1, 4)


class CroppedMasks:
    """N binary masks on an `(H, W)` picture, each kept as `crop(i)`, `[y1 - y0, x1 - x0] bool`:
    the mask inside its tight half-open box `box(i)` `(x0, y0, x1, y1)` (`[0, 0] bool` and a
    zero box for an empty mask). `crops` and `boxes` `[N, 4] int64` give all of them.

    Made from crops at hand, or `lazy` (each mask made on first use from its source, then dropped:
    what is never read is never pasted). `[i]` pastes one mask to `[H, W] bool`, `np.asarray(masks)`
    all to `[N, H, W] bool`; a slice, boolean mask or index array gives a new `CroppedMasks` sharing
    the crops made so far and holding only its own masks' sources."""

    def __init__(self, crops: Sequence[np.ndarray], boxes: np.ndarray | Sequence[Sequence[int]],
                 image_size: Sequence[int]):
        self._crops = list(crops)
        self._boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self._sources, self._make, self._measure = [None] * len(self._crops), None, None
        self._boxed = np.ones(len(self._crops), bool)      # whether _boxes[i] holds mask i's box
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if len(self._crops) != len(self._boxes):
            raise ValueError(f'{len(self._crops)} crops but {len(self._boxes)} boxes')
        for crop, (x0, y0, x1, y1) in zip(self._crops, self._boxes):
            if crop.shape != (y1 - y0, x1 - x0):
                raise ValueError(f'a crop of shape {crop.shape} does not fit its box {(x0, y0, x1, y1)}')

    @classmethod
    def lazy(cls, sources: Sequence[Any], make: Callable[[Any], tuple[np.ndarray, Sequence[int]]],
             image_size: Sequence[int], measure: Callable[[Any], Sequence[int]]) -> 'CroppedMasks':
        """`len(sources)` masks, mask `i` made by `make(sources[i])` -> (its crop, its tight box)
        when first read (by two threads at once at worst: the same values); the source is
        dropped then, so a mask read holds its crop alone. `measure(source)` is the same tight
        box without the crop: `box(i)` of a mask not made makes nothing."""
        masks = cls([], np.zeros((0, 4), np.int64), image_size)
        masks._crops, masks._boxes = [None] * len(sources), np.zeros((len(sources), 4), np.int64)
        masks._sources, masks._make, masks._measure = list(sources), make, measure
        masks._boxed = np.zeros(len(sources), bool)
        return masks

    def crop(self, index: int) -> np.ndarray:
        """Mask `index` inside its box, `[y1 - y0, x1 - x0] bool` (made now if lazy and not yet)."""
        index = range(len(self))[index]
        source = self._sources[index]     # read before the crop: a source dropped means its crop is there
        if self._crops[index] is None:
            crop, box = self._make(source)
            self._boxes[index] = box          # the box first: a crop that is there has its box
            self._boxed[index] = True
            self._crops[index] = crop
            self._sources[index] = None
        return self._crops[index]

    def box(self, index: int) -> tuple[int, int, int, int]:
        """Mask `index`'s tight half-open box `(x0, y0, x1, y1)`, zeros when empty (measured
        without its crop when lazy and not made)."""
        index = range(len(self))[index]
        source = self._sources[index]     # read before the box: a source dropped means the box is there
        if not self._boxed[index]:
            self._boxes[index] = self._measure(source)
            self._boxed[index] = True
        return tuple(int(v) for v in self._boxes[index])

    @property
    def crops(self) -> list:
        """Every mask's crop (all made now if lazy)."""
        return [self.crop(i) for i in range(len(self))]

    @property
    def boxes(self) -> np.ndarray:
        """`[N, 4] int64` every mask's box (`box`: made or measured now if lazy)."""
        for i in range(len(self)):
            self.box(i)
        return self._boxes

    @classmethod
    def from_dense(cls, masks: np.ndarray, boxes: np.ndarray | None = None) -> 'CroppedMasks':
        """From full masks `[N, H, W]` (bool or 0/1), with their tight boxes `[N, 4]` when known
        (found otherwise); each crop is a copy, so `masks` can be freed."""
        masks = np.asarray(masks, dtype=bool)
        boxes = masks_to_boxes(masks) if boxes is None else np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        crops = [mask[y0:y1, x0:x1].copy() for mask, (x0, y0, x1, y1) in zip(masks, boxes)]
        return cls(crops, boxes, masks.shape[1:])

    def __len__(self) -> int:
        return len(self._crops)

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(N, H, W)`, the shape of the pasted masks."""
        return (len(self), *self.image_size)

    def paste(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Mask `index` on the picture, `[H, W] bool` (into `out`, all False, when given)."""
        out = np.zeros(self.image_size, dtype=bool) if out is None else out
        crop, (x0, y0, x1, y1) = self.crop(index), self.box(index)
        out[y0:y1, x0:x1] = crop
        return out

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> CroppedMasks: ...

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray | CroppedMasks:
        """`[H, W] bool` for an int (pasted); a new `CroppedMasks` for a slice, a boolean mask
        `[N]` or integer indices."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            return self.paste(index)
        positions = np.arange(len(self))[index]
        picked = CroppedMasks.lazy([self._sources[i] for i in positions], self._make, self.image_size, self._measure)
        picked._crops = [self._crops[i] for i in positions]     # after the sources: a source dropped means its crop
        picked._boxed = self._boxed[positions]                   # is there, and a crop there has its box
        picked._boxes = self._boxes[positions]
        return picked

    def __iter__(self):
        return (self.paste(i) for i in range(len(self)))

    def to_dense(self) -> np.ndarray:
        """All masks pasted on the picture, `[N, H, W] bool`."""
        dense = np.zeros(self.shape, dtype=bool)
        for i in range(len(self)):
            self.paste(i, dense[i])
        return dense

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = self.to_dense()
        return dense if dtype is None else dense.astype(dtype)

    def __repr__(self) -> str:
        return f'CroppedMasks({len(self)} masks on {self.image_size[0]}x{self.image_size[1]})'


def as_cropped(masks: Union[CroppedMasks, np.ndarray]) -> CroppedMasks:
    """`masks` as `CroppedMasks`: itself, or `CroppedMasks.from_dense` of `[N, H, W]` masks."""
    return masks if isinstance(masks, CroppedMasks) else CroppedMasks.from_dense(masks)
