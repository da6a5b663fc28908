"""Scoring: COCO mask AP of result records on a COCO-format annotation file: pycocotools' COCOeval,
or faster-coco-eval's ``COCOeval_faster`` (C++, the same numbers to 1e-15 and 2.5-3.5x
faster on 5,000 images, docs/evaluation.md) when that package is installed."""
import contextlib
import io
import math
from importlib.util import find_spec
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.core.errors import InputError

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')
REDO = 'score it against the annotations it was made for'     # check_results' advice


def run_cocoeval(coco: COCO, records: List[dict], iou_type: str = 'segm',
                 image_ids: Optional[Sequence[int]] = None) -> COCOeval:
    """Evaluated and accumulated COCOeval (``iou_type`` 'segm' or 'bbox'): faster-coco-eval's when
    installed (its summary to stdout like pycocotools', not to its logger), else pycocotools';
    records without ``bbox`` get the box of their mask. ``records`` stay as they are (``loadRes``
    changes the dicts it is given, which broke a second evaluation of the same list).
    ``image_ids`` restricts it to those images (default: every image of ``coco``)."""
    with contextlib.redirect_stdout(io.StringIO()):
        results = coco.loadRes([dict(record) for record in records])
        if find_spec('faster_coco_eval') is not None:
            from faster_coco_eval import COCOeval_faster
            evaluator = COCOeval_faster(coco, results, iou_type, print_function=print)
        else:
            evaluator = COCOeval(coco, results, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def check_results(coco: COCO, records, source: str) -> None:
    """InputError naming the first result record that cannot be scored against ``coco``: not a list of dicts
    with image_id, category_id (both of ``coco``), score and segmentation (an RLE of its image's size)."""
    if not isinstance(records, list):
        raise InputError(f'{source} is not a list of COCO results — give a file written by '
                         'eval.py --save-json or demo.py --save-json')
    for index, record in enumerate(records):
        missing = [k for k in ('image_id', 'category_id', 'score', 'segmentation')
                   if not isinstance(record, dict) or k not in record]
        if missing:
            raise InputError(f"{source}: result {index} has no {', '.join(missing)} — mask AP needs "
                             'image_id, category_id, score and segmentation in every result')
        if not isinstance(record['score'], (int, float)) or not math.isfinite(record['score']):
            raise InputError(f"{source}: result {index} has score {record['score']!r} — scores must be finite "
                             'numbers (a model that gave NaN needs fixing before it is scored)')
        if (image := coco.imgs.get(record['image_id'])) is None:
            raise InputError(f"{source}: result {index} is for image {record['image_id']!r}, which the annotation "
                             f'file does not have — {REDO}')
        if record['category_id'] not in coco.cats:
            raise InputError(f"{source}: result {index} has category {record['category_id']!r}, not one of the "
                             f"annotation file's {len(coco.cats)} (ids from {min(coco.cats, default=None)}) — {REDO}")
        size = record['segmentation'].get('size') if isinstance(record['segmentation'], dict) else None
        if size not in (None, [image['height'], image['width']]):
            raise InputError(f"{source}: result {index} has a mask of size {size!r} on a {image['height']}x"
                             f"{image['width']} image — {REDO}")


def coco_stats(evaluator: COCOeval) -> Dict[str, float]:
    """The 12 summary numbers of an evaluated ``COCOeval`` by name: {'AP': ..., 'AP50': ...,
    ..., 'ARl': ...} (``STAT_NAMES``)."""
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(evaluator.stats))}


def evaluate_segm(coco: COCO, records: List[dict], iou_type: str = 'segm') -> Dict[str, float]:
    """COCOeval on ``records`` -> ``coco_stats`` (12 numbers by name); all zeros when there
    are no records."""
    return coco_stats(run_cocoeval(coco, records, iou_type)) if records else {name: 0.0 for name in STAT_NAMES}


def per_class_ap(evaluator: COCOeval) -> Dict[int, float]:
    """{category id: AP over IoU 0.50:0.95, all areas, 100 detections}; NaN when the
    class has no ground truth."""
    precision = evaluator.eval['precision']          # [T, R, K, A, M]
    out = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        out[category] = float(values.mean()) if values.size else float('nan')
    return out
