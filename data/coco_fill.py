"""COCO's polygon fill worked per column crossing, compiled: where ``pycocotools.mask.frPyObjects`` (its C
``rleFrPoly``) turns a polygon's pixels on or off going down each column, and the IoU and box of fills given
that way, without drawing a pixel. ``data.polygons`` checks each simplified outline against the traced one
with it.

rleFrPoly scales the vertices by ``COCO_SCALE`` and rounds them, draws each edge one upsampled point per
step from its end of smaller x (or of smaller y where it is steeper than 45 degrees), and toggles the fill
where the drawn line passes a pixel column's centre (upsampled column 5 n + 2 to 5 n + 3), at the row above.
Here each crossing is worked out from the edge's slope rather than by walking its points: the same
arithmetic, in the same floating-point order, so the same pixels (tests/data/test_polygons.py holds them to
pycocotools, pixel for pixel). The loops are compiled (``core.compiled``): they release the GIL while they run."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from solov2.core.compiled import compiled

COCO_SCALE = 5      # pycocotools' rleFrPoly draws each edge on the picture upsampled 5 times, vertices rounded


def fill_toggles(rings: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Where COCO's polygon fill (``pycocotools.mask.frPyObjects``, its ``rleFrPoly``) of ``rings`` (``[K, 2]``
    (x, y), coordinates >= 0) on a ``height`` x ``width`` mask turns on or off going down each column, as
    ``[M] int64`` positions ``x * height + y`` (column-major, as its RLE counts), ascending. A pixel is in when
    an odd number of toggles come before it: a ring's part less its holes, and a cut walked both ways counts
    twice (nothing). ``fill_iou`` compares two fills, ``fill_box`` gives one's box."""
    rings = [ring for ring in rings if len(ring)]
    if not rings:
        return np.zeros(0, np.int64)
    ends = np.trunc(COCO_SCALE * np.concatenate(rings).astype(np.float64) + 0.5)     # rleFrPoly's (int)(5 x + .5)
    return sorted_crossings(ends, np.fromiter(map(len, rings), np.int64, len(rings)), int(height), int(width))


@compiled
def edge_columns(x0: float, y0: float, x1: float, y1: float, width: int) -> tuple[int, int]:
    """The first and last pixel column whose centre the edge (x0, y0)-(x1, y1) (upsampled, rounded ends) crosses,
    as rleFrPoly draws it on a mask ``width`` wide (first > last: none)."""
    low, high = min(x0, x1), max(x0, x1)
    if abs(x1 - x0) >= abs(y1 - y0):            # drawn a point per upsampled column: 5 n + 2 to 5 n + 3 crossed
        first = max(np.ceil((low - 2) / COCO_SCALE), 0.0)
    else:                                       # a point per upsampled row: its column rounded to pass 5 n + 3
        first = max(np.floor((low - 3) / COCO_SCALE) + 1, 0.0)
    return int(first), int(min(np.floor((high - 3) / COCO_SCALE), width - 1))


@compiled
def flat_row(x0: float, y0: float, x1: float, y1: float, column: int) -> float:
    """The upsampled row above the crossing of ``column``'s centre by an edge no steeper than 45 degrees: drawn
    from its end of smaller x, the smaller row of the two points either side (the first's where the edge falls,
    else the second's: rounding keeps the order), ``(int)(start + slope * step + .5)`` as rleFrPoly rounds."""
    if x0 > x1:
        x0, y0, x1, y1 = x1, y1, x0, y0
    slope = (y1 - y0) / max(x1 - x0, 1.0)
    step = COCO_SCALE * float(column) + (2.0 + (1.0 if slope < 0 else 0.0) - x0)
    return np.floor((y0 + slope * step) + 0.5)


@compiled
def steep_row(x0: float, y0: float, x1: float, y1: float, column: int) -> float:
    """As ``flat_row`` for a steeper edge: drawn from its end of smaller y a point per upsampled row, its column
    rounded; the crossing is the first step whose column passes from 5 n + 2 to 5 n + 3 or back, its row the
    step's first. The step is guessed from the slope, then checked with rleFrPoly's own rounding on either side:
    off by a rounding, the guess is off by at most one step (where the exact crossing is a whole step, the
    rounding decides it)."""
    if y0 > y1:
        x0, y0, x1, y1 = x1, y1, x0, y0
    length = y1 - y0
    rate = (x1 - x0) / length
    rising, passing = rate > 0, COCO_SCALE * float(column) + 3.0     # a rising edge's point reaches 5 n + 3
    bound = (passing - 0.5 - x0) / rate
    step = min(max(np.ceil(bound) if rising else np.floor(bound) + 1.0, 1.0), length)
    here = ((x0 + rate * step) + 0.5 >= passing) == rising             # (int)(...) >= 5 n + 3, or <= 5 n + 2
    before = ((x0 + rate * (step - 1.0)) + 0.5 >= passing) == rising and step > 1.0
    step = min(max(step + (0.0 if here else 1.0) - (1.0 if before else 0.0), 1.0), length)
    return y0 + step - 1.0


