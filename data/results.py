"""COCO-format result export: boxes from masks, fast RLE encoding, records and atomic JSON writing.

The per-instance record is declared once: ``RECORD_FIELDS`` (key, JSON type, meaning), then its mask in the form
asked, ``MASK_FIELDS`` (form, key, type, meaning; 'none': no mask). ``instance_records`` makes it, serving.schema
builds on it, tests/test_doc_lists.py tests it. ``COCO_KEYS``: a record's key as a COCO result record names it
(``instances_to_coco``); the others keep theirs (COCO results take extra keys): a field added to RECORD_FIELDS
reaches the COCO records with no change here.

``SHOWN_MIN_SCORE``: the least score of an instance shown to a person (the API's, the service's and the demo's
answers and drawings), as mmdetection's inferencer (0.3): at the defaults SOLOv2 also answers lower-scored
duplicates of another class (a 640x480 picture with 4 objects: 26 instances, the lowest 0.05). Evaluation and
COCO records keep every instance: AP needs the low scores."""

from __future__ import annotations

import json
import os
from os import PathLike
from typing import Any, Mapping, Sequence

import numpy as np
import pycocotools.mask as mask_util

from solov2.data.files import atomic_write
from solov2.data.masks import CroppedMasks, as_cropped
from solov2.data.polygons import mask_polygons

# A field here is in every record, with masks='none' too, which pastes no mask: one made from the mask is measured
# without pasting it, as the box is (docs/architecture.md, "add a field to each result")
RECORD_FIELDS = (('label', int, 'the index of its class in class_names'), ('name', str, 'its class name'),
                 ('score', float, 'its final score (after Matrix NMS)'),
                 ('box', list[int], 'x0, y0, x1, y1: half-open, tight around the mask'))
MASK_FIELDS = (('rle', 'mask', dict, 'with masks=rle (the default)'), ('polygons', 'polygons', list[list[float]],
               'with masks=polygons: each part of the mask as a flat [x0, y0, x1, y1, ...] list of its outline '
               '(data.polygons.mask_polygons)'))
MASK_KEYS = {form: key for form, key, _, _ in MASK_FIELDS}
COCO_KEYS = {'label': 'category_id', 'name': 'category_name', 'box': 'bbox', 'mask': 'segmentation'}
COCO_ORDER = ('image_id', 'category_id', 'segmentation', 'score', 'bbox')     # COCO's own keys first
MASK_FORMS = (*MASK_KEYS, 'none')
SHOWN_MIN_SCORE = 0.3


