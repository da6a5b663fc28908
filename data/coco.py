"""COCO-format instance dataset reader. A sample is `{'image': [H, W, 3] uint8 RGB, 'masks':
[N, H, W] uint8 0/1, 'labels': [N] int64, 'image_id': int, 'file_name': str}`."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from collections import Counter
from os import PathLike
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO

from solov2.core.errors import InputError, param
from solov2.data.transforms import DEFAULT_MAX_PIXELS, picture_size, read_image

logger = logging.getLogger(__name__)
_reported: set[str] = set()
_empty_reported: set[Any] = set()


def read_class_names(path: str | PathLike[str]) -> list[str]:
    """Class names in label order: from a text file such as classes.txt, one per line (blank
    lines skipped), or from a COCO annotation file (``.json``), its categories in id order (the
    classes it trains when no class list is given: CocoDataset's labels 0, 1, ...)."""
    if Path(path).suffix.lower() == '.json':
        categories = load_coco(path).dataset['categories']
        return [category['name'] for category in sorted(categories, key=lambda c: int(c['id']))]
    try:
        text = Path(path).read_text(encoding='utf-8')
    except OSError as err:
        raise InputError(f'cannot read class list {path}: {err}') from err
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f'class list {path} is empty')
    return names


def load_coco(ann_file: str | PathLike[str]) -> COCO:
    """Parse a COCO instance file into an indexed pycocotools `COCO`, without its stdout chatter: the one reader
    of COCO ground truth. Ids are names: any integer, 0 included, checked unique (`check_ids`; the scorer
    matches them by position, `data.scoring`); what the format lets a writer leave out is filled in
    (`normalise_annotation`: `iscrowd` 0, `area` and `bbox` from the segmentation); unusable annotations
    (`unusable_reason`) are left out, in one warning per file and process. InputError naming the record
    for what cannot be meant: a string or repeated id, an annotation on an image or of a category the file
    does not list."""
    path = Path(ann_file)
    if not path.is_file():
        raise InputError(f'annotation file not found: {path}')
    try:
        dataset = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f'cannot parse annotation file {path}: {err}') from err
    if not isinstance(dataset, dict):
        raise InputError(f'annotation file {path} is not a COCO object (its top level is a {type(dataset).__name__})')
    missing = [key for key in ('images', 'categories') if key not in dataset]
    if missing:
        raise InputError(f"annotation file {path} has no {', '.join(missing)}")
    check_ids(dataset, path)
    images = {image['id']: image for image in dataset['images']}
    dataset['annotations'] = [normalise_annotation(ann, images[ann['image_id']])
                              for ann in usable_annotations(dataset, path)]
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _integer_ids(records: Any, kind: str, plural: str, path: Path) -> set[int]:
    """The `id`s of `records` (a list of objects), InputError naming the first that is not an integer
    (an id written as a string, "4", matches no integer id; JSON's true is no id either) or is repeated."""
    if not isinstance(records, list):
        raise InputError(f'annotation file {path}: its {plural} are not a list')
    first: dict[int, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or type(record.get('id')) is not int:
            raise InputError(f'annotation file {path}: {kind} {repr(record)[:80]} has no integer id — '
                             f'COCO ids are integers ("id": 4, not "4")')
        if record['id'] in first:
            raise InputError(f"annotation file {path}: two {plural} have id {record['id']} (numbers "
                             f"{first[record['id']] + 1} and {index + 1} of the list) — each id names one {kind}")
        first[record['id']] = index
    return set(first)


def check_ids(dataset: Mapping[str, Any], path: Path) -> None:
    """InputError naming the first record whose id is not an integer or is repeated (images, categories,
    annotations), or an annotation whose `image_id` or `category_id` is not an integer or names an image or
    a category the file does not list. Any integer is an id, 0 and negative ones too."""
    image_ids = _integer_ids(dataset['images'], 'image', 'images', path)
    category_ids = _integer_ids(dataset['categories'], 'category', 'categories', path)
    annotations = dataset.get('annotations', [])
    _integer_ids(annotations, 'annotation', 'annotations', path)
    for ann in annotations:
        for key, known, what, verb, plural in (('image_id', image_ids, 'image', 'is on', 'images'),
                                               ('category_id', category_ids, 'category', 'has', 'categories')):
            if key not in ann:
                continue        # no category_id: unusable_reason leaves it out; no image_id: refused below
            if type(ann[key]) is not int:
                raise InputError(f"annotation file {path}: annotation {ann['id']} has {key} {ann[key]!r} — "
                                 f'COCO ids are integers (4, not "4")')
            if ann[key] not in known:
                raise InputError(f"annotation file {path}: annotation {ann['id']} {verb} unknown {what} {ann[key]}, "
                                 f"which the file's {plural} do not list — add the {what} or remove the annotation")
        if 'image_id' not in ann:
            raise InputError(f"annotation file {path}: annotation {ann['id']} has no image_id")


def normalise_annotation(ann: dict[str, Any], image: Mapping[str, Any]) -> dict[str, Any]:
    """`ann` with what COCO lets a writer leave out filled in, as pycocotools' `loadRes` fills results: `iscrowd`
    0, `area` (pixels) and `bbox` (`[x, y, w, h]`) of its mask; what the file gives is kept. A polygon on an
    image without `height`/`width` is measured on a canvas that holds it."""
    if 'iscrowd' in ann and 'area' in ann and 'bbox' in ann:
        return ann
    height, width = image.get('height'), image.get('width')
    if not isinstance(height, int) or not isinstance(width, int):
        polygons = [p for p in ann['segmentation'] if len(p) >= 6] if isinstance(ann['segmentation'], list) else []
        points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]) if polygons \
            else np.asarray([ann['segmentation']['size'][::-1]])
        width, height = (int(math.ceil(v)) + 1 for v in points.max(axis=0))
    rle = segmentation_to_rle(ann['segmentation'], height, width)
    return {'iscrowd': 0, 'area': float(mask_util.area(rle)), 'bbox': mask_util.toBbox(rle).tolist(), **ann}


