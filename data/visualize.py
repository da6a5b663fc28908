"""Draw SOLOv2 instance predictions onto an image."""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

from solov2.data.masks import CroppedMasks, as_cropped
from solov2.data.results import SHOWN_MIN_SCORE
from solov2.data.transforms import swap_red_blue

# a class's colour, by its index: Sasha Trubetskoy's "List of 20 Simple, Distinct Colors" (2017) less white,
# black, grey and beige (too close to a picture's own greys), its yellow last
CLASS_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                 (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
                 (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 225, 25))
FILL_ALPHA = 0.45
FILL_ROWS = 64      # fill_mask blends a band of this many rows at a time
FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_PAD = 2
CAPTION_BACKGROUND = (24, 24, 24)   # the dark box behind a caption's text
TEXT_LIGHTEN = 0.45     # caption text: the instance colour moved this far towards white

Rect = Tuple[int, int, int, int]   # half-open x0, y0, x1, y1


def class_color(label: int) -> tuple[int, int, int]:
    """RGB colour (0..255 ints) of class `label` (its 0-based index): every instance of a class has it, in
    demo.py's pictures, browse's and the service's page (serving/page/page.js's PALETTE, the same list)."""
    return CLASS_PALETTE[label % len(CLASS_PALETTE)]


def label_text(label: int, score: float | None, class_names: Sequence[str]) -> str:
    """Caption "name 0.87" ("name" for a score of None, an annotation's); labels outside `class_names` show
    their numeric id."""
    name = class_names[label] if 0 <= label < len(class_names) else str(label)
    return name if score is None else f'{name} {score:.2f}'


