"""The one polygon tracer (``data.polygons.mask_polygons``): filled as COCO fills polygons it gives the mask
back, holes included; specks are dropped and outlines simplified only as far as the mask survives; and every
polygon the toolkit writes (API, service records, COCO polygons, labelme) is its. It costs about a contour
trace: the doubled mask's trace read off the mask's own, fills compared by COCO's own arithmetic, no pixel
drawn."""

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter
from solov2.data.coco_fill import fill_box, fill_iou, fill_toggles
from solov2.data.masks import mask_to_box
from solov2.data.polygons import (
    MIN_IOU,
    MIN_PART_AREA,
    mask_polygons,
    pixel_box,
    quarter_rings,
    traced_rings,
)
from solov2.data.results import encode_crop_rle, instance_records
from solov2.tools.dev.polygon_speed import cpu_seconds


def filled(polygons, height, width) -> np.ndarray:
    """``[height, width] bool`` of ``polygons`` as pycocotools fills them (COCO's polygon segmentation)."""
    if not polygons:
        return np.zeros((height, width), bool)
    rles = mask_util.frPyObjects([p.ravel().tolist() for p in polygons], height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def random_masks(count: int = 200):
    rng = np.random.default_rng(0)
    for index in range(count):       # smooth blobs with holes and islands, and salt-and-pepper
        noise = rng.random((int(rng.integers(5, 40)), int(rng.integers(5, 50))))
        yield cv2.GaussianBlur(noise, (0, 0), 1.5) > 0.5 if index % 2 else noise > 0.5


def toggled(toggles: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[height, width] bool`` of a fill given by its toggles (``x * height + y``, column-major)."""
    counts = np.zeros(height * width + 1, np.int64)
    np.add.at(counts, toggles, 1)
    return (np.cumsum(counts)[:-1] % 2).reshape(width, height).T.astype(bool)


def test_the_mask_trace_read_as_the_doubled_masks_gives_its_points_and_fills_to_the_mask():
    """``quarter_rings`` reads the trace of the mask doubled (nearest) off the mask's own trace: the same
    corners, from the same start, as ``cv2.findContours`` gives on the doubled mask, halved back; the areas
    of those rings; and the toggles of the traced outlines' fill, which are the mask's own pixels."""
    rng = np.random.default_rng(1)
    masks = [*random_masks(), *(rng.random(rng.integers(1, 9, 2)) > 0.5 for _ in range(300)),
             np.ones((1, 1), bool), np.eye(5, dtype=bool), np.ones((1, 7), bool)]
    for mask in masks:
        if not mask.any():
            continue
        contours, hierarchy = cv2.findContours(mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        doubled = cv2.resize(mask.view(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        expected, _ = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        rings, areas, bounds, _ = quarter_rings(contours, hierarchy[0][:, 3] >= 0)
        assert len(rings) == len(expected)
        for ring, area, bound, contour in zip(rings, areas, bounds, expected):
            np.testing.assert_array_equal(ring, (contour.reshape(-1, 2) + 0.5) / 2)
            assert area == pytest.approx(cv2.contourArea(contour) / 4)
            np.testing.assert_array_equal(bound, [*ring.min(axis=0), *ring.max(axis=0)])
        _, traced, extent = traced_rings(mask, 0)
        np.testing.assert_array_equal(toggled(traced, *mask.shape), mask)
        assert pixel_box(extent) == fill_box(np.sort(traced), mask.shape[0]) == mask_to_box(mask)
        _, traced, extent = traced_rings(mask, MIN_PART_AREA)         # specks dropped, the box kept
        assert pixel_box(extent) == fill_box(np.sort(traced), mask.shape[0]) == mask_to_box(mask)


def test_fill_toggles_fill_as_pycocotools_fills_to_the_pixel():
    """``fill_toggles`` is pycocotools' polygon fill worked per column crossing: the same pixels for random
    polygons (any slope; vertices anywhere, on quarter pixels, or on fifths and halves, where rleFrPoly's
    rounding meets whole steps; some past the mask's right and bottom sides, which it clips), several rings
    filled odd-even as one polygon joined by cuts is, and the IoU of two fills (``fill_iou``) is pycocotools'
    own."""
    rng = np.random.default_rng(0)
    grids = (None, 4, 5, 2)         # vertices anywhere, on quarter pixels (+ 1/4 as the tracer's), fifths, halves
    for index in range(800):
        height, width = (int(side) for side in rng.integers(3, 300 if index % 10 == 0 else 40, 2))
        rings, grid, past = [], grids[index % 4], 3 * (index % 5 == 4)
        for _ in range(1 + index % 3):
            corners = int(rng.integers(3, 12))
            ring = np.c_[rng.uniform(0, width + past, corners), rng.uniform(0, height + past, corners)]
            rings.append(ring if grid is None else np.floor(ring * grid) / grid + 0.25 * (grid == 4))
        home = rings[0][:1]
        one = np.concatenate([rings[0], home, *(piece for ring in rings[1:] for piece in (ring, ring[:1], home))])
        rle = mask_util.frPyObjects([one.ravel().tolist()], height, width)[0]
        toggles = fill_toggles(rings, height, width)
        np.testing.assert_array_equal(toggled(toggles, height, width), mask_util.decode(rle).astype(bool))
        other = mask_util.frPyObjects([rings[-1].ravel().tolist()], height, width)[0]
        either = mask_util.area(mask_util.merge([rle, other]))          # pycocotools: 0 for two empty fills
        assert fill_iou(np.sort(toggles), np.sort(fill_toggles(rings[-1:], height, width))) == \
            pytest.approx(mask_util.iou([rle], [other], [0])[0, 0] if either else 1.0)


def ragged_mask() -> np.ndarray:
    """``[1500, 1500] bool`` as a low-scoring instance of a 12 MP photo looks: a blurred field upsampled, many
    parts and holes (37,660 boundary pixels)."""
    rng = np.random.default_rng(0)
    field = cv2.GaussianBlur(rng.random((150, 150)).astype(np.float32), (0, 0), 2)
    return cv2.resize(field, (1500, 1500), interpolation=cv2.INTER_LINEAR) > 0.5


def test_polygons_of_a_large_ragged_mask_cost_a_few_rle_encodings():
    """The ragged mask's polygons cost under 20 RLE encodings of it (CPU time, least of three; about 4-5
    here; the doubled trace and a cut searched over every pair of outline and hole vertices took over 9 s,
    thousands)."""
    mask, box = ragged_mask(), (0, 0, 1500, 1500)
    rle = cpu_seconds(lambda: encode_crop_rle(mask, box, mask.shape), 3)
    polygons = cpu_seconds(lambda: mask_polygons(mask, box), 3)
    assert polygons < 20 * rle, (polygons, rle)


def test_the_doubled_trace_is_read_at_about_the_cost_of_the_trace_itself():
    """``quarter_rings`` reads the doubled trace's corners off each boundary pixel's steps in and out
    (``pixel_walks``' tables), not by walking every quarter point and finding the turns among them: on the
    ragged mask it costs under 1.6 contour traces (``cv2.findContours``, what it reads; CPU time, least of
    five runs of three; on a 2-core AMD EPYC Zen 4 about 0.7 with the steps read off paired points, 0.95-1.0
    before, and walking every quarter point took 2.1-2.2)."""
    mask = ragged_mask()
    contours, hierarchy = cv2.findContours(mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    holes = hierarchy[0][:, 3] >= 0

    def thrice(work):
        return lambda: [work() for _ in range(3)]
    trace = cpu_seconds(thrice(lambda: cv2.findContours(mask.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)), 5)
    reading = cpu_seconds(thrice(lambda: quarter_rings(contours, holes)), 5)
    assert reading < 1.6 * trace, (reading, trace)


def test_unsimplified_outlines_give_every_mask_back_holes_included():
    for mask in random_masks():
        height, width = mask.shape
        polygons = mask_polygons(mask, (0, 0, width, height), min_area=0, tolerance=0)
        np.testing.assert_array_equal(filled(polygons, height, width), mask)


def test_a_ring_is_one_polygon_whose_hole_stays_empty_and_a_box_moves_it():
    ring = np.zeros((12, 12), bool)
    ring[1:11, 1:11] = True
    ring[4:8, 4:8] = False          # a 4x4 hole: traced
    ring[2, 2] = False              # a 1-pixel hole: filled (a speck of background)
    polygons = mask_polygons(ring, (100, 50, 112, 62))
    assert len(polygons) == 1 and polygons[0].dtype == np.float64
    back = filled([p - (100, 50) for p in polygons], 12, 12)
    assert not back[4:8, 4:8].any() and back[2, 2] and (back == ring).sum() == ring.size - 1


def test_specks_are_dropped_unless_nothing_is_larger_or_the_box_counts_them():
    """A part under MIN_PART_AREA is dropped, unless no part is larger or it reaches a side of the mask's box
    the larger parts do not (one rule for an instance: its polygons span its box, tests/data/test_labelme.py)."""
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:30] = True
    mask[33:38, 1:6] = True                        # 25 pixels, 20.25 inside its outline: kept
    mask[32, 20] = mask[10:12, 31:33] = True       # 1 and 4 pixels inside the others' box: dropped
    mask[1:3, 36:38] = True                        # 4 pixels setting the box's top and right side: kept
    polygons = mask_polygons(mask, (0, 0, 40, 40))
    assert [len(polygon) for polygon in polygons][2:] == [4] and len(polygons) == 3, polygons
    assert np.array_equal(np.concatenate(polygons).min(axis=0), [1.25, 1.25])
    assert np.array_equal(np.concatenate(polygons).max(axis=0), [37.75, 37.75])
    assert len(mask_polygons(mask, (0, 0, 40, 40), min_area=0)) == 5
    lone = np.zeros((3, 3), bool)
    lone[1, 1] = True
    assert MIN_PART_AREA > 1 and len(mask_polygons(lone, (0, 0, 3, 3))) == 1


def test_simplified_outlines_keep_the_mask_with_few_vertices():
    """A disc of radius 60: its traced outline has hundreds of corners, the simplified one a few dozen,
    filled at IoU >= MIN_IOU; so do random masks (the tolerance halves where the mask would not survive),
    their fill's box the mask's."""
    disc = np.zeros((130, 130), np.uint8)
    cv2.circle(disc, (65, 65), 60, 1, -1)
    disc = disc.astype(bool)
    traced = mask_polygons(disc, (0, 0, 130, 130), tolerance=0)
    simple = mask_polygons(disc, (0, 0, 130, 130))
    assert len(traced[0]) > 150 and len(simple[0]) < 60, (len(traced[0]), len(simple[0]))
    assert iou(filled(simple, 130, 130), disc) >= MIN_IOU
    for mask in random_masks(60):
        height, width = mask.shape
        kept = mask_polygons(mask, (0, 0, width, height), min_area=0)
        assert iou(filled(kept, height, width), mask) >= MIN_IOU
        drawn = mask_polygons(mask, (0, 0, width, height))         # specks dropped, the box still spanned
        assert mask_to_box(filled(drawn, height, width)) == mask_to_box(mask)


@pytest.fixture(scope='module')
def sample_results():
    segmenter = Segmenter(SHIPPED_WEIGHTS, backend='dygraph', threads=1)
    return [segmenter(f'{SAMPLE_IMAGES}/{name}') for name in
            ('shapes_000023.jpg', 'shapes_000042.jpg', 'shapes_000057.jpg', 'shapes_000083.jpg', 'shapes_wide.jpg')]


def test_api_and_record_polygons_give_the_sample_masks_back(sample_results):
    """``Instances.polygons()`` and the records' (service, COCO) polygons are the tracer's, each shown
    instance of the sample pictures filled back at IoU >= 0.95, median >= 0.98 (a trace through the boundary
    pixels' corners gave 0.91)."""
    ious = []
    for result in sample_results:
        shown = result[result.scores >= 0.3]
        records = instance_records(shown.crops, shown.labels, shown.scores, form='polygons')
        height, width = shown.image_size
        for instance, polygons, record in zip(shown, shown.polygons(), records):
            assert record['polygons'] == [p.ravel().tolist() for p in polygons]
            ious.append(iou(filled(polygons, height, width), instance.mask))
    assert len(ious) > 20 and min(ious) >= 0.95 and np.median(ious) >= 0.98, sorted(ious)[:3]