def unusable_reason(ann: Mapping[str, Any], image: Mapping[str, Any]) -> str | None:
    """Why an annotation cannot be used ('no segmentation', 'empty polygons', ...), or None."""
    if 'category_id' not in ann:
        return 'no category_id'
    segmentation = ann.get('segmentation')
    if not segmentation:
        return 'no segmentation'
    if isinstance(segmentation, dict):
        size = [image.get('height'), image.get('width')]
        if 'counts' not in segmentation or 'size' not in segmentation:
            return 'RLE without counts or size'
        return 'RLE of another size than the image' if None not in size and list(segmentation['size']) != size else None
    if not isinstance(segmentation, list):
        return 'malformed segmentation'
    polygons = [polygon for polygon in segmentation if isinstance(polygon, list) and len(polygon) >= 6]
    if not polygons:
        return 'empty polygons'
    try:
        points = np.concatenate([np.asarray(polygon, dtype=np.float64).reshape(-1, 2) for polygon in polygons])
    except (TypeError, ValueError):
        return 'malformed polygon'
    if not np.isfinite(points).all():
        return 'malformed polygon'
    width, height = image.get('width', np.inf), image.get('height', np.inf)
    low, high = points.min(axis=0), points.max(axis=0)
    return 'outside the image' if high[0] <= 0 or high[1] <= 0 or low[0] >= width or low[1] >= height else None