def fill_mask(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Blend `color` into `[H, W, 3] uint8` `image` (a picture or a window of one) in place
    where `[H, W] bool` `mask` is True (uint8 blend, rounded to nearest), `FILL_ROWS` rows at
    a time (a large mask's temporaries stay small and in the cache: 3x faster on 3 MP)."""
    row = np.tile(np.asarray(color, dtype=np.uint8), image.shape[1])      # np.full_like: 100x slower
    paint = np.repeat(row[None], min(FILL_ROWS, image.shape[0]), axis=0).reshape(-1, *image.shape[1:])
    for top in range(0, image.shape[0], FILL_ROWS):
        band = image[top:top + FILL_ROWS]
        blended = cv2.addWeighted(band, 1.0 - FILL_ALPHA, paint[:len(band)], FILL_ALPHA, 0.0)
        cv2.copyTo(blended, mask[top:top + FILL_ROWS].view(np.uint8), band)


def font_scale(height: int, width: int) -> float:
    """Text scale that stays readable from small to large images."""
    return float(np.clip(min(height, width) / 900.0, 0.35, 1.0))


def largest_region_box(crop: np.ndarray, box: Sequence[int]) -> tuple[int, int, int, int] | None:
    """Half-open box `(x0, y0, x1, y1)` of the largest 8-connected region of a mask given as its
    `[y1 - y0, x1 - x0] bool` `crop` to its tight `box`, or None if it is empty: where a caption
    belongs when a mask has stray fragments. Of regions with as many pixels, the first in
    `cv2.connectedComponentsWithStats`' label order."""
    if crop.size == 0:
        return None
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = np.ascontiguousarray(crop).view(np.uint8)
    contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return None
    outer = [contours[i] for i in np.flatnonzero(hierarchy[0, :, 3] < 0)]   # one outer border per region
    if len(outer) == 1:                                                     # one region: the whole box
        return x0, y0, x1, y1
    left, top, width, height = _largest_region(crop, outer)
    return x0 + left, y0 + top, x0 + left + width, y0 + top + height


def _largest_region(crop: np.ndarray, outer: Sequence[np.ndarray]) -> tuple[int, int, int, int]:
    """`(left, top, width, height)` in `[h, w] uint8` 0/1 `crop` of the region with the most pixels,
    given each region's outer border: flood fills count them, largest bound (the mask pixels in the
    border's rect) first, until no bound can beat the best; a tie goes to connectedComponentsWithStats."""
    rects = [cv2.boundingRect(border) for border in outer]
    bounds = [np.count_nonzero(crop[top:top + h, left:left + w]) for left, top, w, h in rects]
    best, best_count, tied = None, -1, False
    for k in np.argsort(bounds, kind='stable')[::-1]:
        if bounds[k] < best_count:
            break
        left, top, w, h = rects[k]
        seed = (int(outer[k][0, 0, 0]) - left, int(outer[k][0, 0, 1]) - top)    # a pixel of the region
        count = cv2.floodFill(crop[top:top + h, left:left + w].copy(), None, seed, 2, 0, 0, 8)[0]
        tied = tied or count == best_count
        if count > best_count:
            best, best_count, tied = rects[k], count, False
    if not tied:
        return best
    _, _, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    return tuple(int(v) for v in stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4])


def caption_candidates(box: Sequence[int], size: tuple[int, int], image_hw: tuple[int, int]) -> list[Rect]:
    """Half-open rects `(x0, y0, x1, y1)` of a `size` (w, h) caption for `box` (x0, y0, x1, y1), best first:
    just above the box, then just below it (each flush with its left edge, then centred on it, then flush
    with its right edge) and, last, inside its top-left corner; each shifted to lie inside the `image_hw`
    picture."""
    x0, y0, x1, y1 = (int(v) for v in box)
    (w, h), (height, width) = size, image_hw
    corners = [(x, y) for y in (y0 - h, y1) for x in (x0, (x0 + x1 - w) // 2, x1 - w)] + [(x0, y0)]
    clamped = [(max(0, min(x, width - w)), max(0, min(y, height - h))) for x, y in corners]
    return [(x, y, x + w, y + h) for x, y in clamped]


class MaskShares:
    """Over each pixel of an `(H, W)` picture, the sum of one over the pixel count of every mask
    covering it, then of each caption's `weight` over it (`place_captions` reads it), summed only
    inside the windows asked for, in the order a full `[H, W]` map would sum it: the same bits."""

    def __init__(self, image_hw: tuple[int, int]):
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self._areas = []    # (box, crop, float32 share): the masks, then the captions (a full crop)

    def add_mask(self, crop: np.ndarray, box: Sequence[int]) -> None:
        """A mask given as its non-empty `[y1 - y0, x1 - x0] bool` `crop` to its `box`."""
        self._areas.append((tuple(int(v) for v in box), crop, np.float32(1.0 / np.count_nonzero(crop))))

    def add_caption(self, rect: Rect, weight: float) -> None:
        """`weight` over every pixel of `rect`."""
        x0, y0, x1, y1 = (int(v) for v in rect)
        self._areas.append(((x0, y0, x1, y1), np.ones((y1 - y0, x1 - x0), bool), np.float32(weight)))

    def window(self, rect: Rect) -> np.ndarray:
        """`[y1 - y0, x1 - x0] float32`: the sums over the pixels of `rect` (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = rect
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        for (bx0, by0, bx1, by1), crop, share in self._areas:
            if bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0:
                left, top, right, bottom = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
                under = out[top - y0:bottom - y0, left - x0:right - x0]   # float32 + float32 share, as cv2.add
                np.add(under, share, out=under, where=crop[top - by0:bottom - by0, left - bx0:right - bx0])
        return out


def place_captions(sizes: Sequence[tuple[int, int]], anchors: Sequence[Sequence[int]],
                   shares: MaskShares) -> list[Rect]:
    """Greedy caption rects of `sizes` (w, h), one per instance, most confident first: the first of
    its `caption_candidates` around `anchors[i]` that meets no caption placed and hides no mask pixel,
    else the one meeting the fewest caption pixels and hiding the least share of the masks drawn
    (`shares`: a small object stays visible where a large one can lend a corner)."""
    caption_weight = len(sizes) + 1.0   # the shares of N masks sum to at most N
    height, width = shares.image_hw
    placed = []
    for (w, h), anchor in zip(sizes, anchors):
        w, h = min(w, width), min(h, height)    # a picture narrower than a caption
        rects = caption_candidates(anchor, (w, h), shares.image_hw)
        strips = {}                             # candidates in a row share one strip: (its left, its sums)
        for top in {y0 for _, y0, _, _ in rects}:
            left = min(x0 for x0, y0, _, _ in rects if y0 == top)
            strips[top] = left, shares.window((left, top, max(x1 for _, y0, x1, _ in rects if y0 == top), top + h))
        costs = np.stack([strips[y0][1][:, x0 - strips[y0][0]:x1 - strips[y0][0]] for x0, y0, x1, _ in rects])
        rect = rects[int(np.argmin(costs.sum(axis=(1, 2))))]      # the first of the cheapest
        shares.add_caption(rect, caption_weight)
        placed.append(rect)
    return placed


def caption_size(text: str, scale: float) -> tuple[int, int]:
    """`(w, h)` of the caption box of `text` at font `scale`, padding included."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, 1)
    return text_w + 2 * CAPTION_PAD, text_h + baseline + 2 * CAPTION_PAD


def draw_caption(image: np.ndarray, text: str, rect: Rect, color: tuple[int, int, int], scale: float) -> None:
    """Draw `text` on a dark box filling `rect` (from `caption_size`) of `[H, W, 3] uint8` `image` in place:
    the box outlined in `color`, the text in `color` lightened so that dark hues stay readable."""
    x0, y0, x1, y1 = rect
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), CAPTION_BACKGROUND, thickness=cv2.FILLED)
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), color, thickness=1)
    text_color = tuple(int(c + (255 - c) * TEXT_LIGHTEN) for c in color)
    (_, text_h), _ = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(image, text, (x0 + CAPTION_PAD, y0 + CAPTION_PAD + text_h), FONT, scale, text_color, 1, cv2.LINE_AA)


