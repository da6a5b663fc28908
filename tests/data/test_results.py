"""Tests for data.results."""

import json
import time

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2.data.masks import as_cropped, mask_to_box, masks_to_boxes
from solov2.data.results import (
    coco_bbox,
    encode_crop_rle,
    instance_records,
    instances_to_coco,
    write_json,
)

# pycocotools' decode triggers a NumPy 2 copy-keyword DeprecationWarning internally.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


def reference_rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    return {'size': list(rle['size']), 'counts': rle['counts'].decode('ascii')}


def encode_mask_rle(mask, box=None):
    """``encode_crop_rle`` of ``mask``'s crop to ``box`` (its tight box when not given), as
    ``instance_records`` encodes a mask."""
    x0, y0, x1, y1 = (int(v) for v in ((mask_to_box(mask) or (0, 0, 0, 0)) if box is None else box))
    return encode_crop_rle(mask[y0:y1, x0:x1], (x0, y0, x1, y1), mask.shape)


def assert_rle_exact(mask):
    rle = encode_mask_rle(mask)
    assert rle == reference_rle(mask)
    decoded = mask_util.decode({'size': rle['size'], 'counts': rle['counts'].encode('ascii')})
    np.testing.assert_array_equal(decoded.astype(bool), mask)


def hand_built_masks():
    masks = {}
    masks['empty'] = np.zeros((7, 9), dtype=bool)
    masks['full'] = np.ones((7, 9), dtype=bool)
    for name, (y, x) in {'pixel_tl': (0, 0), 'pixel_br': (6, 8), 'pixel_mid': (3, 4)}.items():
        mask = np.zeros((7, 9), dtype=bool)
        mask[y, x] = True
        masks[name] = mask
    for name, region in {
        'top': np.s_[0, 2:6],
        'bottom': np.s_[6, 1:4],
        'left': np.s_[1:5, 0],
        'right': np.s_[2:7, 8],
        'full_rows': np.s_[2:4, :],
        'full_cols': np.s_[:, 3:5],
        'thin_row': np.s_[3, :],
        'thin_col': np.s_[:, 5],
    }.items():
        mask = np.zeros((7, 9), dtype=bool)
        mask[region] = True
        masks[name] = mask
    diagonal = np.zeros((7, 9), dtype=bool)
    diagonal[np.arange(7), np.arange(7)] = True
    masks['diagonal'] = diagonal
    masks['one_by_one'] = np.ones((1, 1), dtype=bool)
    masks['one_row'] = np.array([[0, 1, 1, 0, 1]], dtype=bool)
    masks['one_col'] = np.array([[1], [0], [1], [1]], dtype=bool)
    return masks


@pytest.mark.parametrize(('name', 'mask'), list(hand_built_masks().items()))
def test_rle_matches_pycocotools_hand_built(name, mask):
    assert_rle_exact(mask)


def random_mask(rng):
    height, width = (int(v) for v in rng.integers(1, 40, size=2))
    kind = rng.integers(0, 4)
    if kind == 0:  # dense noise
        return rng.random((height, width)) < rng.random()
    mask = np.zeros((height, width), dtype=bool)
    if kind == 1:  # sparse noise inside a random window
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = rng.integers(y0, height) + 1, rng.integers(x0, width) + 1
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.3
    elif kind == 2:  # a few rectangles, possibly touching borders
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, height), rng.integers(0, width)
            mask[y0 : y0 + rng.integers(1, 10), x0 : x0 + rng.integers(1, 10)] = True
    else:  # thin horizontal or vertical lines
        if rng.random() < 0.5:
            mask[rng.integers(0, height), :] = True
        else:
            mask[:, rng.integers(0, width)] = True
    return mask


def test_rle_matches_pycocotools_random():
    rng = np.random.default_rng(1234)
    for _ in range(200):
        assert_rle_exact(random_mask(rng))


def test_rle_on_a_given_box_is_byte_identical():
    """With the tight box, or any box holding every True pixel, the RLE is the one of the
    whole mask; the empty box (zeros) encodes an empty mask."""
    rng = np.random.default_rng(99)
    for _ in range(200):
        mask = random_mask(rng)
        height, width = mask.shape
        tight = mask_to_box(mask) or (0, 0, 0, 0)
        loose = (tight[0] - rng.integers(0, tight[0] + 1), tight[1] - rng.integers(0, tight[1] + 1),
                 tight[2] + rng.integers(0, width - tight[2] + 1), tight[3] + rng.integers(0, height - tight[3] + 1))
        for box in (tight, loose, np.array(tight, np.int64)):
            assert encode_mask_rle(mask, box) == reference_rle(mask)


def test_rle_large_counts_match():
    mask = np.zeros((600, 700), dtype=bool)
    mask[599, 699] = True
    mask[0, 0] = True
    mask[300:310, 200:260] = True
    assert_rle_exact(mask)


def test_rle_accepts_uint8_and_fortran_input():
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[4:9, 10:25] = 1
    expected = reference_rle(mask.astype(bool))
    assert encode_mask_rle(mask) == expected
    assert encode_mask_rle(np.asfortranarray(mask.astype(bool))) == expected


