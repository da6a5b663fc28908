"""The one polygon tracer: every polygon the toolkit writes (``Instances.polygons()``, the service's
``masks=polygons``, COCO polygon records, labelme files) is ``mask_polygons`` of the mask.

A polygon is filled as COCO and labelme fill it: a pixel is in when its centre is. So the outline runs a
quarter pixel inside the boundary pixels' outer edges (the trace of the crop doubled, nearest, and halved
back, read off the crop's own trace), where one through the boundary pixels' corners loses about half of them
(IoU 0.91 on the sample pictures). Then it is made for a person to edit: a part whose outline holds under
``MIN_PART_AREA`` pixels (a speck: the 4-10-point shapes an annotator would have to find and delete one by
one) is dropped, unless no part holds more or it sets a side of the mask's box (the box counts it, so the
polygons keep it: an instance's box is its polygons' extent), and each outline is simplified
(Douglas-Peucker, ``cv2.approxPolyDP``) to within ``TOLERANCE`` pixels as long as it fills back to the traced
one and its box. On the 5 sample pictures that takes 56 shapes of 6209 vertices (max 385) to 49 of 1488 (max
95) for 31 instances, filled back at mask IoU 0.980 or more, median 0.993 (tests/data/test_labelme.py and
tests/data/test_polygons.py hold them to it).

It costs one ``cv2.findContours`` of the mask's box, then work along the outlines only (the doubled trace's
corners read off each boundary pixel's steps, Douglas-Peucker, the fills compared where they cross each
pixel column, by COCO's own arithmetic, ``data.coco_fill``: no picture doubled, no pixel drawn; the loops
compiled, ``core.compiled``): on a 12 MP photo's instances about 2.4 RLE encodings of them, 3.4 bare traces;
``python tools/dev/polygon_speed.py`` measures it beside RLE and the bare trace. The compiled loops
(``data.pixel_walks``, ``data.coco_fill``) are imported where polygons are first made: a program that makes
none does not pay numba's import (0.2-0.6 s, 60 MB resident)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

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
    the traced ones and their box (else half that, a quarter, none: the corners of every straight run); so
    filled they span the mask's box. [] for an empty mask.
    Its cost is the crop's one contour trace (``cv2.findContours``) and work along the outlines: the fills
    are compared by where they cross each column (``fill_toggles``), no pixel drawn."""
    crop = np.ascontiguousarray(crop, dtype=bool)
    if crop.size == 0 or not crop.any():
        return []
    rings, traced, extent = traced_rings(crop, min_area)
    if tolerance > 0:
        rings = simplified(rings, traced, crop.shape, tolerance, extent)
    polygons = [polygon for polygon in (joined(outer, holes) for outer, holes in rings) if len(polygon) >= 3]
    if not polygons:
        return []
    ends = np.cumsum([len(polygon) for polygon in polygons]).tolist()
    placed = np.concatenate(polygons) + np.asarray(box[:2], np.float64)       # one pass, not one a polygon
    return [placed[start:end] for start, end in zip([0, *ends], ends)]


def compile_tracer() -> None:
    """Compile the tracer's loops now (``core.compiled``: about 3 s the first time, 0.3 s from numba's cache),
    so that no picture's polygons wait for it: ``mask_polygons`` of a small mask with a hole runs every one.
    The service calls it as it warms up."""
    mask = np.ones((12, 12), bool)
    mask[4:8, 4:8] = False
    mask_polygons(mask, (0, 0, 12, 12))


