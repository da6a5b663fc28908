"""The one polygon tracer (``data.polygons.mask_polygons``): filled as COCO fills polygons it gives the mask
back, holes included; specks are dropped and outlines simplified only as far as the mask survives; and every
polygon the toolkit writes (API, service records, COCO polygons, labelme) is its."""
import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter
from solov2.data.polygons import MIN_IOU, MIN_PART_AREA, mask_polygons
from solov2.data.results import instance_records


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


def test_specks_are_dropped_unless_nothing_is_larger():
    mask = np.zeros((40, 40), bool)
    mask[5:30, 5:30] = True
    mask[35, 35] = mask[1:3, 36:38] = True         # 1 and 4 pixels: outlines holding 0.25 and 2.25 (MIN_PART_AREA: 12)
    mask[33:38, 1:6] = True                        # 25 pixels, 20.25 inside its outline: kept
    assert len(mask_polygons(mask, (0, 0, 40, 40))) == 2
    assert len(mask_polygons(mask, (0, 0, 40, 40), min_area=0)) == 4
    lone = np.zeros((3, 3), bool)
    lone[1, 1] = True
    assert MIN_PART_AREA > 1 and len(mask_polygons(lone, (0, 0, 3, 3))) == 1


def test_simplified_outlines_keep_the_mask_with_few_vertices():
    """A disc of radius 60: its traced outline has hundreds of corners, the simplified one a few dozen,
    filled at IoU >= MIN_IOU; so do random masks (the tolerance halves where the mask would not survive)."""
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
