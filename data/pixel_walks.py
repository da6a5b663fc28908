"""The trace of a mask doubled (nearest), read off the mask's own trace one boundary pixel at a time, as compiled
loops (``core.compiled``): ``data.polygons.quarter_rings`` gives its rings, ``traced_toggles`` their fill.

At each boundary pixel the doubled trace visits some of the pixel's four quarter points (x + 1/4 or 3/4, y + 1/4
or 3/4), in the order ``QUARTER_OFFSETS`` gives them (anticlockwise on the picture, y down), from the one the
trace's step in reaches (``FIRST_BY_STEP``) to the one its step out leaves from (``LAST_BY_STEP``), round the whole
pixel when those are one point (a diagonal U-turn); a step (dx, dy) is indexed 3 dy + dx + 4, the middle one no
step (a lone pixel). ``pixel_walks`` tabulates it for the 81 pairs of steps; tests/data/test_polygons.py holds the
rings to the doubled trace, point for point."""
import numpy as np

from solov2.core.compiled import compiled
from solov2.data.coco_fill import column_major

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



@compiled
def walked_corners(points: np.ndarray, lengths: np.ndarray, holes: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``quarter_rings``' loop over the boundary pixels ``points`` ``[N, 2]`` int32 of rings of ``lengths``
    ``[R]`` (``holes`` ``[R] bool``): each pixel's pair of steps in and out (``[N]``, 9 in + out, a step
    (dx, dy) coded 3 (dy + 1) + dx + 1), its walk's corners on the mask doubled from ``pixel_walks``' tables
    (a ring's first pixel's walk by where the doubled trace starts), halved back to ``[P, 2] float32`` quarter
    points, each ring's from its trace's start; ``[R]`` corners a ring; ``[R]`` its shoelace sum on the mask
    doubled, signed (8 times the area it holds, in pixels); ``[R, 4] float32`` its least and most x, y."""
    rings = len(lengths)
    pairs = np.empty(len(points), np.int64)
    entries = np.empty(len(points), np.int64)
    kept = np.zeros(rings, np.int64)
    begin = 0
    for ring in range(rings):
        end = begin + lengths[ring]
        for pixel in range(begin, end):
            before, after = pixel - 1 if pixel > begin else end - 1, pixel + 1 if pixel + 1 < end else begin
            step_in = 3 * (points[pixel, 1] - points[before, 1]) + points[pixel, 0] - points[before, 0] + 4
            step_out = 3 * (points[after, 1] - points[pixel, 1]) + points[after, 0] - points[pixel, 0] + 4
            pairs[pixel] = STEPS * step_in + step_out
            start = NO_START if pixel > begin else (START_QUARTER[int(holes[ring])] - FIRST_BY_STEP[step_in] + 4) % 4
            entries[pixel] = VISITS * pairs[pixel] + start
            kept[ring] += WALK_COUNTS[entries[pixel]]
        begin = end
    corners = np.empty((kept.sum(), 2), np.float32)
    twice = np.zeros(rings, np.int64)
    bounds = np.empty((rings, 4), np.float32)
    begin = offset = 0
    for ring in range(rings):
        end, rank = begin + lengths[ring], WALK_START_RANKS[entries[begin]]
        low_x = low_y = high_x = high_y = first_x = first_y = last_x = last_y = 0
        place = 0
        for pixel in range(begin, end):
            entry = entries[pixel]
            for slot in range(VISITS * entry, VISITS * entry + WALK_COUNTS[entry]):
                x, y = 2 * points[pixel, 0] + WALK_CORNERS[slot, 0], 2 * points[pixel, 1] + WALK_CORNERS[slot, 1]
                if place == 0:
                    low_x = high_x = first_x = x
                    low_y = high_y = first_y = y
                else:
                    twice[ring] += (last_x - x) * (last_y + y)     # the trapezoid (shoelace) formula
                    low_x, high_x, low_y, high_y = min(low_x, x), max(high_x, x), min(low_y, y), max(high_y, y)
                at = offset + place - rank + (kept[ring] if place < rank else 0)    # from the trace's start
                corners[at, 0], corners[at, 1] = 0.5 * x + 0.25, 0.5 * y + 0.25    # quarter points: exact
                last_x, last_y, place = x, y, place + 1
        twice[ring] += (last_x - first_x) * (last_y + first_y)
        bounds[ring, 0], bounds[ring, 1] = 0.5 * low_x + 0.25, 0.5 * low_y + 0.25
        bounds[ring, 2], bounds[ring, 3] = 0.5 * high_x + 0.25, 0.5 * high_y + 0.25
        begin, offset = end, offset + kept[ring]
    return corners, kept, twice, bounds, pairs


@compiled
def traced_toggles(points: np.ndarray, lengths: np.ndarray, held: np.ndarray, pairs: np.ndarray, height: int,
                   width: int) -> np.ndarray:
    """The toggles of the traced rings' fill (``coco_fill.fill_toggles``' form, ascending) read off their
    boundary pixels ``points`` ``[N, 2]`` (rings of ``lengths`` ``[R]``, those ``held`` ``[R] bool`` only; each
    pixel's ``pairs`` of steps): on where a pixel's walk goes along its top side, off below it where along its
    bottom side (``pixel_walks``), on a mask ``height`` x ``width``."""
    count = begin = 0
    for ring in range(len(lengths)):
        if held[ring]:
            for pixel in range(begin, begin + lengths[ring]):
                count += int(WALKS_TOP[pairs[pixel]]) + int(WALKS_BOTTOM[pairs[pixel]])
        begin += lengths[ring]
    columns, rows = np.empty(count, np.int64), np.empty(count, np.int64)
    count = begin = 0
    for ring in range(len(lengths)):
        if held[ring]:
            for pixel in range(begin, begin + lengths[ring]):
                x, y = points[pixel, 0], points[pixel, 1]
                if WALKS_TOP[pairs[pixel]]:
                    columns[count], rows[count], count = x, y, count + 1
                if WALKS_BOTTOM[pairs[pixel]]:
                    columns[count], rows[count], count = x, y + 1, count + 1
        begin += lengths[ring]
    return column_major(columns, rows, height, width)
