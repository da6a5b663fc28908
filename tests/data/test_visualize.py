"""Tests for data.visualize."""

import cv2
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from solov2.data.masks import CroppedMasks, mask_to_box
from solov2.data.visualize import (
    CAPTION_BACKGROUND,
    FILL_ALPHA,
    FILL_ROWS,
    MaskShares,
    caption_candidates,
    caption_size,
    class_color,
    draw_bgr,
    draw_caption,
    draw_instances,
    fill_mask,
    font_scale,
    label_text,
    largest_region_box,
    place_captions,
)

CLASS_NAMES = ('person', 'car')


def scene(height=120, width=160):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    masks = np.zeros((2, height, width), dtype=bool)
    masks[0, 40:70, 30:60] = True
    masks[1, 80:100, 100:140] = True
    return image, masks


def caption_rect(out, color, mask):
    """Half-open box (x0, y0, x1, y1) of the pixels of `out` that are exactly `color` away from
    `mask` (its contour has that colour too): the outline of the caption of the one instance of that
    colour's class; None if none."""
    ys, xs = np.nonzero(np.all(out == color, axis=2) & ~mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def whole_caption(out, rect, color, text):
    """Whether `rect` holds the whole caption of `text` as drawn: its size, an outline all `color`
    (so none of it is covered or cut by the picture's edge) around a mostly dark box."""
    x0, y0, x1, y1 = rect
    border = np.concatenate([out[y0, x0:x1], out[y1 - 1, x0:x1], out[y0:y1, x0], out[y0:y1, x1 - 1]])
    dark = np.all(out[y0 + 1:y1 - 1, x0 + 1:x1 - 1] == CAPTION_BACKGROUND, axis=2)
    size = caption_size(text, font_scale(*out.shape[:2]))
    return (x1 - x0, y1 - y0) == size and bool(np.all(border == color)) and dark.mean() > 0.5


def drawn_captions(out, masks, texts, labels):
    """The caption rect of each instance (given best first, each of its own class `labels`), each checked whole."""
    assert len(set(labels)) == len(labels)
    rects = [caption_rect(out, class_color(label), mask) for label, mask in zip(labels, masks)]
    for rank, (rect, text, label) in enumerate(zip(rects, texts, labels)):
        assert rect is not None and whole_caption(out, rect, class_color(label), text), (rank, rect)
    return rects


def meet(a, b):
    """Whether half-open boxes `a` and `b` share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_draw_instances_shape_dtype_and_input_untouched():
    image, masks = scene()
    original = image.copy()
    out = draw_instances(image, masks, np.array([0, 1]), np.array([0.9, 0.8]), CLASS_NAMES)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, original)


def test_draw_instances_changes_only_near_instances():
    image, masks = scene()
    out = draw_instances(image, masks, np.array([0, 1]), np.array([0.9, 0.8]), CLASS_NAMES)
    changed = np.any(out != image, axis=2)
    assert changed[masks[0]].mean() > 0.9
    assert changed[masks[1]].mean() > 0.9
    near = np.zeros_like(changed)
    near[10:75, 25:120] = True  # instance 0 plus room for its caption above
    near[60:105, 95:160] = True  # instance 1 plus room for its caption above
    assert not changed[~near].any()


def test_draw_instances_skips_low_scores():
    image, masks = scene()
    out = draw_instances(image, masks, np.array([0, 1]), np.array([0.9, 0.1]), CLASS_NAMES, 0.3)
    np.testing.assert_array_equal(out[masks[1]], image[masks[1]])
    assert np.any(out[masks[0]] != image[masks[0]])


def test_draw_instances_empty_returns_copy():
    image, _ = scene()
    out = draw_instances(
        image, np.zeros((0, *image.shape[:2]), dtype=bool), np.zeros(0, int), np.zeros(0), CLASS_NAMES
    )
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_draw_instances_unknown_label_and_border_mask():
    image, _ = scene()
    masks = np.zeros((2, *image.shape[:2]), dtype=bool)
    masks[0, :5, -5:] = True  # top-right corner: caption must be clamped inside
    masks[1, -3:, :4] = True  # bottom-left corner
    out = draw_instances(image, masks, np.array([7, 1]), np.array([0.5, 0.5]), CLASS_NAMES)
    assert out.shape == image.shape
    assert np.any(out[masks[0]] != image[masks[0]])


def test_label_text():
    assert label_text(1, 0.8712, CLASS_NAMES) == 'car 0.87'
    assert label_text(5, 0.5, CLASS_NAMES) == '5 0.50'


def test_caption_candidates_stay_inside_image():
    assert caption_candidates((30, 40, 60, 70), (50, 12), (120, 160))[0] == (30, 28, 80, 40)  # above the box
    no_room_above = caption_candidates((30, 5, 60, 70), (50, 12), (120, 160))
    assert no_room_above[0] == (30, 0, 80, 12) and (30, 70, 80, 82) in no_room_above  # shifted down; below
    assert no_room_above[-1] == (30, 5, 80, 17)  # inside, the last resort
    assert caption_candidates((150, 0, 160, 5), (50, 12), (120, 160))[0] == (110, 0, 160, 12)  # clamped left
    rng = np.random.default_rng(0)
    for x0, y0, w, h in rng.integers(0, 160, size=(50, 4)):
        for rect in caption_candidates((x0, y0, x0 + w, y0 + h), (50, 12), (120, 160)):
            assert 0 <= rect[0] and rect[2] <= 160 and 0 <= rect[1] and rect[3] <= 120
            assert (rect[2] - rect[0], rect[3] - rect[1]) == (50, 12)


def test_class_colours_distinct_and_one_per_class():
    colors = [class_color(label) for label in range(18)]
    assert len(set(colors)) == 18 and class_color(18) == class_color(0)
    assert all(isinstance(c, int) and 0 <= c <= 255 for color in colors for c in color)


def test_instances_of_one_class_share_its_colour_whatever_their_scores():
    """Two objects of one class in one colour, another class in its own (before: a colour per score rank)."""
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((3, 120, 160), dtype=bool)
    masks[0, 20:50, 10:50], masks[1, 70:110, 10:50], masks[2, 40:90, 100:150] = True, True, True
    out = draw_instances(image, masks, np.array([1, 0, 1]), np.array([0.9, 0.6, 0.3]), CLASS_NAMES)
    fills = [tuple(out[35, 30]), tuple(out[90, 30]), tuple(out[65, 125])]
    want = [tuple(int(c * FILL_ALPHA + 0.5) for c in class_color(label)) for label in (1, 0, 1)]
    assert [np.abs(np.subtract(a, b)).max() <= 1 for a, b in zip(fills, want)] == [True] * 3
    assert fills[0] == fills[2] != fills[1]


def test_most_confident_caption_is_placed_first():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((2, 120, 160), dtype=bool)
    masks[0, 40:90, 30:100] = True  # both captions would sit just above (30, 40)
    masks[1, 40:70, 30:60] = True
    # the weaker instance comes first, as in an unsorted input
    out = draw_instances(image, masks, np.array([1, 0]), np.array([0.5, 0.9]), CLASS_NAMES)
    strongest = class_color(0)  # the best one's class: its caption placed first
    caption_outline = out[39, 31]  # on the caption's outline, just above the masks
    assert tuple(caption_outline) == strongest
    weaker = caption_rect(out, class_color(1), masks[0])
    assert weaker is not None and weaker[1] >= 90  # the weaker caption went below, not on top
    overlap_fill = out[50, 40]
    assert tuple(overlap_fill) != tuple(out[80, 80])  # (80, 80) has the weaker fill alone
    assert np.argmax(overlap_fill) == np.argmax(strongest)


def _region(mask):
    """``largest_region_box`` of a full [H, W] mask, through its crop."""
    cropped = CroppedMasks.from_dense(mask[None])
    return largest_region_box(cropped.crops[0], cropped.boxes[0])


def test_largest_region_box():
    mask = np.zeros((120, 160), dtype=bool)
    assert _region(mask) is None
    mask[60:100, 80:130] = True
    mask[5:7, 5:7] = True  # a stray fragment far away
    assert _region(mask) == (80, 60, 130, 100)


def _components_choice(mask):
    """The largest region's box by ``cv2.connectedComponentsWithStats`` over the mask's tight crop
    (the first label of the largest area; the labels' order depends on the crop)."""
    x0, y0, x1, y1 = mask_to_box(mask)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask[y0:y1, x0:x1].view(np.uint8), connectivity=8)
    x, y, w, h = (int(v) for v in stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4])
    return x0 + x, y0 + y, x0 + x + w, y0 + y + h


