"""The one polygon tracer: every polygon the toolkit writes (``Instances.polygons()``, the service's
``masks=polygons``, COCO polygon records, labelme files) is ``mask_polygons`` of the mask.

A polygon is filled as COCO and labelme fill it: a pixel is in when its centre is. So the outline is traced
a quarter pixel inside the boundary pixels' outer edges (on the crop doubled, nearest, and halved back), where
one through the boundary pixels' corners loses about half of them (IoU 0.91 on the sample pictures). Then it
is made for a person to edit: a part whose outline holds under ``MIN_PART_AREA`` pixels (a speck: the
4-10-point shapes an annotator would have to find and delete one by one) is dropped, unless no part holds
more, and each outline is simplified (Douglas-Peucker, ``cv2.approxPolyDP``) to within ``TOLERANCE`` pixels.
On the 5 sample pictures that takes 56 shapes of 6209 vertices (max 385) to 39 of 1430 (max 98) for 31
instances, read back through ``tools/labelme2coco.py`` at mask IoU 0.965 or more, median 0.992
(tests/data/test_labelme.py and tests/data/test_polygons.py hold them to it)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util

MIN_PART_AREA = 12          # pixels inside a part's outline: under a 4x4 block's (12.25), a speck not worth a shape
TOLERANCE = 1.0             # pixels: how far a simplified outline may stray from the traced one ...
MIN_IOU = 0.98              # ... as long as the filled outlines keep this IoU with the mask (else half, a quarter)


def mask_polygons(crop: np.ndarray, box: Sequence[int], min_area: float = MIN_PART_AREA,
                  tolerance: float = TOLERANCE) -> list[np.ndarray]:
    """The outline of each 8-connected part of a mask ``crop`` ``[y1 - y0, x1 - x0] bool`` in its ``box``
    (x0, y0, x1, y1) as ``[K, 2] float64`` (x, y) picture coordinates (pixel x spans [x, x + 1], as COCO
    fills polygons), largest part first: a part whose outline holds under ``min_area`` pixels dropped unless
    none holds more, a hole as large joined to its part's outline by a zero-width cut (one polygon still),
    outlines simplified to within ``tolerance`` pixels as long as the filled polygons keep ``MIN_IOU`` with
    the traced ones (else half that, a quarter, none: the corners of every straight run); [] for an empty mask."""
    crop = np.ascontiguousarray(crop, dtype=bool)
    if crop.size == 0 or not crop.any():
        return []
    rings = traced_rings(crop, min_area)
    polygons = [joined(outer, holes) for outer, holes in rings]
    if tolerance > 0:
        traced = filled_rle(polygons, *crop.shape)
        for step in (tolerance, tolerance / 2, tolerance / 4):     # the loosest that still gives the mask back
            simplified = [joined(simplify(outer, step), [simplify(hole, step) for hole in holes])
                          for outer, holes in rings]
            if mask_util.iou([filled_rle(simplified, *crop.shape)], [traced], [0])[0, 0] >= MIN_IOU:
                polygons = simplified
                break
    origin = np.asarray(box[:2], np.float64)
    return [polygon + origin for polygon in polygons if len(polygon) >= 3]


def traced_rings(mask: np.ndarray, min_area: float) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(outline, its holes) of each part of ``mask`` ``[h, w] bool`` whose outline holds ``min_area`` pixels
    or more (all of the largest part's, if none does), holes holding as much, largest part first, as ``[K, 2]
    float64`` (x, y): traced on the mask doubled (nearest) and halved back, ``(x + 0.5) / 2``, a quarter pixel
    inside the boundary pixels' outer edges, so that filled they give the mask's pixels back."""
    doubled = cv2.resize(mask.view(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parents = hierarchy[0][:, 3]
    areas = [cv2.contourArea(contour) / 4 for contour in contours]     # in pixels of the mask
    outers = sorted((index for index, parent in enumerate(parents) if parent < 0), key=lambda index: -areas[index])
    least = min(min_area, areas[outers[0]])
    return [((contours[outer].reshape(-1, 2) + 0.5) / 2,
             [(contours[hole].reshape(-1, 2) + 0.5) / 2 for hole, parent in enumerate(parents)
              if parent == outer and areas[hole] >= min_area])
            for outer in outers if areas[outer] >= least]


def simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """``ring`` ``[K, 2]`` simplified by Douglas-Peucker to within ``tolerance``, closed (as it is when that
    would leave no area: under 3 vertices)."""
    simple = cv2.approxPolyDP(ring.astype(np.float32), tolerance, closed=True).reshape(-1, 2).astype(np.float64)
    return simple if len(simple) >= 3 else ring


def joined(outer: np.ndarray, holes: Sequence[np.ndarray]) -> np.ndarray:
    """One polygon of ``outer`` and its ``holes`` (each ``[K, 2]``): each hole walked round from its vertex
    nearest the outline and back along the same cut, which fills to nothing."""
    for hole in holes:
        distances = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(int(distances.argmin()), distances.shape)
        outer = np.concatenate([outer[:i + 1], np.roll(hole, -j, axis=0), hole[j:j + 1], outer[i:]])
    return outer


def filled_rle(polygons: Sequence[np.ndarray], height: int, width: int) -> dict:
    """The COCO RLE of ``polygons`` (``[K, 2]`` (x, y)) filled as COCO fills them on a ``height`` x ``width`` mask."""
    flat = [polygon.ravel().tolist() for polygon in polygons if len(polygon) >= 3]
    return mask_util.merge(mask_util.frPyObjects(flat, height, width)) if flat else \
        mask_util.encode(np.zeros((height, width, 1), np.uint8, order='F'))[0]
