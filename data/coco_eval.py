"""COCO mask AP for a Predictor on a COCO-format annotation file (pycocotools)."""
import contextlib
import io
import os
from typing import Dict, List, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from data.pipeline import Progress, run_pipeline
from data.results import instances_to_coco
from data.transforms import read_image

STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl',
              'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')


def predict_coco(predictor, coco: COCO, image_dir: str,
                 label_to_category_id: Sequence[int], progress: bool = False) -> List[dict]:
    """Run ``predictor`` on every image of ``coco`` -> COCO result records
    (RLE encoding and mask pasting happen in worker threads)."""
    records: List[dict] = []
    image_ids = sorted(coco.getImgIds())
    bar = Progress(len(image_ids), 'predict ') if progress else None

    def load(image_id):
        image = read_image(os.path.join(image_dir, coco.imgs[image_id]['file_name']))
        return predictor.prepare(image)

    def model(loaded):
        return predictor.infer([loaded[0]])[0]

    def finish(image_id, loaded, detections):
        result = predictor.finish(detections, loaded[1])
        records.extend(instances_to_coco(image_id, result.masks, result.labels, result.scores,
                                         label_to_category_id))
        if bar:
            bar.update()

    stats = run_pipeline(image_ids, load, model, finish)
    if bar:
        bar.close()
    if stats.failed:
        raise ValueError(f'{len(stats.failed)} images could not be read, e.g. {stats.failed[0]}')
    return records


def run_cocoeval(coco: COCO, records: List[dict], iou_type: str = 'segm') -> COCOeval:
    """Evaluated and accumulated pycocotools COCOeval (``iou_type`` 'segm' or 'bbox')."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco, coco.loadRes(records), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_segm(coco: COCO, records: List[dict], iou_type: str = 'segm') -> Dict[str, float]:
    """COCOeval on ``records`` -> {'AP': ..., 'AP50': ..., ...} (12 numbers); all zeros
    when there are no records."""
    if not records:
        return {name: 0.0 for name in STAT_NAMES}
    stats = run_cocoeval(coco, records, iou_type).stats
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(stats))}


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