def test_largest_region_is_connected_components_choice_ties_included():
    rng = np.random.default_rng(7)
    blob = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], bool)
    tested = ties = 0
    for trial in range(600):
        height, width = rng.integers(4, 40, 2)
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.7)
        if trial % 3 == 0:       # blobs and holes
            mask = cv2.dilate(mask.view(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        if trial % 4 == 0:       # three copies of one blob and nothing larger: a three-way tie
            mask[:] = False
            for y, x in rng.integers(0, (height - 3, width - 3), (3, 2)) // 4 * 4:
                mask[y:y + 3, x:x + 3] |= blob
        if mask_to_box(mask) is None:
            continue
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
        ties += np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] == stats[1:, cv2.CC_STAT_AREA].max()) > 1
        assert _region(mask) == _components_choice(mask), trial
        tested += 1
    assert tested > 500 and ties > 100


def test_caption_follows_the_largest_region_not_a_fragment():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((1, 120, 160), dtype=bool)
    masks[0, 60:100, 80:130] = True
    masks[0, 5:7, 5:7] = True
    out = draw_instances(image, masks, np.array([0]), np.array([0.9]), CLASS_NAMES)
    changed = np.any(out != image, axis=2)
    assert changed[55:60, 80:90].all()  # the caption just above the main region
    assert not changed[8:20, 8:40].any()  # nothing next to the fragment