def coco_bbox(box: Sequence[int]) -> list[float]:
    """COCO `[x, y, w, h]` of a half-open `(x0, y0, x1, y1)` box: w and h count pixels,
    matching `pycocotools.mask.toBbox` of the mask."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def crop_run_lengths(crop: np.ndarray, box: Sequence[int], image_size: Sequence[int]) -> np.ndarray:
    """Column-major run lengths `[K] uint32`, as pycocotools counts them (a zero run first, maybe
    empty; none empty at the end), of the `image_size` (H, W) mask that is `[y1 - y0, x1 - x0] bool`
    `crop` inside `box` (x0, y0, x1, y1) and False elsewhere. Only the crop is read: column j is
    followed by one False slot for the rows outside it (none when it spans all rows), and a change
    at slot k of column j is a run boundary at full-image position (x0 + j) * H + y0 + k."""
    height, width = (int(v) for v in image_size)
    crop = np.asarray(crop, dtype=bool)
    crop_h, crop_w = crop.shape
    if crop.size == 0 or not crop.any():            # nothing inside the box: one run of zeros
        return np.array([height * width], dtype=np.uint32)
    spans = crop_h == height
    rows = crop_h + (not spans)
    k, j = np.divmod(np.flatnonzero(crop[1:] != crop[:-1]), crop_w)   # slot k + 1 of column j differs from slot k
    changes = [j * rows + k + 1]
    if spans:       # a column's first slot follows the previous column's last one
        changes.append(np.flatnonzero(crop[0] != np.concatenate([[False], crop[-1, :-1]])) * rows)
        changes.append(np.array([crop_w * rows] if crop[-1, -1] else [], dtype=np.int64))
    else:           # ... and the background slot, which follows the column's last row
        changes.append(np.flatnonzero(crop[0]) * rows)
        changes.append(np.flatnonzero(crop[-1]) * rows + crop_h)
    changes = np.sort(np.concatenate(changes))
    starts = int(box[0]) * height + int(box[1]) + (changes // rows) * height + changes % rows
    if starts[-1] < height * width:
        starts = np.append(starts, height * width)
    return np.diff(starts, prepend=0).astype(np.uint32)


def encode_crop_rle(crop: np.ndarray, box: Sequence[int], image_size: Sequence[int]) -> dict[str, Any]:
    """COCO compressed RLE `{"size": [H, W], "counts": str}` of the mask `crop_run_lengths` reads, at
    a cost that scales with the box rather than the image (pycocotools only compresses the counts):
    identical to `pycocotools.mask.encode(np.asfortranarray(mask))` with the counts decoded to ASCII.
    A whole `[H, W]` mask is its own crop to the box `(0, 0, W, H)`."""
    height, width = (int(v) for v in image_size)
    counts = crop_run_lengths(crop, box, (height, width))
    rle = mask_util.frPyObjects({'size': [height, width], 'counts': counts}, height, width)
    return {'size': [height, width], 'counts': rle['counts'].decode('ascii')}


def instance_records(masks: CroppedMasks, labels: np.ndarray, scores: np.ndarray,
                     class_names: Sequence[str] | None = None, form: str = 'rle') -> list[dict[str, Any]]:
    """The one per-instance record (`RECORD_FIELDS`) in plain JSON values for each of `masks` (`CroppedMasks`),
    `labels` `[N] int` and `scores` `[N] float` (`name`: None without `class_names`), and its mask in `form`
    (`MASK_FIELDS`): 'rle' `encode_crop_rle`, 'polygons' `mask_polygons` as flat lists, 'none' none (the boxes
    are then measured without making the crops, where `masks` can); ValueError for another `form`."""
    if form not in MASK_FORMS:
        raise ValueError(f"unknown mask form {form!r} (expected one of {', '.join(MASK_FORMS)})")
    records = []
    for index, (label, score) in enumerate(zip(labels, scores)):
        crop = None if form == 'none' else masks.crop(index)
        box = masks.box(index)
        values = (int(label), None if class_names is None else class_names[int(label)], float(score), list(box))
        record: dict[str, Any] = dict(zip((key for key, _, _ in RECORD_FIELDS), values))   # no strict=: Python 3.9
        if crop is not None:
            record[MASK_KEYS[form]] = encode_crop_rle(crop, box, masks.image_size) if form == 'rle' else \
                [polygon.ravel().tolist() for polygon in mask_polygons(crop, box)]
        records.append(record)
    return records


def instances_to_coco(image_id: int, masks: CroppedMasks | np.ndarray, labels: np.ndarray, scores: np.ndarray,
                      label_to_category_id: Mapping[int, int | None] | Sequence[int | None] | None = None,
                      file_name: str | None = None, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """COCO result records `{image_id, category_id, segmentation, score, bbox}`, every other field of the
    record under its own key (`COCO_KEYS`), then `file_name` and `category_name` when given, for one
    image, from `instance_records` of `masks` (`CroppedMasks` or `[N, H, W] bool`), `labels` `[N] int` and
    `scores` `[N] float`. `label_to_category_id[label]`: the category id (None: left out; default label + 1)."""
    records = []
    for one in instance_records(as_cropped(masks), labels, scores, class_names):
        category = one['label'] + 1 if label_to_category_id is None else label_to_category_id[one['label']]
        if category is not None:
            one.update(label=int(category), box=coco_bbox(one['box']))
            record = {'image_id': int(image_id), **{COCO_KEYS.get(key, key): value for key, value in one.items()}}
            name = record.pop('category_name')
            records.append({**{key: record.pop(key) for key in COCO_ORDER}, **record,
                            **({} if file_name is None else {'file_name': file_name}),
                            **({} if class_names is None else {'category_name': name})})
    return records


def write_json(records: Any, path: str | PathLike[str]) -> None:
    """Write `records` as JSON atomically (`data.files.atomic_write`), creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps(records).encode('utf-8'))
