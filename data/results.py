"""COCO-format result export: boxes from masks, fast RLE encoding, polygons and atomic JSON writing."""

from __future__ import annotations

import json
import os
from os import PathLike
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util

from solov2.data.files import atomic_write


def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open pixel box `(x0, y0, x1, y1)` of the True pixels of `[H, W] bool`, or None if empty.

    The mask occupies columns x0..x1-1 and rows y0..y1-1, so
    `mask[y0:y1, x0:x1]` is the tight crop.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))
    return int(cols[0]), y0, int(cols[-1]) + 1, y1


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """`mask_to_box` of each of `[N, H, W] bool` masks: `[N, 4] int64` half-open x0, y0, x1, y1,
    zeros for an empty mask."""
    return np.array([mask_to_box(mask) or (0, 0, 0, 0) for mask in masks], dtype=np.int64).reshape(-1, 4)


def coco_bbox(box: Sequence[int]) -> list[float]:
    """COCO `[x, y, w, h]` of a half-open `(x0, y0, x1, y1)` box: w and h count pixels,
    matching `pycocotools.mask.toBbox` of the mask."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def rle_run_lengths(mask: np.ndarray, box: Sequence[int] | None = None) -> np.ndarray:
    """Column-major run lengths `[K] uint32` of `[H, W] bool`, as pycocotools counts them.

    Runs alternate zeros/ones starting with a (possibly empty) zero run; no
    empty run is emitted at the end. `box` (x0, y0, x1, y1, half-open) must hold
    every True pixel (e.g. the tight box from `mask_to_box`); without it the mask is
    scanned for it.

    Beyond locating the bounding box, only its crop is processed. The crop is
    laid out column by column with one extra False slot after each column
    (unless the crop spans all rows), standing for the H - h background rows
    between the end of one crop column and the start of the next. A flat index
    q, in column j = q // rows and slot k = q % rows, then sits at full-image
    column-major position (x0 + j) * H + y0 + k, so run boundaries found in the
    crop map directly to run boundaries of the whole image.
    """
    height, width = mask.shape
    x0, y0, x1, y1 = (int(v) for v in ((mask_to_box(mask) or (0, 0, 0, 0)) if box is None else box))
    crop_h = y1 - y0
    rows = crop_h + (crop_h < height)
    columns = np.zeros((max(0, x1 - x0), max(0, rows)), dtype=np.int8)
    columns[:, :crop_h] = mask[y0:y1, x0:x1].T
    changes = np.flatnonzero(np.diff(columns.ravel(), prepend=0, append=0))
    if changes.size == 0:            # nothing inside the box: one run of zeros
        return np.array([height * width], dtype=np.uint32)
    starts = x0 * height + y0 + (changes // rows) * height + changes % rows
    if starts[-1] < height * width:
        starts = np.append(starts, height * width)
    return np.diff(starts, prepend=0).astype(np.uint32)


WHOLE_RLE_SHARE = 0.3   # a box over this share of the picture: pycocotools encodes the whole mask


def encode_mask_rle(mask: np.ndarray, box: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO compressed RLE `{"size": [H, W], "counts": str}` of `[H, W] bool`.

    Identical to `pycocotools.mask.encode(np.asfortranarray(mask))` with the
    counts decoded to ASCII, but cost scales with the object's bounding box
    rather than the image (given as `box`, see `rle_run_lengths`, or found);
    pycocotools only does the string compression. A box over `WHOLE_RLE_SHARE`
    of the picture is left to pycocotools' own encoder, faster there.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    if box is None:
        box = mask_to_box(mask) or (0, 0, 0, 0)
    if (box[2] - box[0]) * (box[3] - box[1]) > WHOLE_RLE_SHARE * height * width:
        rle = mask_util.encode(np.asfortranarray(mask.view(np.uint8))[:, :, None])[0]
    else:
        rle = mask_util.frPyObjects({'size': [height, width], 'counts': rle_run_lengths(mask, box)}, height, width)
    return {'size': [height, width], 'counts': rle['counts'].decode('ascii')}


def instances_to_coco(
    image_id: int,
    masks: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    label_to_category_id: Mapping[int, int | None] | Sequence[int | None],
    boxes: np.ndarray | None = None,
    file_name: str | None = None,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """COCO result records for one image.

    `masks` `[N, H, W] bool`, `labels` `[N] int` (contiguous model labels),
    `scores` `[N] float`; `label_to_category_id[label]` gives the COCO
    category id (None: a class the annotation file lacks, whose instances are left
    out); `boxes` `[N, 4]` the masks' tight half-open x0, y0, x1, y1 boxes
    (zeros when empty) if known, so only they are read. Each record is
    `{image_id, category_id, segmentation, score, bbox}`, then `file_name` when given and
    `category_name` (`class_names[label]`) when `class_names` is given, as
    `demo.py --save-json` writes them.
    """
    if boxes is None:
        boxes = masks_to_boxes(masks)
    records = []
    for mask, label, score, box in zip(masks, labels, scores, boxes):
        category = label_to_category_id[int(label)]
        if category is None:
            continue
        record = {
            'image_id': int(image_id),
            'category_id': int(category),
            'segmentation': encode_mask_rle(mask, box),
            'score': float(score),
            'bbox': coco_bbox(box),
        }
        if file_name is not None:
            record['file_name'] = file_name
        if class_names is not None:
            record['category_name'] = class_names[int(label)]
        records.append(record)
    return records


def mask_polygons(mask: np.ndarray, box: Sequence[int] | None = None) -> list[np.ndarray]:
    """The outer boundary of each 8-connected part of `[H, W] bool` `mask` as `[K, 2] int32`
    polygon vertices (x, y) in picture pixels (`cv2.findContours`, `RETR_EXTERNAL`,
    `CHAIN_APPROX_SIMPLE`: the corners of the boundary's straight runs; holes are not
    traced); [] for an empty mask. `box`: the mask's tight half-open x0, y0, x1, y1, so
    only it is read (found when not given)."""
    box = mask_to_box(mask) if box is None else box
    if box is None or box[2] <= box[0] or box[3] <= box[1]:
        return []
    x0, y0, x1, y1 = (int(v) for v in box)
    contours, _ = cv2.findContours(np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
    return [contour.reshape(-1, 2) for contour in contours]


def write_json(records: Any, path: str | PathLike[str]) -> None:
    """Write `records` as JSON atomically (`data.files.atomic_write`), creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps(records).encode('utf-8'))