def _dense_placement(sizes, anchors, weights):
    """``place_captions`` as it was on a full [H, W] float32 map of the masks' shares (``weights``,
    changed in place): the caption rects."""
    caption_weight, placed = len(sizes) + 1.0, []
    for (w, h), anchor in zip(sizes, anchors):
        w, h = min(w, weights.shape[1]), min(h, weights.shape[0])
        rects = np.array(caption_candidates(anchor, (w, h), weights.shape))
        costs = sliding_window_view(weights, (h, w))[rects[:, 1], rects[:, 0]].sum(axis=(1, 2))
        x0, y0, x1, y1 = (int(v) for v in rects[int(np.argmin(costs))])
        weights[y0:y1, x0:x1] += caption_weight
        placed.append((x0, y0, x1, y1))
    return placed


def test_mask_shares_hold_the_bits_of_a_full_map_and_place_captions_alike():
    rng = np.random.default_rng(11)
    for trial in range(20):
        height, width = rng.integers(20, 120, 2)
        shares, dense = MaskShares((height, width)), np.zeros((height, width), np.float32)
        for _ in range(rng.integers(1, 12)):
            mask = np.zeros((height, width), np.uint8)
            cv2.ellipse(mask, (int(rng.integers(0, width)), int(rng.integers(0, height))),
                        (int(rng.integers(1, 40)), int(rng.integers(1, 40))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            x0, y0, x1, y1 = mask_to_box(mask)
            crop = mask[y0:y1, x0:x1].astype(bool)
            shares.add_mask(crop, (x0, y0, x1, y1))
            dense[y0:y1, x0:x1][crop] += np.float32(1.0 / np.count_nonzero(crop))   # the full map as it was
        anchors = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in
                   zip(rng.integers(0, width, 8), rng.integers(0, height, 8), rng.integers(1, 30, 8),
                       rng.integers(1, 30, 8))]
        sizes = [(int(w), int(h)) for w, h in zip(rng.integers(5, 60, 8), rng.integers(5, 20, 8))]
        expected = _dense_placement(sizes, anchors, dense.copy())
        assert place_captions(sizes, anchors, shares) == expected, trial
        _dense_placement(sizes, anchors, dense)
        for _ in range(10):                                   # masks and captions: the same bits anywhere
            x0, y0 = rng.integers(0, (width, height))
            x1, y1 = rng.integers((x0 + 1, y0 + 1), (width + 1, height + 1))
            np.testing.assert_array_equal(shares.window((x0, y0, x1, y1)), dense[y0:y1, x0:x1])


def _full_picture_drawing(image, masks, labels, scores):
    """The drawing as before boxes: float64 blend (then rounded half up) and contours over
    the whole picture, then the captions where the masks' shares say."""
    canvas = image.copy()
    weights = np.zeros(image.shape[:2], dtype=np.float32)
    for rank in reversed(range(len(scores))):      # scores are given best first
        mask, color = masks[rank], class_color(int(labels[rank]))
        blended = canvas[mask] * (1.0 - FILL_ALPHA) + np.array(color) * FILL_ALPHA
        canvas[mask] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, color, thickness=1)
        weights[mask] += np.float32(1.0 / mask.sum())
    scale = font_scale(*image.shape[:2])
    texts = [label_text(int(label), float(score), CLASS_NAMES) for label, score in zip(labels, scores)]
    rects = _dense_placement([caption_size(text, scale) for text in texts], [_region(m) for m in masks], weights)
    for rank in reversed(range(len(scores))):
        draw_caption(canvas, texts[rank], rects[rank], class_color(int(labels[rank])), scale)
    return canvas


