"""SOLOv2 target assignment on hand-built masks, plus a cross-check against
PaddleDetection's ``Gt2Solov2Target``.

Cell of a coordinate c on a padded size D with grid S: int((c / D) // (1 / S)),
i.e. floor(c * S / D) away from exact cell borders (all hand cases below stay
clear of borders). With the full ranges ((1,96),(48,192),(96,384),(192,768),
(384,2048)) and grids (40,36,24,16,12), a 128-pixel side gives 128/40 = 3.2 px
per level-0 cell (factor 40/128 = 0.3125) and 128/36 = 3.56 px per level-1 cell
(factor 0.28125).
"""
import warnings

import cv2
import numpy as np
import pytest
from scipy import ndimage

from solov2.data.masks import mask_to_box
from solov2.model.training.targets import BACKGROUND, BatchTargets, assign_targets, collate_targets, rescale_mask

GRIDS = (40, 36, 24, 16, 12)
FULL = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))


def _assign(masks, labels, **kwargs):
    masks = np.asarray(masks, np.uint8)
    if masks.ndim == 2:
        masks = masks[None]
    return assign_targets(masks, np.asarray(labels, np.int64), GRIDS, FULL, **kwargs)


def _region(grid, rows, cols, value):
    out = np.full((grid, grid), BACKGROUND, np.int64)
    out[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = value
    return out


def _cells(grid, rows, cols):
    return [i * grid + j for i in range(rows[0], rows[1] + 1) for j in range(cols[0], cols[1] + 1)]


def _assert_only_levels(targets, levels):
    for level, labels in enumerate(targets.cate_labels):
        has = (labels != BACKGROUND).any()
        assert has == (level in levels), f'level {level}'
        assert (len(targets.ins_cells[level]) > 0) == (level in levels)


def test_square_lands_on_level_0_with_exact_cells_and_mask_target():
    """40x40 square, rows 20..59, cols 28..67 (box 40x40, scale 40 -> only (1,96): level 0).
    centre of mass (39.5, 47.5) -> cell (39.5*0.3125=12.34 -> 12, 47.5*0.3125=14.84 -> 14).
    half extent 0.5*40*0.2 = 4 px: rows cell(35.5)=11 .. cell(43.5)=13,
    cols cell(43.5)=13 .. cell(51.5)=16 -> clipped to cw+1 = 15.
    Region rows 11..13, cols 13..15 (3x3)."""
    mask = np.zeros((128, 128), np.uint8)
    mask[20:60, 28:68] = 1
    t = _assign(mask, [3])
    _assert_only_levels(t, {0})
    np.testing.assert_array_equal(t.cate_labels[0], _region(40, (11, 13), (13, 15), 3))
    assert t.ins_cells[0].tolist() == _cells(40, (11, 13), (13, 15)) == [
        453, 454, 455, 493, 494, 495, 533, 534, 535]
    assert t.ins_cells[0].dtype == np.int64 and t.cate_labels[0].dtype == np.int64
    # 1/4 rescale, edges on multiples of 4 -> exact: rows 5..14, cols 7..16 of a 32x32 map
    expected = np.zeros((32, 32), np.uint8)
    expected[5:15, 7:17] = 1
    assert t.ins_masks[0].shape == (9, 32, 32) and t.ins_masks[0].dtype == np.uint8
    for target in t.ins_masks[0]:
        np.testing.assert_array_equal(target, expected)
    for level in range(1, 5):
        assert t.ins_masks[level].shape == (0, 32, 32)
        assert t.ins_cells[level].shape == (0,)
    assert collate_targets([t]).num_positives == 9


def test_mask_target_is_cv2_bilinear_rescale_pasted_top_left():
    rng = np.random.default_rng(0)
    mask = (rng.random((96, 160)) > 0.6).astype(np.uint8)
    small = rescale_mask(mask, 4)
    np.testing.assert_array_equal(small, cv2.resize(mask, (40, 24), interpolation=cv2.INTER_LINEAR))
    assert small.shape == (24, 40) and small.dtype == np.uint8


def test_box_convention_is_exclusive():
    mask = np.zeros((32, 32), np.uint8)
    mask[5, 7] = 1
    assert mask_to_box(mask) == (7, 5, 8, 6)        # single pixel: w = h = 1


def test_l_shape_uses_centre_of_mass_not_box_centre():
    """Vertical bar rows 10..49 x cols 10..19 (400 px, centre (29.5, 14.5)) and
    horizontal bar rows 40..49 x cols 20..49 (300 px, centre (44.5, 34.5)).
    Box x 10..50, y 10..50 -> 40x40, scale 40 -> level 0 only.
    Centre of mass = ((400*29.5 + 300*44.5)/700, (400*14.5 + 300*34.5)/700)
                   = (35.929, 23.071) -> cell (11.23 -> 11, 7.21 -> 7);
    the box centre (30, 30) would give cell (9, 9).
    half 4: rows cell(31.93)=9 .. cell(39.93)=12 -> clip 10..12;
            cols cell(19.07)=5 .. cell(27.07)=8 -> clip 6..8."""
    mask = np.zeros((128, 128), np.uint8)
    mask[10:50, 10:20] = 1
    mask[40:50, 20:50] = 1
    np.testing.assert_allclose(ndimage.center_of_mass(mask), (25150 / 700, 16150 / 700))
    t = _assign(mask, [7])
    _assert_only_levels(t, {0})
    np.testing.assert_array_equal(t.cate_labels[0], _region(40, (10, 12), (6, 8), 7))
    assert t.ins_cells[0].tolist() == _cells(40, (10, 12), (6, 8))
    assert t.cate_labels[0][9, 9] == BACKGROUND


def test_instance_in_two_overlapping_ranges():
    """60x60 square rows/cols 32..91, scale 60 in (1,96) and (48,192) -> levels 0, 1.
    Centre (61.5, 61.5), half 6.
    level 0: centre cell 19.22 -> 19; cell(55.5)=17, cell(67.5)=21 -> clip 18..20.
    level 1: centre cell 61.5*0.28125=17.30 -> 17; cell(55.5)=15, cell(67.5)=18 -> 16..18."""
    mask = np.zeros((128, 128), np.uint8)
    mask[32:92, 32:92] = 1
    t = _assign(mask, [0])
    _assert_only_levels(t, {0, 1})
    np.testing.assert_array_equal(t.cate_labels[0], _region(40, (18, 20), (18, 20), 0))
    np.testing.assert_array_equal(t.cate_labels[1], _region(36, (16, 18), (16, 18), 0))
    assert t.ins_cells[1].tolist() == _cells(36, (16, 18), (16, 18))
    np.testing.assert_array_equal(t.ins_masks[0], t.ins_masks[1])
    assert collate_targets([t]).num_positives == 18


def test_scale_ranges_are_inclusive_at_both_ends():
    """96x96 square: scale 96 is the upper end of (1,96), inside (48,192) and the
    lower end of (96,384) -> levels 0, 1 and 2."""
    mask = np.zeros((128, 128), np.uint8)
    mask[16:112, 16:112] = 1
    _assert_only_levels(_assign(mask, [1]), {0, 1, 2})


def test_two_instances_sharing_cells_keep_both_positives():
    """A: rows 20..59 x cols 28..67 (region rows 11..13, cols 13..15, see above).
    B: rows 24..63 x cols 32..71, centre (43.5, 51.5) -> cell (13.59 -> 13, 16.09 -> 16);
       rows cell(39.5)=12 .. cell(47.5)=14; cols cell(47.5)=14 .. cell(55.5)=17 -> clip 15..17.
    Shared cells (12,15) and (13,15): label of B (later instance), but both A's and
    B's positives are kept (9 + 9 = 18 masks, 16 distinct foreground cells)."""
    a = np.zeros((128, 128), np.uint8)
    a[20:60, 28:68] = 1
    b = np.zeros((128, 128), np.uint8)
    b[24:64, 32:72] = 1
    t = _assign([a, b], [1, 2])
    expected = _region(40, (11, 13), (13, 15), 1)
    expected[12:15, 15:18] = 2
    np.testing.assert_array_equal(t.cate_labels[0], expected)
    cells_a, cells_b = _cells(40, (11, 13), (13, 15)), _cells(40, (12, 14), (15, 17))
    assert t.ins_cells[0].tolist() == cells_a + cells_b
    shared = 12 * 40 + 15
    assert t.ins_cells[0].tolist().count(shared) == 2
    np.testing.assert_array_equal(t.ins_masks[0][:9], np.broadcast_to(rescale_mask(a), (9, 32, 32)))
    np.testing.assert_array_equal(t.ins_masks[0][9:], np.broadcast_to(rescale_mask(b), (9, 32, 32)))
    batch = collate_targets([t])
    assert batch.num_positives == 16 and batch.num_masks == 18


def test_empty_mask_is_skipped():
    square = np.zeros((128, 128), np.uint8)
    square[20:60, 28:68] = 1
    empty = np.zeros_like(square)
    with_empty = _assign([empty, square, empty], [5, 3, 6])
    alone = _assign(square, [3])
    for level in range(5):
        np.testing.assert_array_equal(with_empty.cate_labels[level], alone.cate_labels[level])
        np.testing.assert_array_equal(with_empty.ins_cells[level], alone.ins_cells[level])
        np.testing.assert_array_equal(with_empty.ins_masks[level], alone.ins_masks[level])


def test_no_instances_gives_background_and_no_positives():
    t = assign_targets(np.zeros((0, 64, 96), np.uint8), np.zeros(0, np.int64), GRIDS, FULL)
    for grid, labels, masks, cells in zip(GRIDS, t.cate_labels, t.ins_masks, t.ins_cells):
        np.testing.assert_array_equal(labels, np.full((grid, grid), -1))
        assert masks.shape == (0, 16, 24) and masks.dtype == np.uint8
        assert cells.shape == (0,) and cells.dtype == np.int64
    batch = collate_targets([t, t])
    assert batch.num_positives == 0 and batch.num_masks == 0
    assert batch.cate_labels[0].shape == (2, 40, 40)
    assert batch.ins_masks[0].shape == (0, 16, 24) and batch.ins_images[0].shape == (0,)


def test_region_clipped_at_the_top_border():
    """Bar rows 0..3 x cols 0..99 (400 px) + column rows 4..39 at col 0 (36 px).
    Box 100 x 40 -> scale sqrt(4000) = 63.2 -> levels 0 and 1.
    Centre of mass (3.151, 45.413); half_h = 4, half_w = 10.
    level 0: centre cell (0.98 -> 0, 14.19 -> 14); cell(3.15 - 4 = -0.85) = -1 -> max(0, .) = 0,
             cell(7.15) = 2 -> clip ch+1 = 1; cols cell(35.41)=11 .. cell(55.41)=17 -> 13..15.
    level 1: centre cell (0.89 -> 0, 12.77 -> 12); rows 0..1; cols 9..15 -> clip 11..13."""
    mask = np.zeros((128, 128), np.uint8)
    mask[0:4, 0:100] = 1
    mask[4:40, 0] = 1
    t = _assign(mask, [4])
    _assert_only_levels(t, {0, 1})
    np.testing.assert_array_equal(t.cate_labels[0], _region(40, (0, 1), (13, 15), 4))
    np.testing.assert_array_equal(t.cate_labels[1], _region(36, (0, 1), (11, 13), 4))
    assert t.ins_cells[0].tolist() == [13, 14, 15, 53, 54, 55]


def test_region_clipped_at_the_bottom_border():
    """Padded 128 x 256. Bar row 127 x cols 0..255 (256 px) + column rows 96..126 at
    col 255 (31 px). Box 256 x 32 -> scale 90.5 -> levels 0 and 1.
    Centre of mass (125.27, 141.27); half_h = 3.2, half_w = 25.6.
    level 0: centre cell (125.27*40/128 = 39.15 -> 39 = S-1, 141.27*40/256 = 22.07 -> 22);
             rows cell(122.07)=38 .. cell(128.47)=40 -> min(S-1, ch+1) = 39;
             cols cell(115.67)=18 .. cell(166.87)=26 -> clip 21..23.
    level 1: centre cell (35.23 -> 35 = S-1, 19.87 -> 19); rows 34..35; cols 16..23 -> 18..20."""
    mask = np.zeros((128, 256), np.uint8)
    mask[127, :] = 1
    mask[96:127, 255] = 1
    t = _assign(mask, [2])
    _assert_only_levels(t, {0, 1})
    np.testing.assert_array_equal(t.cate_labels[0], _region(40, (38, 39), (21, 23), 2))
    np.testing.assert_array_equal(t.cate_labels[1], _region(36, (34, 35), (18, 20), 2))
    assert t.ins_cells[0].tolist() == _cells(40, (38, 39), (21, 23))
    assert t.ins_masks[0].shape == (6, 32, 64)


def test_collate_concatenates_images_in_order():
    a = np.zeros((128, 128), np.uint8)
    a[20:60, 28:68] = 1
    b = np.zeros((128, 128), np.uint8)
    b[32:92, 32:92] = 1
    ta, tb = _assign(a, [1]), _assign(b, [2])
    batch = collate_targets([ta, tb])
    assert isinstance(batch, BatchTargets) and len(batch.cate_labels) == 5
    assert batch.cate_labels[0].shape == (2, 40, 40)
    np.testing.assert_array_equal(batch.cate_labels[0][1], tb.cate_labels[0])
    assert batch.ins_images[0].tolist() == [0] * 9 + [1] * 9
    assert batch.ins_cells[0].tolist() == ta.ins_cells[0].tolist() + tb.ins_cells[0].tolist()
    assert batch.ins_images[1].tolist() == [1] * 9
    np.testing.assert_array_equal(batch.ins_masks[0][9:], tb.ins_masks[0])
    assert batch.num_positives == 9 + 18 == sum(collate_targets([t]).num_positives for t in (ta, tb))


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        assign_targets(np.zeros((1, 30, 32), np.uint8), [0], GRIDS, FULL)
    with pytest.raises(ValueError):
        assign_targets(np.zeros((2, 32, 32), np.uint8), [0], GRIDS, FULL)


# ---------------------------------------------------------------------------
# Cross-check with PaddleDetection


def _random_instances(rng, height, width, count):
    """Rectangles, ellipses and blobs of assorted sizes (scales ~5..250 px)."""
    yy, xx = np.mgrid[:height, :width]
    masks = []
    for k in range(count):
        size_h = rng.integers(4, min(height, 260))
        size_w = rng.integers(4, min(width, 260))
        y0 = rng.integers(0, height - size_h + 1)
        x0 = rng.integers(0, width - size_w + 1)
        kind = k % 3
        if kind == 0:
            mask = (yy >= y0) & (yy < y0 + size_h) & (xx >= x0) & (xx < x0 + size_w)
        elif kind == 1:
            cy, cx = y0 + size_h / 2, x0 + size_w / 2
            mask = ((yy - cy) / (size_h / 2)) ** 2 + ((xx - cx) / (size_w / 2)) ** 2 <= 1
        else:
            box = (yy >= y0) & (yy < y0 + size_h) & (xx >= x0) & (xx < x0 + size_w)
            mask = box & (rng.random((height, width)) < 0.4)
            mask |= (yy == y0) & box                      # skewed mass: a solid top row
        masks.append(mask.astype(np.uint8))
    masks.append(np.zeros((height, width), np.uint8))    # an empty instance
    return np.stack(masks)


def _ppdet_targets(masks, labels):
    """Run PaddleDetection's Gt2Solov2Target on one image and return per level
    (cate label map in OUR convention, [(cell, mask)] positives, fg_num)."""
    batch_ops = pytest.importorskip('ppdet.data.transform.batch_operators',
                                    reason='reference test: needs PaddleDetection (paddledet==2.6.0)')
    boxes = []
    for mask in masks:
        if mask.any():
            boxes.append(mask_to_box(mask))
        else:
            boxes.append((0, 0, 10, 10))   # empty mask with a nonzero box: both skip it
    height, width = masks.shape[1:]
    sample = {'image': np.zeros((3, height, width), np.float32),
              'gt_bbox': np.asarray(boxes, np.float32),
              'gt_class': np.asarray(labels, np.int32).reshape(-1, 1),
              'gt_segm': masks.copy(), 'is_crowd': np.zeros((len(masks), 1), np.int32),
              'gt_poly': [None] * len(masks)}
    op = batch_ops.Gt2Solov2Target(num_grids=list(GRIDS), scale_ranges=[list(r) for r in FULL],
                                   coord_sigma=0.2, sampling_ratio=4.0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out = op([sample])[0]
    levels = []
    for level, grid in enumerate(GRIDS):
        cate = out[f'cate_label{level}'].reshape(grid, grid).astype(np.int64) - 1   # 1..C, 0 bg -> ours
        if (cate == BACKGROUND).all():
            positives = []     # ppdet stores a dummy (cell 0, zero mask) for levels without positives
        else:
            positives = list(zip(out[f'grid_order{level}'].tolist(), out[f'ins_label{level}']))
        levels.append((cate, positives))
    return levels, int(out['fg_num'])


@pytest.mark.reference
@pytest.mark.parametrize('seed,size', [(1, (256, 320)), (2, (320, 224)), (3, (192, 192))])
def test_matches_paddledetection_gt2solov2target(seed, size):
    """PaddleDetection's ``Gt2Solov2Target`` follows SOLO's solov2_target_single.
    Comparable differences, none of which matter here:
      * labels: it adds 1 to ``gt_class`` (1..C, 0 = background); ours = theirs - 1;
      * boxes come from ``gt_bbox`` (annotation boxes) instead of mask extents; the
        test feeds it the mask extents (x2/y2 exclusive) so the scales agree;
      * half extents are computed in float32 (float64 here); no case sits on a border;
      * it pads each level to the batch's largest positive count and stores a dummy
        positive (cell 0, all-zero mask) for levels without positives; with a batch of
        one image only the dummy needs filtering (recognised by an all-background map);
      * mask rescale via cv2.resize(fx=fy=1/4) instead of an explicit size: identical
        for sizes that are multiples of 4.
    It does NOT sort instances (hit_indices keep input order) and also uses the centre
    of mass, so cate maps and the ordered (cell, mask) positive lists match exactly."""
    rng = np.random.default_rng(seed)
    height, width = size
    masks = _random_instances(rng, height, width, 9)
    labels = rng.integers(0, 80, len(masks))
    ours = assign_targets(masks, labels, GRIDS, FULL)
    theirs, fg_num = _ppdet_targets(masks, labels)
    assert collate_targets([ours]).num_positives == fg_num
    total = 0
    for level, (cate, positives) in enumerate(theirs):
        np.testing.assert_array_equal(ours.cate_labels[level], cate)
        assert ours.ins_cells[level].tolist() == [cell for cell, _ in positives]
        for mine, (_, mask) in zip(ours.ins_masks[level], positives):
            np.testing.assert_array_equal(mine, mask)
        as_set = {(cell, mask.tobytes()) for cell, mask in positives}
        assert {(c, m.tobytes()) for c, m in zip(ours.ins_cells[level], ours.ins_masks[level])} == as_set
        total += len(positives)
    assert total > 0
