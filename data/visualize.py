"""Draw SOLOv2 instance predictions onto an image."""

from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

from data.results import mask_to_box

GOLDEN_RATIO_CONJUGATE = 0.618033988749895
FILL_ALPHA = 0.45
FONT = cv2.FONT_HERSHEY_SIMPLEX


def instance_color(index: int) -> tuple[int, int, int]:
    """Distinct, deterministic RGB colour (0..255 ints) for the `index`-th instance via golden-ratio hue steps."""
    hue = (0.1 + index * GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


def label_text(label: int, score: float, class_names: Sequence[str]) -> str:
    """Caption "name 0.87"; labels outside `class_names` show their numeric id."""
    name = class_names[label] if 0 <= label < len(class_names) else str(label)
    return f'{name} {score:.2f}'


def fill_mask(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Blend `color` into `[H, W, 3] uint8` `image` (a picture or a window of one) in place
    where `[H, W] bool` `mask` is True (uint8 blend, rounded to nearest)."""
    paint = np.full_like(image, color)
    blended = cv2.addWeighted(image, 1.0 - FILL_ALPHA, paint, FILL_ALPHA, 0.0)
    cv2.copyTo(blended, mask.view(np.uint8), image)


def draw_contour(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], offset: tuple[int, int] = (0, 0)
) -> None:
    """Draw the 1-pixel outer contour of `[h, w] bool` `mask` onto `[H, W, 3] uint8` `image` in place;
    `mask` is the window of the picture that starts at `offset` (x, y)."""
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=offset
    )
    cv2.drawContours(image, contours, -1, color, thickness=1)


def font_scale(height: int, width: int) -> float:
    """Text scale that stays readable from small to large images."""
    return float(np.clip(min(height, width) / 900.0, 0.35, 1.0))


def largest_region_box(
    mask: np.ndarray, box: Sequence[int] | None = None
) -> tuple[int, int, int, int] | None:
    """Half-open box `(x0, y0, x1, y1)` of the largest 8-connected region of `[H, W] bool` `mask`,
    or None if it is empty: where a caption belongs when a mask has stray fragments. Only
    `box` (the mask's tight box, found when not given) is read."""
    box = mask_to_box(mask) if box is None else box
    if box is None or box[2] <= box[0] or box[3] <= box[1]:
        return None
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8)
    _, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return None
    if np.count_nonzero(hierarchy[0, :, 3] < 0) == 1:     # one outer border: one region, the whole box
        return x0, y0, x1, y1
    _, _, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    left, top, width, height = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
    return x0 + int(left), y0 + int(top), x0 + int(left + width), y0 + int(top + height)


def label_origin(
    box: tuple[int, int, int, int], text_wh: tuple[int, int], image_hw: tuple[int, int]
) -> tuple[int, int]:
    """Top-left `(x, y)` of a `text_wh` label box just above `box` (x0, y0, x1, y1), kept inside the image.

    The label sits above the box's top edge; if there is no room it moves to
    just inside the top edge. It is then shifted left/up to fit the image.
    """
    x0, y0, _, _ = box
    text_w, text_h = text_wh
    height, width = image_hw
    top = y0 - text_h if y0 - text_h >= 0 else y0
    x = max(0, min(x0, width - text_w))
    y = max(0, min(top, height - text_h))
    return x, y


def draw_label(
    image: np.ndarray, text: str, box: tuple[int, int, int, int], color: tuple[int, int, int]
) -> None:
    """Draw `text` on a filled `color` background at the top of `box` onto `[H, W, 3] uint8` `image` in place."""
    height, width = image.shape[:2]
    scale = font_scale(height, width)
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, 1)
    pad = 2
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x, y = label_origin(box, (box_w, box_h), (height, width))
    cv2.rectangle(image, (x, y), (x + box_w - 1, y + box_h - 1), color, thickness=cv2.FILLED)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    origin = (x + pad, y + pad + text_h)
    cv2.putText(image, text, origin, FONT, scale, text_color, 1, cv2.LINE_AA)


def window(box: Sequence[int], image_hw: tuple[int, int], margin: int = 1) -> tuple[slice, slice]:
    """Rows and columns of `box` (x0, y0, x1, y1) grown by `margin` pixels, inside the picture."""
    height, width = image_hw
    return (slice(max(0, int(box[1]) - margin), min(height, int(box[3]) + margin)),
            slice(max(0, int(box[0]) - margin), min(width, int(box[2]) + margin)))


def draw_instance(canvas: np.ndarray, mask: np.ndarray, box: Sequence[int] | None,
                  color: tuple[int, int, int], text: str) -> None:
    """Fill, contour and caption of one `[H, W] bool` mask on `[H, W, 3] uint8` `canvas` in place,
    reading and writing only around its tight `box` (found when None)."""
    box = mask_to_box(mask) if box is None else box
    region = largest_region_box(mask, box)
    if region is None:
        return
    rows, cols = window(box, mask.shape)
    crop = mask[rows, cols]
    fill_mask(canvas[rows, cols], crop, color)
    draw_contour(canvas, crop, color, (cols.start, rows.start))
    draw_label(canvas, text, region, color)


def draw_instances(
    image_rgb: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    score_threshold: float = 0.3,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Overlay instances on a copy of `image_rgb` `[H, W, 3] uint8 RGB` and return it (same shape/dtype).

    `masks` `[N, H, W] bool`, `labels` `[N] int`, `scores` `[N] float`; `boxes` `[N, 4]`
    the masks' tight half-open x0, y0, x1, y1 boxes (zeros when empty) if known, so
    only they are read. Instances scoring below `score_threshold` or with empty masks
    are skipped; each drawn one gets a translucent fill, a thin contour and a
    "name 0.87" caption above the largest connected part of its mask. Colours follow
    the score rank, and the most confident instances are drawn last, so their fills
    and captions lie on top. Labels beyond `class_names` are captioned with their id.
    """
    if masks.shape[1:] != image_rgb.shape[:2]:
        raise ValueError(f'masks {masks.shape} do not match image {image_rgb.shape}')
    canvas = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    scores = np.asarray(scores)
    keep = np.flatnonzero(scores >= score_threshold)
    keep = keep[np.argsort(-scores[keep], kind='stable')]  # colour index = score rank
    for color_index in reversed(range(len(keep))):
        i = keep[color_index]
        draw_instance(canvas, np.asarray(masks[i], dtype=bool), None if boxes is None else boxes[i],
                      instance_color(color_index), label_text(int(labels[i]), float(scores[i]), class_names))
    return canvas