def test_drawing_inside_boxes_equals_the_full_picture_drawing():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(90, 130, 3), dtype=np.uint8)
    masks = np.zeros((12, 90, 130), dtype=np.uint8)
    for mask in masks[:10]:
        cv2.ellipse(mask, (int(rng.integers(0, 130)), int(rng.integers(0, 90))),
                    (int(rng.integers(2, 30)), int(rng.integers(2, 20))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    masks[10, :, :3] = 1                     # along the left edge, and a fragment
    masks[10, 40, 60] = 1
    masks = masks.astype(bool)               # masks[11] stays empty
    labels, scores = rng.integers(0, 2, 12), np.sort(rng.uniform(0.3, 1.0, 12))[::-1]
    drawn = draw_instances(image, masks, labels, scores, CLASS_NAMES)
    cropped = CroppedMasks.from_dense(masks)
    np.testing.assert_array_equal(drawn, draw_instances(image, cropped, labels, scores, CLASS_NAMES))
    canvas = image.copy()
    assert draw_instances(canvas, cropped, labels, scores, CLASS_NAMES, in_place=True) is canvas
    np.testing.assert_array_equal(canvas, drawn)
    canvas = image.copy()                    # the demo's picture: drawn on itself, then BGR for OpenCV
    assert draw_bgr(canvas, cropped, labels, scores, CLASS_NAMES) is canvas
    np.testing.assert_array_equal(canvas, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    with pytest.raises(ValueError, match='in place'):
        draw_instances(np.asfortranarray(image), cropped, labels, scores, CLASS_NAMES, in_place=True)
    expected = _full_picture_drawing(image, masks[:11], labels[:11], scores[:11])
    difference = np.abs(drawn.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01   # OpenCV's uint8 blend rounds its own way


def test_caption_leaves_a_small_neighbour_visible():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((2, 120, 160), dtype=bool)
    masks[0, 40:100, 20:90] = True  # a large object, and a small one just above its top-left corner
    masks[1, 27:37, 25:35] = True
    out = draw_instances(image, masks, np.array([0, 1]), np.array([0.9, 0.8]), CLASS_NAMES)
    rects = drawn_captions(out, masks, ['person 0.90', 'car 0.80'], [0, 1])
    for x0, y0, x1, y1 in rects:
        assert not masks[1, y0:y1, x0:x1].any()  # no caption hides the small object
        assert not masks[0, y0:y1, x0:x1].any()  # nor the large one: there is room outside
    assert not meet(*rects)


def test_close_instances_get_captions_apart():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((2, 120, 160), dtype=bool)
    masks[0, 50:80, 30:60] = True  # side by side, 2 pixels apart, each narrower than its caption
    masks[1, 50:80, 62:92] = True
    out = draw_instances(image, masks, np.array([0, 1]), np.array([0.9, 0.8]), CLASS_NAMES)
    rects = drawn_captions(out, masks, ['person 0.90', 'car 0.80'], [0, 1])
    assert not meet(*rects)
    assert rects[0][3] == 50  # the best one keeps the place just above its box


def test_later_masks_leave_captions_intact():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((2, 120, 160), dtype=bool)
    masks[0, 20:, :] = True  # a large object around a hole in which a small one lies
    masks[0, 55:75, 60:90] = False
    masks[1, 58:72, 65:85] = True
    # the small, weaker one first, as in an unsorted input: drawn the old way, the large fill came after its caption
    out = draw_instances(image, masks[::-1], np.array([1, 0]), np.array([0.5, 0.9]), CLASS_NAMES)
    rects = drawn_captions(out, masks, ['person 0.90', 'car 0.50'], [0, 1])
    x0, y0, x1, y1 = rects[1]
    assert masks[0, y0:y1, x0:x1].any() and not masks[1, y0:y1, x0:x1].any()  # over the large fill, whole


def test_captions_stay_inside_at_the_borders():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((4, 120, 160), dtype=bool)
    masks[0, :5, -5:] = True  # a small object in each corner
    masks[1, -3:, :4] = True
    masks[2, :6, :6] = True
    masks[3, -6:, -6:] = True
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    out = draw_instances(image, masks, np.array([7, 1, 0, 2]), scores, CLASS_NAMES)
    rects = drawn_captions(out, masks, ['7 0.90', 'car 0.80', 'person 0.70', '2 0.60'], [7, 1, 0, 2])
    for i, (x0, y0, x1, y1) in enumerate(rects):
        assert 0 <= x0 and x1 <= 160 and 0 <= y0 and y1 <= 120
        assert not masks[:, y0:y1, x0:x1].any(), i  # none hides an object
        assert not any(meet(rects[i], other) for other in rects[:i])


def test_a_mask_four_pixels_tall_and_one_wide_is_drawn():
    image, masks = scene()
    masks[1] = False
    masks[1, 10:14, 20] = True      # cv2.add took a [4, 1] window for a 4-channel scalar and refused it
    out = draw_instances(image, masks, np.array([0, 1]), np.array([0.9, 0.8]), CLASS_NAMES)
    assert tuple(out[11, 20]) == class_color(1)      # its contour


def test_fill_mask_in_bands_is_one_blend_of_the_whole_window():
    rng = np.random.default_rng(2)
    picture = rng.integers(0, 256, (3 * FILL_ROWS + 7, 50, 3), dtype=np.uint8)
    mask = rng.random((2 * FILL_ROWS + 5, 40)) < 0.5
    window = (slice(1, 2 * FILL_ROWS + 6), slice(3, 43))
    expected = picture.copy()
    paint = np.empty_like(expected[window])
    paint[:] = (200, 30, 90)
    cv2.copyTo(cv2.addWeighted(expected[window], 1.0 - FILL_ALPHA, paint, FILL_ALPHA, 0.0), mask.view(np.uint8),
               expected[window])
    before = picture.copy()
    fill_mask(picture[window], mask, (200, 30, 90))
    np.testing.assert_array_equal(picture, expected)
    assert (np.any(picture != before, axis=2) == np.pad(mask, ((1, FILL_ROWS + 1), (3, 7)))).all()
