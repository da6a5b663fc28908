"""Scoring: COCO mask AP of result records on a COCO-format annotation file: pycocotools' COCOeval,
or faster-coco-eval's ``COCOeval_faster`` (C++, the same numbers to 1e-15 and 2.5-3.5x
faster on 5,000 images, docs/evaluation.md) when that package is installed."""
import contextlib
import io
import math
from importlib.util import find_spec
from pathlib import PurePosixPath
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.core.errors import InputError

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')
REDO = 'score it against the annotations it was made for'     # matched_results' advice


def by_position(coco: COCO) -> COCO:
    """``coco`` with its images, categories and annotations numbered 1, 2, ... in the file's order, each keeping
    the file's id as ``file_id``: what both evaluators are fed. An id is a name to the file's writer, any
    integer; pycocotools stores a match as the matched annotation's id and reads 0 as none (an annotation of
    id 0 was never matched), faster-coco-eval takes no negative image id. InputError naming an image without an
    integer height and width (polygons are rasterised at them)."""
    unsized = next((image for image in coco.dataset['images'] if not all(
        isinstance(image.get(side), int) for side in ('height', 'width'))), None)
    if unsized is not None:         # pycocotools rasterises polygons at the image's size
        raise InputError(f"the annotation file gives image {unsized['id']} ({unsized.get('file_name')}) no integer "
                         'height and width — mask AP needs them: add them, or give eval.py the pictures (--images), '
                         'which it reads them from')
    images = {image['id']: n for n, image in enumerate(coco.dataset['images'], start=1)}
    categories = {category['id']: n for n, category in enumerate(coco.dataset['categories'], start=1)}
    positional = COCO()
    positional.dataset = {
        **coco.dataset,
        'images': [{**image, 'id': images[image['id']], 'file_id': image['id']} for image in coco.dataset['images']],
        'categories': [{**category, 'id': categories[category['id']], 'file_id': category['id']}
                       for category in coco.dataset['categories']],
        'annotations': [{**ann, 'id': n, 'file_id': ann['id'], 'image_id': images[ann['image_id']],
                         'category_id': categories[ann['category_id']]}
                        for n, ann in enumerate(coco.dataset.get('annotations', []), start=1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        positional.createIndex()
    return positional


def positional_records(positional: COCO, records: Sequence[dict]) -> List[dict]:
    """Copies of result ``records`` (of the file's ids) with the image and category ids of ``positional``
    (``by_position``)."""
    images = {image['file_id']: image['id'] for image in positional.dataset['images']}
    categories = {category['file_id']: category['id'] for category in positional.dataset['categories']}
    return [{**record, 'image_id': images[record['image_id']], 'category_id': categories[record['category_id']]}
            for record in records]


def run_cocoeval(coco: COCO, records: List[dict], iou_type: str = 'segm',
                 image_ids: Optional[Sequence[int]] = None) -> COCOeval:
    """Evaluated and accumulated COCOeval (``iou_type`` 'segm' or 'bbox') of ``records`` on ``coco``, both
    numbered by position (``by_position``; ``per_class_ap`` gives the file's ids back): faster-coco-eval's
    when installed (its summary to stdout like pycocotools', not to its logger), else pycocotools'; records
    without ``bbox`` get the box of their mask. ``records`` stay as they are (``loadRes`` changes the dicts
    it is given, which broke a second evaluation of the same list). ``image_ids`` (the file's) restricts it
    to those images (default: every image of ``coco``)."""
    positional = by_position(coco)
    with contextlib.redirect_stdout(io.StringIO()):
        results = positional.loadRes(positional_records(positional, records))
        if find_spec('faster_coco_eval') is not None:
            from faster_coco_eval import COCOeval_faster
            evaluator = COCOeval_faster(positional, results, iou_type, print_function=print)
        else:
            evaluator = COCOeval(positional, results, iou_type)
        if image_ids is not None:
            position = {image['file_id']: image['id'] for image in positional.dataset['images']}
            evaluator.params.imgIds = sorted(position[image_id] for image_id in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _names(records: Sequence[dict], key: str) -> Dict[str, List[int]]:
    """{name: the ids of the ``records`` (images or categories) of that ``key`` ('file_name', 'name')}; a name's
    bare file name too (a results file written from another folder), where no other record has it."""
    ids: Dict[str, List[int]] = {}
    for record in records:
        ids.setdefault(str(record.get(key)), []).append(record['id'])
    if key == 'file_name':
        bare: Dict[str, List[int]] = {}
        for record in records:
            bare.setdefault(PurePosixPath(str(record.get(key)).replace('\\', '/')).name, []).append(record['id'])
        ids = {**{name: found for name, found in bare.items() if len(found) == 1}, **ids}
    return ids


def _matched(record: dict, index: int, source: str, name_key: str, id_key: str, names: Dict[str, List[int]],
             known, what: str) -> int:
    """The annotation file's id of the image or category ``record`` names: by its ``name_key`` where it has one
    (the bare file name of a path too), else by its ``id_key``; InputError naming the record when the file has
    no such name or id."""
    name = record.get(name_key)
    if name is None:
        if record[id_key] not in known:
            has = ('which the annotation file does not have' if what == 'image' else
                   f"not one of the annotation file's {len(known)} (ids from {min(known, default=None)})")
            raise InputError(f'{source}: result {index} has {what} {record[id_key]!r}, {has} — {REDO}')
        return record[id_key]
    found = names.get(str(name)) or names.get(PurePosixPath(str(name).replace('\\', '/')).name, [])
    if len(found) > 1 and record[id_key] in found:         # a name the file gives twice: the id says which
        return record[id_key]
    if len(found) != 1:
        which = 'has several' if found else 'does not have'
        raise InputError(f'{source}: result {index} names {what} {name!r} ({id_key} {record[id_key]!r}); the '
                         f'annotation file {which} of that name — {REDO}')
    return found[0]


def matched_results(coco: COCO, records, source: str) -> List[dict]:
    """Copies of the result ``records`` of ``source`` with the image and category ids of ``coco``: a record
    that carries ``file_name`` / ``category_name`` (the toolkit's own do) is matched by those names, one with
    bare ids by its ids (``_matched``). InputError naming the first record that cannot be scored: not a list of
    dicts with image_id, category_id, score (finite) and segmentation (an RLE of its image's size), or naming an
    image or category ``coco`` does not have."""
    if not isinstance(records, list):
        raise InputError(f'{source} is not a list of COCO results — give a file written by '
                         'eval.py --save-json or demo.py --save-json')
    images, categories = _names(coco.dataset['images'], 'file_name'), _names(coco.dataset['categories'], 'name')
    matched = []
    for index, record in enumerate(records):
        missing = [k for k in ('image_id', 'category_id', 'score', 'segmentation')
                   if not isinstance(record, dict) or k not in record]
        if missing:
            raise InputError(f"{source}: result {index} has no {', '.join(missing)} — mask AP needs "
                             'image_id, category_id, score and segmentation in every result')
        if not isinstance(record['score'], (int, float)) or not math.isfinite(record['score']):
            raise InputError(f"{source}: result {index} has score {record['score']!r} — scores must be finite "
                             'numbers (a model that gave NaN needs fixing before it is scored)')
        image_id = _matched(record, index, source, 'file_name', 'image_id', images, coco.imgs, 'image')
        category_id = _matched(record, index, source, 'category_name', 'category_id', categories, coco.cats,
                               'category')
        image = coco.imgs[image_id]
        size = record['segmentation'].get('size') if isinstance(record['segmentation'], dict) else None
        if size not in (None, [image.get('height'), image.get('width')]) and 'height' in image and 'width' in image:
            raise InputError(f"{source}: result {index} has a mask of size {size!r} on a {image.get('height')}x"
                             f"{image.get('width')} image ({image.get('file_name')}) — {REDO}")
        matched.append({**record, 'image_id': image_id, 'category_id': category_id})
    return matched


def coco_stats(evaluator: COCOeval) -> Dict[str, float]:
    """The 12 summary numbers of an evaluated ``COCOeval`` by name: {'AP': ..., 'AP50': ...,
    ..., 'ARl': ...} (``STAT_NAMES``)."""
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(evaluator.stats))}


def evaluate_segm(coco: COCO, records: List[dict], iou_type: str = 'segm') -> Dict[str, float]:
    """COCOeval on ``records`` -> ``coco_stats`` (12 numbers by name); all zeros when there
    are no records."""
    return coco_stats(run_cocoeval(coco, records, iou_type)) if records else {name: 0.0 for name in STAT_NAMES}


def per_class_ap(evaluator: COCOeval) -> Dict[int, float]:
    """{category id (the annotation file's): AP over IoU 0.50:0.95, all areas, 100 detections} of a
    ``run_cocoeval``; NaN when the class has no ground truth."""
    precision = evaluator.eval['precision']          # [T, R, K, A, M]
    out = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        out[evaluator.cocoGt.cats[category]['file_id']] = float(values.mean()) if values.size else float('nan')
    return out
