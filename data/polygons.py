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
pixel column, by COCO's own arithmetic: no picture doubled, no pixel drawn): on a 12 MP photo's instances
about 3.3 RLE encodings of them, 4.5 bare traces; ``python tools/dev/polygon_speed.py`` measures it beside
RLE and the bare trace."""
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
        rings = simplified(rings, np.sort(traced, kind='stable'), crop.shape, tolerance, extent)
    polygons = [polygon for polygon in (joined(outer, holes) for outer, holes in rings) if len(polygon) >= 3]
    if not polygons:
        return []
    ends = np.cumsum([len(polygon) for polygon in polygons]).tolist()
    placed = np.concatenate(polygons) + np.asarray(box[:2], np.float64)       # one pass, not one a polygon
    return [placed[start:end] for start, end in zip([0, *ends], ends)]


def simplified(rings: list[tuple[np.ndarray, list[np.ndarray]]], traced: np.ndarray, shape: Sequence[int],
               tolerance: float, extent: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """``rings`` ((outline, holes) as ``traced_rings`` gives them, on a mask of ``shape``; ``traced`` the sorted
    toggles of their fill, ``extent`` the least x, y and most x, y of their points) simplified to within
    ``tolerance`` if their fill keeps ``MIN_IOU`` with the traced one and its box; if only the box is lost,
    with the outline points on the box's sides kept (each stretch between them simplified on its own: only
    the rings with such points change); else at half the tolerance, a quarter; else as they are."""
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
            toggles = np.sort(fill_toggles(candidate, height, width), kind='stable')    # runs edge by edge: merged
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
    contours, hierarchy = cv2.findContours(mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    parents = hierarchy[0][:, 3]
    rings, areas, bounds, (positions, top, bottom) = quarter_rings(contours, parents >= 0, mask.shape)
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
    if not held.all():
        held = np.repeat(held, np.fromiter(map(len, contours), np.int64, len(contours)))
        top, bottom = top & held, bottom & held
    traced = np.concatenate([positions[top], positions[bottom] + 1])
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


# The trace of the mask doubled (nearest), read off the mask's own trace: at each boundary pixel it visits some
# of the pixel's four quarter points (x + 1/4 or 3/4, y + 1/4 or 3/4), in the order QUARTER_OFFSETS gives them
# (anticlockwise on the picture, y down), from the one the trace's step in reaches (FIRST_BY_STEP) to the one
# its step out leaves from (LAST_BY_STEP), round the whole pixel when those are one point (a diagonal U-turn);
# a step (dx, dy) is indexed 3 dy + dx + 4, the middle one no step (a lone pixel). tests/data/test_polygons.py
# holds it to the doubled trace, point for point.
QUARTER_OFFSETS = np.array([(0, 0), (0, 1), (1, 1), (1, 0)], np.int32)     # x, y on the mask doubled, + 2 x, 2 y
FIRST_BY_STEP = np.array([2, 2, 1, 3, 0, 1, 3, 0, 0])
LAST_BY_STEP = np.array([0, 3, 3, 0, 3, 2, 1, 1, 2])
START_QUARTER = np.array([0, 3])    # where the doubled trace starts on a ring's first pixel: an outline, a hole
STEPS = 9                           # step codes
VISITS = 5                          # quarter points a pixel's walk visits, at most
NO_START = 4                        # a pixel where no ring's trace starts (one starts at one of a walk's first 4)


def pixel_walks() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the doubled trace does at a boundary pixel, looked up by the pixel's ``pair`` of step codes
    (9 in + out) and, as ``entry`` = 5 pair + s, by the visit s (0-3) of its walk where a ring's trace starts
    (only on a ring's first pixel; ``NO_START`` for every other pixel). Returns ``[405 * 5, 2]`` int32 the offsets on
    the mask doubled of the corners it visits, 5 slots an entry (the quarter points where the trace turns, and
    where it starts), ``[405]`` how many, ``[405]`` the start's place among them, and ``[81] bool`` by pair
    whether the walk goes along the pixel's top side, its bottom side (the traced fill's toggles). A turn is
    known from the two steps: the move into a walk's first point comes from the walk before's last point,
    a function of the step in alone, and the move out of its last point one of the step out alone."""
    corners = np.zeros((STEPS * STEPS * VISITS, VISITS, 2), np.int32)
    counts, ranks = np.zeros(len(corners), np.int64), np.zeros(len(corners), np.int64)
    top, bottom = np.zeros(STEPS * STEPS, bool), np.zeros(STEPS * STEPS, bool)

    def between(step: int) -> np.ndarray:           # the move from one walk's last point to the next's first
        offset = 2 * np.array([step % 3 - 1, step // 3 - 1])
        return offset + QUARTER_OFFSETS[FIRST_BY_STEP[step]] - QUARTER_OFFSETS[LAST_BY_STEP[step]]
    for step_in in range(STEPS):
        for step_out in range(STEPS):
            pair, first = STEPS * step_in + step_out, FIRST_BY_STEP[step_in]
            count = (LAST_BY_STEP[step_out] - first - 1) % 4 + 2                  # quarter points visited: 2 to 5
            quarters = QUARTER_OFFSETS[(first + np.arange(count)) % 4]
            moves = [between(step_in), *np.diff(quarters, axis=0), between(step_out)]
            walked = count - 1 + (step_out == 4)           # sides walked round the pixel: a lone one's four
            top[pair], bottom[pair] = (3 - first) % 4 < walked, (1 - first) % 4 < walked
            for start in range(VISITS):
                visits = [k for k in range(count) if k == start != NO_START or (moves[k] != moves[k + 1]).any()]
                entry = VISITS * pair + start
                corners[entry, :len(visits)], counts[entry] = quarters[visits], len(visits)
                ranks[entry] = visits.index(start) if start < min(count, NO_START) else 0   # else never met
    return corners.reshape(-1, 2), counts, ranks, top, bottom


WALK_CORNERS, WALK_COUNTS, WALK_START_RANKS, WALKS_TOP, WALKS_BOTTOM = pixel_walks()


def quarter_rings(contours: Sequence[np.ndarray], holes: np.ndarray, shape: Sequence[int]
                  ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each of ``contours`` (``cv2.findContours``' ``CHAIN_APPROX_NONE`` boundary pixels, ``[K, 1, 2]`` int32
    (x, y), of a mask of ``shape`` (height, width); ``holes`` ``[R] bool`` which are holes) as the trace of the
    mask doubled gives it with ``CHAIN_APPROX_SIMPLE``, halved back: ``[L, 2] float32`` quarter points, the
    corners of its straight runs, from the point that trace starts at (``pixel_walks``: each pixel's corners
    by its steps in and out); ``[R]`` the area each ring holds, in pixels; ``[R, 4]`` the least x, y and most
    x, y of each ring's points; and where the rings' fill toggles (``fill_toggles``: the top and bottom sides
    of pixels each walks, the pixels' own runs; ``traced_rings`` keeps those of the rings it keeps): ``[N]``
    each boundary pixel's position (``position_type``), ``[N] bool`` whether its walk goes along its top side,
    ``[N] bool`` its bottom side. Steps are read off the points paired (``paired``: one int64 subtraction a
    pixel)."""
    lengths = np.fromiter(map(len, contours), np.int64, len(contours))
    points = np.concatenate(contours).reshape(-1, 2)
    packed = paired(points)
    moved = following(packed, lengths) - packed + STEP_BIAS             # (dy + 1) * 2 ** 32 + dx + 1
    code_out = (moved >> 32) * 3 + (moved & 3)
    pair = preceding(code_out, lengths) * STEPS + code_out
    begins = np.cumsum(lengths) - lengths
    entry = pair * VISITS + NO_START
    first_visit = (START_QUARTER[holes.astype(int)] - FIRST_BY_STEP[pair[begins] // STEPS]) % 4   # the trace's
    entry[begins] = pair[begins] * VISITS + first_visit
    kind = position_type(*shape)
    positions = points[:, 0].astype(kind) * shape[0] + points[:, 1]
    count = WALK_COUNTS.take(entry)
    slot = counted_from(entry * VISITS, count)
    doubled = np.repeat(packed * 2, count) + WALK_CORNERS_PAIRED.take(slot)       # [P] corners, the pixels' order
    kept = np.add.reduceat(count, begins)
    kept_offsets = np.cumsum(kept) - kept
    xy = doubled.view(np.int32).reshape(-1, 2)
    corners = np.multiply(xy, np.float32(0.5), dtype=np.float32)
    corners += np.float32(0.25)                                           # quarter points: exact
    wide = xy.astype(np.int64)
    ahead = following(wide, kept)
    twice = (wide[:, 0] - ahead[:, 0]) * (wide[:, 1] + ahead[:, 1])         # the trapezoid (shoelace) formula
    bounds = np.concatenate([np.minimum.reduceat(corners, kept_offsets), np.maximum.reduceat(corners, kept_offsets)],
                            axis=1)
    rings = [turned(corners[start:stop], rank)        # each ring from its start (its area and bounds are the same)
             for start, stop, rank in zip(kept_offsets.tolist(), (kept_offsets + kept).tolist(),
                                          WALK_START_RANKS.take(entry[begins]).tolist())]
    sides = (positions, WALKS_TOP.take(pair), WALKS_BOTTOM.take(pair))
    return rings, np.abs(np.add.reduceat(twice, kept_offsets)) / 8, bounds, sides


def turned(ring: np.ndarray, start: int) -> np.ndarray:
    """``ring`` ``[K, ...]`` from its item ``start`` round to the one before it (``ring`` itself, not a copy,
    where ``start`` is 0)."""
    return np.concatenate([ring[start:], ring[:start]]) if start else ring


def paired(points: np.ndarray) -> np.ndarray:
    """``points`` ``[K, 2]`` int32, each (x, y) pair read as one ``[K]`` int64 (a view): added pair to pair,
    ``paired(a) + paired(b)`` is ``paired(a + b)`` where no coordinate leaves [0, 2 ** 31), so one pass moves
    both (``.view(np.int32).reshape(-1, 2)`` reads them back)."""
    return np.ascontiguousarray(points, np.int32).view(np.int64).reshape(-1)


WALK_CORNERS_PAIRED = paired(WALK_CORNERS)      # each corner's offset (x, y) as one int64
STEP_BIAS = 2 ** 32 + 1     # (1, 1) paired: added to the difference of two paired points a step apart (dx, dy
                            # in -1..1) it gives paired (dx + 1, dy + 1), no word below 0


def following(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For rings of ``lengths`` items one after another (``values`` ``[sum, ...]``): each item's next round its
    own ring."""
    ends = np.cumsum(lengths)
    ahead = np.empty_like(values)
    ahead[:-1] = values[1:]
    ahead[ends - 1] = values[ends - lengths]
    return ahead


def preceding(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """As ``following``, each item's previous round its own ring."""
    ends = np.cumsum(lengths)
    behind = np.empty_like(values)
    behind[1:] = values[:-1]
    behind[ends - lengths] = values[ends - 1]
    return behind


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


COCO_SCALE = 5      # pycocotools' rleFrPoly draws each edge on the picture upsampled 5 times, vertices rounded


def fill_toggles(rings: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Where COCO's polygon fill (``pycocotools.mask.frPyObjects``, its ``rleFrPoly``) of ``rings`` (``[K, 2]``
    (x, y), coordinates >= 0) on a ``height`` x ``width`` mask turns on or off going down each column, as
    ``[M]`` positions ``x * height + y`` (column-major, as its RLE counts; ``position_type``): rleFrPoly's own
    arithmetic (each edge drawn upsampled from its end of smaller x, or y when steeper, a toggle where it
    crosses a pixel column's centre), per crossing rather than per upsampled point. A pixel is in when an odd
    number of toggles come before it: a ring's part less its holes, and a cut walked both ways counts twice
    (nothing). ``fill_iou`` compares two fills; tests/data/test_polygons.py holds it to pycocotools, pixel for
    pixel."""
    rings = [ring for ring in rings if len(ring)]
    if not rings:
        return np.zeros(0, position_type(height, width))
    ends = np.trunc(COCO_SCALE * np.concatenate(rings).astype(np.float64) + 0.5)
    ahead = following(ends, np.fromiter(map(len, rings), np.int64, len(rings)))
    x0, y0, x1, y1 = ends[:, 0], ends[:, 1], ahead[:, 0], ahead[:, 1]
    flat = np.abs(x1 - x0) >= np.abs(y1 - y0)
    flat_columns, flat_rows = flat_crossings(*(value[flat] for value in (x0, y0, x1, y1)), width)
    steep_columns, steep_rows = steep_crossings(*(value[~flat] for value in (x0, y0, x1, y1)), width)
    columns, rows = np.concatenate([flat_columns, steep_columns]), np.concatenate([flat_rows, steep_rows])
    rows = np.ceil(np.clip((rows + 0.5) / COCO_SCALE - 0.5, 0, height))
    return (columns * height + rows).astype(position_type(height, width))


def position_type(height: int, width: int) -> type:
    """The integer type of a fill's toggles on a ``height`` x ``width`` mask: int32 where every position
    (up to ``(width + 1) * height``) fits, which sorts faster; else int64."""
    return np.int32 if (width + 1) * height < 2 ** 31 else np.int64


def upsampled_at(start: np.ndarray, slope: np.ndarray, step: np.ndarray) -> np.ndarray:
    """rleFrPoly's point ``step`` of an edge on its other axis: ``(int)(start + slope * step + .5)``."""
    return np.floor((start + slope * step) + 0.5)


def column_runs(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edge, column) of each pixel column ``low[edge]`` to ``high[edge]`` (``[E]`` integral float64; none
    where low > high), edge by edge: ``[sum]`` each."""
    count = np.maximum(high - low + 1, 0).astype(np.int64)
    return np.repeat(np.arange(len(count)), count), counted_from(low, count)


def counted_from(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[sum(counts)]``: ``starts[0]``, ``starts[0] + 1``, ..., ``counts[0]`` values, then ``counts[1]`` from
    ``starts[1]``, and so on (``starts`` ``[E]``, of its own dtype; ``counts`` ``[E]`` int, >= 0)."""
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))


def flat_crossings(x0, y0, x1, y1, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixel column, upsampled row above it) of each crossing of edges no steeper than 45 degrees (upsampled
    ends, ``[E]`` float64 each) with the centre of a column of a mask ``width`` wide: drawn from the end of
    smaller x a point per upsampled column, a crossing at each step from upsampled column 5 n + 2 to 5 n + 3
    (x = n + 1/2), the row the smaller of the two points' (the first's where the edge falls, else the second's:
    rounding keeps the order)."""
    flip = x0 > x1
    xs, ys, xe, ye = np.where(flip, x1, x0), np.where(flip, y1, y0), np.where(flip, x0, x1), np.where(flip, y0, y1)
    slope = (ye - ys) / np.maximum(xe - xs, 1)
    low = np.maximum(np.ceil((xs - 2) / COCO_SCALE), 0)             # columns n: xs <= 5 n + 2, 5 n + 3 <= xe
    edge, column = column_runs(low, np.minimum(np.floor((xe - 3) / COCO_SCALE), width - 1))
    step = COCO_SCALE * column + (2 + (slope < 0) - xs)[edge]
    return column, upsampled_at(ys[edge], slope[edge], step)


def steep_crossings(x0, y0, x1, y1, width: int) -> tuple[np.ndarray, np.ndarray]:
    """As ``flat_crossings`` for steeper edges: drawn from the end of smaller y a point per upsampled row, its
    column rounded; a crossing at the first step whose column passes from 5 n + 2 to 5 n + 3 or back, the row
    the step's first. The step is found from the slope, then checked with rleFrPoly's own rounding on either
    side: the guess, off by a rounding, is off by at most one step (where the exact crossing is a whole step,
    the rounding decides it), so one check corrects it."""
    flip = y0 > y1
    xs, ys, xe, ye = np.where(flip, x1, x0), np.where(flip, y1, y0), np.where(flip, x0, x1), np.where(flip, y0, y1)
    length = ye - ys
    slope = (xe - xs) / length
    low = np.maximum(np.floor((np.minimum(xs, xe) - 3) / COCO_SCALE) + 1, 0)     # 5 n + 3 in (least x, most x]
    edge, column = column_runs(low, np.minimum(np.floor((np.maximum(xs, xe) - 3) / COCO_SCALE), width - 1))
    start, rate, most = xs[edge], slope[edge], length[edge]
    rising, passing = rate > 0, COCO_SCALE * column + 3          # a rising edge's point reaches 5 n + 3
    bound = (passing - 0.5 - start) / rate          # no crossing where rate is 0: the edge stays in one column
    step = np.clip(np.where(rising, np.ceil(bound), np.floor(bound) + 1), 1, most)

    def passed(at: np.ndarray) -> np.ndarray:
        return ((start + rate * at) + 0.5 >= passing) == rising     # (int)(...) >= 5 n + 3, or <= 5 n + 2
    step = np.clip(step + ~passed(step) - (passed(step - 1) & (step > 1)), 1, most)
    return column, ys[edge] + step - 1


def fill_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two fills given by their toggles (``fill_toggles``), each sorted, from the
    areas of each and of their difference (the toggles of both, merged): no pixel drawn; 1.0 for two empty
    fills."""
    only_a, only_b = toggled_area(a), toggled_area(b)
    either = toggled_area(np.sort(np.concatenate([a, b]), kind='stable'))      # two sorted runs merged
    union = (only_a + only_b + either) / 2
    return (only_a + only_b - either) / 2 / union if union else 1.0


def fill_box(toggles: np.ndarray, height: int) -> tuple[int, int, int, int]:
    """The half-open box x0, y0, x1, y1 of a fill given by its ``toggles``, sorted, on a mask ``height`` high
    (zeros for an empty fill)."""
    starts, ends = toggles[0::2], toggles[1::2] - 1         # each run's first and last pixel
    runs = starts < ends + 1
    if not runs.any():
        return (0, 0, 0, 0)
    starts, ends = starts[runs], ends[runs]
    if (starts // height != ends // height).any():          # a run from one column's foot into the next's head
        return int(starts[0] // height), 0, int(ends[-1] // height) + 1, height
    return (int(starts[0] // height), int((starts % height).min()), int(ends[-1] // height) + 1,
            int((ends % height).max()) + 1)


def pixel_box(extent: np.ndarray) -> tuple[int, int, int, int]:
    """The half-open box x0, y0, x1, y1 of the pixels whose traced outline points (``quarter_rings``: each a
    quarter pixel inside its boundary pixel's edges) have ``extent`` ``[4]`` as least x, y and most x, y: their
    traced fill's ``fill_box``, found without it (tests/data/test_polygons.py holds the two equal)."""
    x0, y0, x1, y1 = np.floor(extent).astype(np.int64).tolist()
    return x0, y0, x1 + 1, y1 + 1


def toggled_area(toggles: np.ndarray) -> int:
    """Pixels of a fill given by its ``toggles``, sorted: each second one less the one before."""
    return int(toggles[1::2].sum(dtype=np.int64) - toggles[0::2].sum(dtype=np.int64))