def simplified(rings: list[tuple[np.ndarray, list[np.ndarray]]], traced: np.ndarray, shape: Sequence[int],
               tolerance: float, extent: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """``rings`` ((outline, holes) as ``traced_rings`` gives them, on a mask of ``shape``; ``traced`` the sorted
    toggles of their fill, ``extent`` the least x, y and most x, y of their points) simplified to within
    ``tolerance`` if their fill keeps ``MIN_IOU`` with the traced one and its box; if only the box is lost,
    with the outline points on the box's sides kept (each stretch between them simplified on its own: only
    the rings with such points change); else at half the tolerance, a quarter; else as they are."""
    from solov2.data.coco_fill import fill_box, fill_iou, fill_toggles  # here: numba imported only where used
    height, width = shape
    box = pixel_box(extent)
    flat = [ring for outer, holes in rings for ring in (outer, *holes)]
    kept: dict[int, np.ndarray] | None = None      # the rings' points on the box's sides, once the box is lost
    for step in (tolerance, tolerance / 2, tolerance / 4):     # the loosest that still gives the mask back
        candidate = [simplify(ring, step) for ring in flat]
        for sides in (None, extent):
            if sides is not None:
                kept = on_sides(flat, sides) if kept is None else kept
                candidate = [simplify(ring, step, kept[index]) if index in kept else simple
                             for index, (ring, simple) in enumerate(zip(flat, candidate))]
            toggles = fill_toggles(candidate, height, width)
            if fill_iou(toggles, traced) < MIN_IOU:
                break                                   # the next tolerance
            if fill_box(toggles, height) == box:
                simple = iter(candidate)
                return [(next(simple), [next(simple) for _ in holes]) for outer, holes in rings]
    return rings


def traced_rings(mask: np.ndarray, min_area: float
                 ) -> tuple[list[tuple[np.ndarray, list[np.ndarray]]], np.ndarray, np.ndarray]:
    """(outline, its holes) of each part of ``mask`` ``[h, w] bool`` worth drawing, largest first: those whose
    outline holds ``min_area`` pixels or more (all of the largest part's, if none does) and the largest smaller
    one reaching each side of the mask's box the others do not reach (the box counts it: the outlines span the
    box); holes holding ``min_area`` or more; as ``[K, 2] float32`` (x, y) through the corners of its straight
    runs: a quarter pixel inside the boundary pixels' outer edges, so that filled they give the mask's pixels
    back (``quarter_rings``); the toggles of their fill (``fill_toggles``: where the pixels they hold start
    and end down each column); and ``[4]`` the least x, y and most x, y of their points."""
    from solov2.data.pixel_walks import traced_toggles  # here: numba imported only where polygons are made
    contours, hierarchy = cv2.findContours(mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    parents = hierarchy[0][:, 3]
    rings, areas, bounds, (points, lengths, pairs) = quarter_rings(contours, parents >= 0)
    outers = np.flatnonzero(parents < 0)
    outers = outers[np.argsort(-areas[outers], kind='stable')].tolist()
    least = min(min_area, areas[outers[0]])
    parts = [outer for outer in outers if areas[outer] >= least]
    parts += box_setters(parts, [outer for outer in outers if areas[outer] < least], bounds)
    holes: dict[int, list[int]] = {}
    for hole in np.flatnonzero((parents >= 0) & (areas >= min_area)).tolist():
        holes.setdefault(int(parents[hole]), []).append(hole)
    kept = [(outer, holes.get(outer, [])) for outer in parts]
    held = np.zeros(len(rings), bool)
    held[[ring for outer, holes in kept for ring in (outer, *holes)]] = True
    traced = traced_toggles(points, lengths, held, pairs, *mask.shape)
    extent = np.concatenate([bounds[parts, :2].min(axis=0), bounds[parts, 2:].max(axis=0)])
    return [(rings[outer], [rings[hole] for hole in holes]) for outer, holes in kept], traced, extent


def box_setters(parts: list[int], specks: list[int], bounds: np.ndarray) -> list[int]:
    """Of ``specks`` (ring indices, largest first), the largest reaching each side of the box of them and
    ``parts`` together that ``parts`` and those before it do not reach, largest first; ``bounds`` ``[R, 4]``
    each ring's x0, y0, x1, y1 (the least and most of its points)."""
    if not specks:
        return []

    def extent(rings: list[int]) -> np.ndarray:
        return np.concatenate([bounds[rings, :2].min(axis=0), bounds[rings, 2:].max(axis=0)])

    whole, reached, added = extent(parts + specks), extent(parts), []
    for side in range(4):
        if reached[side] != whole[side]:
            added.append(specks[int(np.argmax(bounds[specks, side] == whole[side]))])
            reached = extent([*added, *parts])
    return sorted(set(added), key=specks.index)


def quarter_rings(contours: Sequence[np.ndarray], holes: np.ndarray
                  ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each of ``contours`` (``cv2.findContours``' ``CHAIN_APPROX_NONE`` boundary pixels, ``[K, 1, 2]`` int32
    (x, y); ``holes`` ``[R] bool`` which are holes) as the trace of the mask doubled gives it with
    ``CHAIN_APPROX_SIMPLE``, halved back: ``[L, 2] float32`` quarter points, the corners of its straight runs,
    from the point that trace starts at (``pixel_walks``: each pixel's corners by its steps in and out); ``[R]``
    the area each ring holds, in pixels; ``[R, 4]`` the least x, y and most x, y of each ring's points; and the
    walks themselves, for the rings' fill (``traced_toggles``): ``[N, 2]`` the boundary pixels, ``[R]`` how many
    a ring, ``[N]`` each pixel's pair of steps (``pixel_walks``). The walks are read by ``walked_corners``."""
    from solov2.data.pixel_walks import walked_corners  # here: numba imported only where polygons are made
    lengths = np.fromiter(map(len, contours), np.int64, len(contours))
    points = np.concatenate(contours).reshape(-1, 2)
    corners, kept, twice, bounds, pairs = walked_corners(points, lengths, holes)
    ends = np.cumsum(kept).tolist()
    rings = [corners[start:stop] for start, stop in zip([0, *ends], ends)]
    return rings, np.abs(twice) / 8, bounds, (points, lengths, pairs)


def turned(ring: np.ndarray, start: int) -> np.ndarray:
    """``ring`` ``[K, ...]`` from its item ``start`` round to the one before it (``ring`` itself, not a copy,
    where ``start`` is 0)."""
    return np.concatenate([ring[start:], ring[:start]]) if start else ring


def on_sides(rings: Sequence[np.ndarray], box: np.ndarray) -> dict[int, np.ndarray]:
    """Of ``rings`` (each ``[K, 2]``), those with points on a side of ``box`` (x0, y0, x1, y1): each one's
    index to the indices ``[S]`` (ascending) of those points in it."""
    points, ends = np.concatenate(rings), np.cumsum([len(ring) for ring in rings])
    at = np.flatnonzero((points[:, 0] == box[0]) | (points[:, 1] == box[1]) | (points[:, 0] == box[2]) |
                        (points[:, 1] == box[3]))
    ring = np.searchsorted(ends, at, side='right')
    cuts = np.flatnonzero(ring[1:] != ring[:-1]) + 1
    return {int(index[0]): indices - (ends[index[0]] - len(rings[index[0]]))
            for index, indices in zip(np.split(ring, cuts), np.split(at, cuts))}


def simplify(ring: np.ndarray, tolerance: float, kept: np.ndarray | None = None) -> np.ndarray:
    """``ring`` ``[K, 2]`` float32 simplified by Douglas-Peucker to within ``tolerance``, closed (as it is when
    that would leave no area: under 3 vertices); with ``kept`` (``[S]`` indices of its points, ascending, at
    least one), those points kept, each stretch between them simplified on its own."""
    if kept is None:
        simple = cv2.approxPolyDP(ring, tolerance, closed=True).reshape(-1, 2)
    else:
        rotated = turned(ring, int(kept[0]))
        cuts = [*(kept - kept[0]), len(ring)]
        simple = np.concatenate([
            cv2.approxPolyDP(np.concatenate([rotated[start:stop], rotated[stop % len(ring)][None]]), tolerance,
                             closed=False).reshape(-1, 2)[:-1]
            for start, stop in zip(cuts, cuts[1:])])
    return simple if len(simple) >= 3 else ring


def joined(outer: np.ndarray, holes: Sequence[np.ndarray]) -> np.ndarray:
    """One polygon of ``outer`` and its ``holes`` (each ``[K, 2]``): each hole walked round from its vertex
    nearest a vertex of ``outer`` (``scipy.spatial.KDTree``, one query for every hole; the first of a tie) and
    back along the same cut, which fills to nothing."""
    if not holes:
        return outer
    from scipy.spatial import KDTree  # here: half a second of imports the annotation tools need not pay
    sizes = np.fromiter(map(len, holes), np.int64, len(holes))
    distances, nearest = KDTree(outer).query(np.concatenate(holes))
    closest = np.lexsort((distances, np.repeat(np.arange(len(holes)), sizes)))[np.cumsum(sizes) - sizes]
    ats, starts = nearest[closest], closest - (np.cumsum(sizes) - sizes)
    pieces, done = [], 0
    for hole in np.argsort(ats, kind='stable').tolist():
        at, start = int(ats[hole]), int(starts[hole])
        pieces += [outer[done:at + 1], holes[hole][start:], holes[hole][:start + 1]]
        done = at                                           # the outline goes on from the cut's vertex
    return np.concatenate([*pieces, outer[done:]])


def pixel_box(extent: np.ndarray) -> tuple[int, int, int, int]:
    """The half-open box x0, y0, x1, y1 of the pixels whose traced outline points (``quarter_rings``: each a
    quarter pixel inside its boundary pixel's edges) have ``extent`` ``[4]`` as least x, y and most x, y: their
    traced fill's ``fill_box``, found without it (tests/data/test_polygons.py holds the two equal)."""
    x0, y0, x1, y1 = np.floor(extent).astype(np.int64).tolist()
    return x0, y0, x1 + 1, y1 + 1
