"""Tests for data.visualize."""

import cv2
import numpy as np

from data.results import mask_to_box
from data.visualize import (
    FILL_ALPHA,
    draw_instances,
    draw_label,
    instance_color,
    label_origin,
    label_text,
    largest_region_box,
)

CLASS_NAMES = ('person', 'car')


def scene(height=120, width=160):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    masks = np.zeros((2, height, width), dtype=bool)
    masks[0, 40:70, 30:60] = True
    masks[1, 80:100, 100:140] = True
    return image, masks


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


def test_label_origin_stays_inside_image():
    assert label_origin((30, 40, 60, 70), (50, 12), (120, 160)) == (30, 28)  # above the box
    assert label_origin((30, 5, 60, 70), (50, 12), (120, 160)) == (30, 5)  # no room above
    assert label_origin((150, 0, 160, 5), (50, 12), (120, 160)) == (110, 0)  # clamped left


def test_instance_colors_distinct_and_deterministic():
    colors = [instance_color(i) for i in range(20)]
    assert colors == [instance_color(i) for i in range(20)]
    assert len(set(colors)) == 20
    assert all(0 <= c <= 255 for color in colors for c in color)


def test_most_confident_caption_lies_on_top():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((2, 120, 160), dtype=bool)
    masks[0, 40:90, 30:100] = True  # both captions sit just above (30, 40)
    masks[1, 40:70, 30:60] = True
    # the weaker instance comes first, as in an unsorted input
    out = draw_instances(image, masks, np.array([1, 0]), np.array([0.5, 0.9]), CLASS_NAMES)
    strongest = instance_color(0)  # colours follow the score rank
    caption_background = out[39, 31]  # inside the caption's padding, just above the masks
    assert tuple(caption_background) == strongest
    overlap_fill = out[50, 40]
    assert tuple(overlap_fill) != tuple(out[80, 80])  # (80, 80) has the weaker fill alone
    assert np.argmax(overlap_fill) == np.argmax(strongest)


def test_largest_region_box():
    mask = np.zeros((120, 160), dtype=bool)
    assert largest_region_box(mask) is None
    mask[60:100, 80:130] = True
    mask[5:7, 5:7] = True  # a stray fragment far away
    assert largest_region_box(mask) == (80, 60, 130, 100)


def test_caption_follows_the_largest_region_not_a_fragment():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    masks = np.zeros((1, 120, 160), dtype=bool)
    masks[0, 60:100, 80:130] = True
    masks[0, 5:7, 5:7] = True
    out = draw_instances(image, masks, np.array([0]), np.array([0.9]), CLASS_NAMES)
    changed = np.any(out != image, axis=2)
    assert changed[55:60, 80:90].all()  # the caption just above the main region
    assert not changed[8:20, 8:40].any()  # nothing next to the fragment


def _full_picture_drawing(image, masks, labels, scores):
    """The drawing as before boxes: float64 blend (then rounded half up) and contours over
    the whole picture."""
    canvas = image.copy()
    for rank in reversed(range(len(scores))):      # scores are given best first
        mask, color = masks[rank], instance_color(rank)
        blended = canvas[mask] * (1.0 - FILL_ALPHA) + np.array(color) * FILL_ALPHA
        canvas[mask] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, color, thickness=1)
        draw_label(canvas, label_text(int(labels[rank]), float(scores[rank]), CLASS_NAMES),
                   largest_region_box(mask), color)
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
    boxes = np.array([mask_to_box(m) or (0, 0, 0, 0) for m in masks])
    labels, scores = rng.integers(0, 2, 12), np.sort(rng.uniform(0.3, 1.0, 12))[::-1]
    drawn = draw_instances(image, masks, labels, scores, CLASS_NAMES, boxes=boxes)
    np.testing.assert_array_equal(drawn, draw_instances(image, masks, labels, scores, CLASS_NAMES))
    expected = _full_picture_drawing(image, masks[:11], labels, scores[:11])
    difference = np.abs(drawn.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01   # OpenCV's uint8 blend rounds its own way