@compiled
def sorted_crossings(ends: np.ndarray, lengths: np.ndarray, height: int, width: int) -> np.ndarray:
    """``fill_toggles`` of rings given by their upsampled, rounded vertices ``ends`` (``[V, 2] float64`` x, y,
    ring after ring of ``lengths`` ``[R]``): each edge's columns found (the edge from each vertex to the next
    round its ring), every crossing's row, then all put in order (``column_major``)."""
    aheads = np.empty(len(ends), np.int64)
    firsts, lasts = np.empty(len(ends), np.int64), np.empty(len(ends), np.int64)
    begin = 0
    for length in lengths:
        for vertex in range(begin, begin + length):
            aheads[vertex] = vertex + 1 if vertex + 1 < begin + length else begin
            firsts[vertex], lasts[vertex] = edge_columns(ends[vertex, 0], ends[vertex, 1], ends[aheads[vertex], 0],
                                                         ends[aheads[vertex], 1], width)
        begin += length
    count = np.maximum(lasts - firsts + 1, 0).sum()
    columns, rows = np.empty(count, np.int64), np.empty(count, np.int64)
    count = 0
    for vertex in range(len(ends)):
        x0, y0, x1, y1 = ends[vertex, 0], ends[vertex, 1], ends[aheads[vertex], 0], ends[aheads[vertex], 1]
        flat = abs(x1 - x0) >= abs(y1 - y0)
        for column in range(firsts[vertex], lasts[vertex] + 1):
            row = flat_row(x0, y0, x1, y1, column) if flat else steep_row(x0, y0, x1, y1, column)
            columns[count] = column
            rows[count] = int(np.ceil(min(max((row + 0.5) / COCO_SCALE - 0.5, 0.0), float(height))))
            count += 1
    return column_major(columns, rows, height, width)


@compiled
def column_major(columns: np.ndarray, rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """The positions ``columns * height + rows`` (``[M]`` each; rows 0 to ``height``, columns 0 to ``width`` - 1),
    ascending: counted into place by row, then by column keeping that order (two passes, no comparisons)."""
    by_row = np.zeros(height + 2, np.int64)
    for row in rows:
        by_row[row + 1] += 1
    by_row = np.cumsum(by_row)
    order = np.empty(len(rows), np.int64)
    for index in range(len(rows)):
        order[by_row[rows[index]]] = index
        by_row[rows[index]] += 1
    by_column = np.zeros(width + 1, np.int64)
    for column in columns:
        by_column[column + 1] += 1
    by_column = np.cumsum(by_column)
    positions = np.empty(len(rows), np.int64)
    for index in order:
        column = columns[index]
        positions[by_column[column]] = column * height + rows[index]
        by_column[column] += 1
    return positions


@compiled
def toggled_area(toggles: np.ndarray) -> int:
    """Pixels of a fill given by its ``toggles``, sorted: each second one less the one before."""
    area = 0
    for index in range(1, len(toggles), 2):
        area += toggles[index] - toggles[index - 1]
    return area


@compiled
def merged_area(a: np.ndarray, b: np.ndarray) -> int:
    """``toggled_area`` of the toggles of ``a`` and ``b`` (each sorted) together: the pixels in one fill and not
    the other. The two are merged as they are read."""
    area, sign, i, j = 0, -1, 0, 0
    while i < len(a) or j < len(b):
        if j == len(b) or (i < len(a) and a[i] <= b[j]):
            value, i = a[i], i + 1
        else:
            value, j = b[j], j + 1
        area += sign * value
        sign = -sign
    return area


def fill_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two fills given by their toggles (``fill_toggles``), each sorted, from the
    areas of each and of their difference (the toggles of both, merged): no pixel drawn; 1.0 for two empty
    fills."""
    only_a, only_b, either = toggled_area(a), toggled_area(b), merged_area(a, b)
    union = (only_a + only_b + either) / 2
    return (only_a + only_b - either) / 2 / union if union else 1.0


@compiled
def box_of_runs(toggles: np.ndarray, height: int) -> tuple[int, int, int, int]:
    """``fill_box``'s loop."""
    x0, y0, x1, y1, found = 0, height, 0, 0, False
    for index in range(0, len(toggles) - 1, 2):
        first, last = toggles[index], toggles[index + 1] - 1
        if first > last:
            continue
        if not found:
            x0, found = first // height, True
        x1 = last // height + 1
        if first // height != last // height:        # a run from one column's foot into the next's head
            y0, y1 = 0, height
        else:
            y0, y1 = min(y0, first % height), max(y1, last % height + 1)
    return (x0, y0, x1, y1) if found else (0, 0, 0, 0)


def fill_box(toggles: np.ndarray, height: int) -> tuple[int, int, int, int]:
    """The half-open box x0, y0, x1, y1 of a fill given by its ``toggles``, sorted, on a mask ``height`` high
    (zeros for an empty fill)."""
    x0, y0, x1, y1 = box_of_runs(toggles, int(height))
    return int(x0), int(y0), int(x1), int(y1)