def draw_mask(canvas: np.ndarray, crop: np.ndarray, box: Sequence[int], color: tuple[int, int, int]) -> None:
    """Fill and contour of one mask, given as its `[y1 - y0, x1 - x0] bool` `crop` to its tight
    `box`, on `[H, W, 3] uint8` `canvas` in place, reading and writing only inside the box
    (and the contour's pixels)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    fill_mask(canvas[y0:y1, x0:x1], crop, color)
    edges, _ = cv2.findContours(np.ascontiguousarray(crop).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                offset=(x0, y0))      # the mask's own edge pixels, drawn as they are
    cv2.drawContours(canvas, edges, -1, color, thickness=1)


def draw_instances(image_rgb: np.ndarray, masks: CroppedMasks | np.ndarray, labels: np.ndarray, scores: np.ndarray,
                   class_names: Sequence[str], score_threshold: float = SHOWN_MIN_SCORE,
                   in_place: bool = False, show_scores: bool = True) -> np.ndarray:
    """Instances drawn on a copy of `image_rgb` `[H, W, 3] uint8 RGB` (`in_place`: on it, C-contiguous).
    `masks` `CroppedMasks` (only the drawn crops are read) or `[N, H, W] bool`, `labels` `[N] int`,
    `scores` `[N] float`. Each instance from `score_threshold` up gets a translucent fill and a contour,
    the most confident on top, then a "name 0.87" caption (`place_captions`) by the largest part of its
    mask (the name alone without `show_scores`: annotations); each in its class's colour (`class_color`)."""
    masks = as_cropped(masks)
    if masks.image_size != image_rgb.shape[:2]:
        raise ValueError(f'masks {masks.shape} do not match image {image_rgb.shape}')
    if in_place and not (image_rgb.dtype == np.uint8 and image_rgb.flags.c_contiguous and image_rgb.flags.writeable):
        raise ValueError('drawing in place needs a writeable C-contiguous uint8 image')
    canvas = image_rgb if in_place else np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    scores = np.asarray(scores)
    keep = np.flatnonzero(scores >= score_threshold)
    keep = keep[np.argsort(-scores[keep], kind='stable')]  # the best first: drawn last, on top
    drawn = []   # (index, crop, tight box, largest region box), best first
    for i in keep:
        crop, box = masks.crop(i), masks.box(i)
        if (region := largest_region_box(crop, box)) is not None:
            drawn.append((i, crop, box, region))
    shares = MaskShares(canvas.shape[:2])
    for i, crop, box, _ in reversed(drawn):
        draw_mask(canvas, crop, box, class_color(int(labels[i])))
        shares.add_mask(crop, box)
    scale = font_scale(*canvas.shape[:2])
    texts = [label_text(int(labels[i]), float(scores[i]) if show_scores else None, class_names) for i, *_ in drawn]
    rects = place_captions([caption_size(text, scale) for text in texts], [region for *_, region in drawn], shares)
    for (i, *_), text, rect in reversed(list(zip(drawn, texts, rects))):
        draw_caption(canvas, text, rect, class_color(int(labels[i])), scale)
    return canvas


def draw_bgr(canvas_rgb: np.ndarray, masks: CroppedMasks | np.ndarray, labels: np.ndarray, scores: np.ndarray,
             class_names: Sequence[str], score_threshold: float = SHOWN_MIN_SCORE,
             show_scores: bool = True) -> np.ndarray:
    """`draw_instances` on `canvas_rgb` `[H, W, 3] uint8 RGB` (C-contiguous) itself, then turned
    to BGR in place (for OpenCV's writers) and returned: no copy of a large picture."""
    drawn = draw_instances(canvas_rgb, masks, labels, scores, class_names, score_threshold, in_place=True,
                           show_scores=show_scores)
    return swap_red_blue(drawn)