def test_mask_to_box_half_open():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    assert mask_to_box(mask) == (3, 2, 9, 5)
    assert mask_to_box(np.zeros((4, 4), dtype=bool)) is None


def test_masks_to_boxes_hand_built():
    masks = np.zeros((4, 10, 12), dtype=bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    masks[3, 0, :] = True
    masks[3, :, 0] = True
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == np.int64 and boxes.shape == (4, 4)
    np.testing.assert_array_equal(boxes[0], [3, 2, 9, 5])
    np.testing.assert_array_equal(boxes[1], [11, 9, 12, 10])
    np.testing.assert_array_equal(boxes[2], [0, 0, 0, 0])
    np.testing.assert_array_equal(boxes[3], [0, 0, 12, 10])
    for mask, box in zip(masks[[0, 1, 3]], boxes[[0, 1, 3]]):
        np.testing.assert_array_equal(coco_bbox(box), mask_util.toBbox(mask_util.encode(np.asfortranarray(mask))))


def test_masks_to_boxes_empty_batch():
    assert masks_to_boxes(np.zeros((0, 5, 6), dtype=bool)).shape == (0, 4)


def test_instances_to_coco_records():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 1:3, 2:6] = True
    masks[1, 5, 5] = True
    records = instances_to_coco(
        42, masks, np.array([0, 2]), np.array([0.9, 0.25], dtype=np.float32), {0: 1, 2: 3}
    )
    assert [r['category_id'] for r in records] == [1, 3]
    assert records[0]['image_id'] == 42
    assert records[0]['bbox'] == [2.0, 1.0, 4.0, 2.0]
    assert records[1]['score'] == pytest.approx(0.25)
    assert records[0]['segmentation'] == reference_rle(masks[0])
    assert set(records[0]) == {'image_id', 'category_id', 'segmentation', 'score', 'bbox'}
    json.dumps(records)


def test_records_name_the_file_and_the_category_when_asked():
    """``file_name`` and ``class_names`` add the two fields demo.py --save-json writes, after
    the COCO ones; without them the records are plain COCO results."""
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, :2, :2] = masks[1, 3:, 3:] = True
    labels, scores = np.array([1, 0]), np.array([0.8, 0.4], dtype=np.float32)
    plain = instances_to_coco(3, masks, labels, scores, [10, 20])
    named = instances_to_coco(3, masks, labels, scores, [10, 20], file_name='a.jpg', class_names=['cat', 'dog'])
    assert list(named[0]) == ['image_id', 'category_id', 'segmentation', 'score', 'bbox', 'file_name',
                              'category_name']
    assert [(r['file_name'], r['category_id'], r['category_name']) for r in named] == [('a.jpg', 20, 'dog'),
                                                                                     ('a.jpg', 10, 'cat')]
    assert [{k: v for k, v in r.items() if k not in ('file_name', 'category_name')} for r in named] == plain


def test_write_json_atomic(tmp_path):
    path = tmp_path / 'out' / 'results.json'
    write_json([{'a': 1}], path)
    write_json([{'b': 2}], path)
    assert json.loads(path.read_text()) == [{'b': 2}]
    assert [p.name for p in path.parent.iterdir()] == ['results.json']


def test_write_json_failure_leaves_no_temp(tmp_path):
    path = tmp_path / 'results.json'
    with pytest.raises(TypeError):
        write_json([object()], path)
    assert list(tmp_path.iterdir()) == []


def small_objects_scene(rng, height=800, width=1200, count=20):
    masks = np.zeros((count, height, width), dtype=np.uint8)
    for mask in masks:
        cx, cy = int(rng.integers(40, width - 40)), int(rng.integers(40, height - 40))
        axes = (int(rng.integers(4, 35)), int(rng.integers(4, 35)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
    return masks.astype(bool)


def test_rle_timing_small_objects():
    """Prints our RLE vs pycocotools on 800x1200 with 20 small objects (informational)."""
    masks = small_objects_scene(np.random.default_rng(7))
    repeats = 10

    start = time.perf_counter()
    for _ in range(repeats):
        ours = [encode_mask_rle(mask) for mask in masks]
    ours_ms = (time.perf_counter() - start) / repeats * 1e3

    start = time.perf_counter()
    for _ in range(repeats):
        reference = [reference_rle(mask) for mask in masks]
    reference_ms = (time.perf_counter() - start) / repeats * 1e3

    assert ours == reference
    print(f'\nRLE 800x1200, 20 objects: ours {ours_ms:.2f} ms, pycocotools {reference_ms:.2f} ms')


def test_an_unknown_mask_form_is_refused_not_answered_as_polygons():
    masks = as_cropped(np.ones((1, 4, 4), dtype=bool))
    assert 'polygons' in instance_records(masks, np.array([0]), np.array([0.5]), form='polygons')[0]
    with pytest.raises(ValueError, match="unknown mask form 'RLE'"):
        instance_records(masks, np.array([0]), np.array([0.5]), form='RLE')