def usable_annotations(dataset: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    """The annotations of `dataset` that can be used; the others are counted by reason and
    reported in one warning (as unreadable images are)."""
    images = {img['id']: img for img in dataset['images']}
    kept, skipped, examples = [], Counter(), {}
    for ann in dataset.get('annotations', []):
        reason = unusable_reason(ann, images[ann['image_id']])
        if reason is None:
            kept.append(ann)
        else:
            skipped[reason] += 1
            examples.setdefault(reason, []).append(str(ann['id']))
    if skipped and str(path.resolve()) not in _reported:      # once per file and process
        _reported.add(str(path.resolve()))
        reasons = '; '.join(f'{count} {reason} (id {", ".join(examples[reason][:3])}'
                            f'{", ..." if count > 3 else ""})' for reason, count in skipped.most_common())
        logger.warning('%s: skipped %d of %d annotations that cannot be used: %s', path,
                       sum(skipped.values()), len(dataset.get('annotations', [])), reasons)
    return kept


def check_picture_sizes(coco: COCO, image_dir: str | PathLike[str], ann_file: str | PathLike[str],
                        image_ids: Sequence[int] | None = None) -> None:
    """InputError naming the first picture of `coco` (of `image_ids`: default all) in `image_dir` whose size as it
    is read (`picture_size`: EXIF orientation applied, as training reads it) is not the width and height `ann_file`
    gives it: a picture resized, or turned, after it was labelled, whose masks would be scored or trained on another
    grid. Only headers are read; a picture that is absent or unreadable is left to the reader's own message. An
    image the file gives no width or height gets its picture's (the scorer needs them)."""
    for image in coco.dataset['images'] if image_ids is None else [coco.imgs[i] for i in image_ids]:
        stated = (image.get('height'), image.get('width'))
        path = Path(image_dir) / str(image.get('file_name'))
        size = picture_size(path)
        if size is not None and None in stated:
            image.update(height=size[0], width=size[1])
        elif size is not None and size != stated:
            raise InputError(f"picture {path} is {size[1]}x{size[0]} as read (EXIF orientation applied), but "
                             f"{ann_file} says image {image['id']} is {stated[1]}x{stated[0]} — label it again at its "
                             'size, or give the pictures it was labelled on')


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Compressed RLE at `height` x `width` of a COCO segmentation, as `COCO.annToRLE` makes it:
    polygons `[[x0, y0, x1, y1, ...], ...]` merged into one mask (fewer than 3 points ignored),
    uncompressed RLE (`counts` a list) or compressed RLE."""
    if isinstance(segmentation, list):
        polygons = [list(map(float, poly)) for poly in segmentation if len(poly) >= 6]
        if not polygons:
            return mask_util.encode(np.zeros((height, width), dtype=np.uint8, order='F'))
        return mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    if list(segmentation['size']) != [height, width]:
        raise InputError(f"RLE size {segmentation['size']} differs from image size {[height, width]}")
    counts_list = isinstance(segmentation['counts'], list)        # uncompressed RLE: pycocotools compresses it
    return mask_util.frPyObjects(segmentation, height, width) if counts_list else segmentation


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (see `segmentation_to_rle`) to `[height, width] uint8` 0/1."""
    return np.ascontiguousarray(mask_util.decode(segmentation_to_rle(segmentation, height, width)), dtype=np.uint8)


def category_ids_by_name(categories: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                         allow_missing: bool = False) -> list[int | None]:
    """COCO category id of each of `class_names`, matched by category name; with
    `allow_missing`, None for a name no category has (else InputError naming them)."""
    ids_of: dict[str, list[int]] = {}
    for category in categories:
        ids_of.setdefault(category['name'], []).append(int(category['id']))
    missing = [name for name in class_names if name not in ids_of]
    if missing and not allow_missing:
        shown = ', '.join(missing[:5]) + (f' and {len(missing) - 5} more' if len(missing) > 5 else '')
        raise InputError(
            f"class names not in the annotation file: {shown} (it has: {', '.join(sorted(ids_of))}) — "
            'name only classes it has, or leave ', param('classes'), ' and num_classes/class_names out to '
            'take its own'
        )
    ambiguous = [name for name in class_names if len(ids_of.get(name, ())) > 1]
    if ambiguous:
        raise InputError(f"several categories share the names: {', '.join(ambiguous)}")
    return [ids_of[name][0] if name in ids_of else None for name in class_names]


def check_annotation_categories(annotations: Sequence[Mapping[str, Any]], label_of: Mapping[int, int],
                                category_names: Mapping[int, str]) -> None:
    """Raise `InputError` naming the first annotation whose category is not a mapped class."""
    for ann in annotations:
        category_id = ann['category_id']
        if category_id not in label_of:
            name = category_names.get(category_id)
            known = f' ({name!r}, not in class_names)' if name is not None else ''
            raise InputError(f"annotation {ann.get('id')} of image {ann.get('image_id')} "
                             f"refers to unknown category {category_id}{known}")


class CocoDataset:
    """Instance samples from a COCO annotation file and its image folder.

    Labels are 0-based: category ids in ascending order, or each category's name's position in
    `class_names` (`read_class_names` reads a classes.txt); with `allow_missing` (evaluation),
    names the file lacks have no category and the file's other categories are dropped with their
    annotations (``other_categories``). Crowd annotations are not instances (never decoded);
    unusable ones are skipped (`load_coco`), empty ones dropped. `keep_empty=False` skips images
    without instances; `require_instances` refuses a set without any; images over `max_pixels`
    are unreadable samples."""

    def __init__(self, ann_file: str | PathLike[str], image_dir: str | PathLike[str],
                 class_names: Sequence[str] | None = None, keep_empty: bool = True,
                 require_instances: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                 allow_missing: bool = False) -> None:
        self.coco = load_coco(ann_file)
        self.max_pixels = max_pixels
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise InputError(f'image directory not found: {self.image_dir}')
        categories = self.coco.dataset['categories']
        names_of = {int(c['id']): c['name'] for c in categories}
        if class_names is None:
            category_ids: list[int | None] = sorted(names_of)
            class_names = [names_of[cid] for cid in category_ids]
        else:
            category_ids = category_ids_by_name(categories, class_names, allow_missing)
        self.class_names = list(class_names)                # the class name of each label
        self.label_to_category_id = list(category_ids)      # None: a class the file has no category of
        self._label_of = {cid: label for label, cid in enumerate(category_ids) if cid is not None}
        self.other_categories = self._drop_categories(set(self._label_of)) if allow_missing else []
        check_annotation_categories(self.coco.dataset.get('annotations', []), self._label_of, names_of)
        self.image_ids = [int(img['id']) for img in self.coco.dataset['images']
                          if keep_empty or any(not a.get('iscrowd', 0) for a in self.coco.imgToAnns[img['id']])]
        if require_instances and not self.num_instances:
            raise InputError(f'{ann_file} has no usable instance in {len(self.image_ids)} images — '
                             'training needs annotated objects (see the skipped annotations above)')

    def _drop_categories(self, kept: set[int]) -> list[str]:
        """Drop the categories whose id is not in `kept`, and their annotations (the index is
        rebuilt); returns their names."""
        dataset = self.coco.dataset
        dropped = [c['name'] for c in dataset['categories'] if int(c['id']) not in kept]
        if dropped:
            dataset['categories'] = [c for c in dataset['categories'] if int(c['id']) in kept]
            dataset['annotations'] = [a for a in dataset.get('annotations', []) if a['category_id'] in kept]
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco.createIndex()
        return dropped

    @property
    def num_instances(self) -> int:
        """Non-crowd annotations of the kept images."""
        return sum(not a.get('iscrowd', 0) for i in self.image_ids for a in self.coco.imgToAnns[i])

    @property
    def classes_without_instances(self) -> list[str]:
        """The class names of which the kept images hold no (non-crowd) instance."""
        present = {a['category_id'] for i in self.image_ids for a in self.coco.imgToAnns[i] if not a.get('iscrowd', 0)}
        return [name for name, cid in zip(self.class_names, self.label_to_category_id) if cid not in present]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample dict of the `index`-th kept image; `InputError` (with the path) if unreadable."""
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info['file_name']
        image = read_image(path, self.max_pixels)
        height, width = image.shape[:2]
        if (info.get('height', height), info.get('width', width)) != (height, width):
            raise InputError(f"image {path} is {width}x{height} but the annotation file says "
                             f"{info.get('width')}x{info.get('height')}")
        masks, labels = self._decode_annotations(self.coco.imgToAnns[image_id], height, width)
        return {'image': image, 'masks': masks, 'labels': labels, 'image_id': image_id, 'file_name': info['file_name']}

    def _decode_annotations(self, annotations: Sequence[Mapping[str, Any]], height: int,
                            width: int) -> tuple[np.ndarray, np.ndarray]:
        """`([N, H, W] uint8 masks, [N] int64 labels)` of the non-crowd annotations of one image."""
        masks, labels = [], []
        for ann in annotations:
            if ann.get('iscrowd', 0):
                continue
            try:
                mask = segmentation_to_mask(ann['segmentation'], height, width)
            except ValueError as err:
                raise InputError(f"annotation {ann.get('id')} of image {ann['image_id']}: {err}") from err
            if mask.any():
                masks.append(mask)
                labels.append(self._label_of[ann['category_id']])
            elif ann.get('id') not in _empty_reported:      # once per annotation and process
                _empty_reported.add(ann.get('id'))
                logger.warning('annotation %s of image %s has no pixel in the image: left out', ann.get('id'),
                               ann['image_id'])
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=np.uint8)
        return stacked, np.asarray(labels, dtype=np.int64)
