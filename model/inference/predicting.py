"""Predictions of a predictor (``pipeline.Predictor``) over a COCO-format image set, as COCO result records."""
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pycocotools.coco import COCO

from solov2.core.errors import InputError
from solov2.data.coco import CocoDataset, check_picture_sizes
from solov2.data.results import instances_to_coco
from solov2.data.scoring import evaluate_segm
from solov2.model.distributed import SINGLE, Processes, from_rank0, gather
from solov2.model.inference.pipeline import Predictor

logger = logging.getLogger(__name__)


class UnreadImages(InputError):
    """Images of a set that could not be read: ``failed`` [(image id, reason)] in image id order, and the
    records of every other image (``records``, as ``predict_coco`` returns them), kept for the caller."""

    def __init__(self, failed: List[Tuple[int, str]], records: List[dict]):
        super().__init__(f'{len(failed)} images could not be read, e.g. image {failed[0][0]}: {failed[0][1]}')
        self.failed, self.records = failed, records


def predict_coco(predictor: Predictor, coco: COCO, image_dir: str, label_to_category_id: Sequence[Optional[int]],
                 progress: Optional[Callable[[int], None]] = None, processes: Processes = SINGLE,
                 batch_size: int = 1) -> List[dict]:
    """``predictor`` on every image of ``coco`` -> COCO result records (with ``file_name`` and ``category_name``)
    in image id order, ``batch_size``
    images a network run (``Predictor.run_pictures``); ``progress(1)`` after each image. Under the
    launcher each process predicts its share and all return every record; ``UnreadImages`` (every
    process alike) when an image could not be read, holding the records of the others."""
    def read(image_id):
        return predictor.read(os.path.join(image_dir, coco.imgs[image_id]['file_name']))

    def finish(image_id, prepared, result):        # records that name their picture and class (scoring.matched_results)
        return instances_to_coco(image_id, result.masks, result.labels, result.scores, label_to_category_id,
                                 file_name=coco.imgs[image_id]['file_name'], class_names=predictor.engine.class_names)

    records, failed = [], []
    mine = processes.share(sorted(coco.getImgIds()))
    for image_id, done in predictor.run_pictures(mine, read, finish, batch_size=batch_size):
        failed.extend([(image_id, str(done))] if isinstance(done, Exception) else [])
        records.extend([] if isinstance(done, Exception) else done)
        if progress:
            progress(1)
    parts = gather((records, failed), processes)          # every process fails alike
    failed = sorted(failure for _, part in parts for failure in part)
    records = sorted((record for part, _ in parts for record in part), key=lambda record: record['image_id'])
    if failed:
        raise UnreadImages(failed, records)
    return records


def score_coco(predictor: Predictor, coco: COCO, image_dir: str, label_to_category_id: Sequence[Optional[int]],
               progress: Optional[Callable[[int], None]] = None, processes: Processes = SINGLE) -> Dict[str, float]:
    """COCO mask stats (fractions, 0-1, by name) of ``predictor`` on every image of ``coco``
    (``predict_coco``): under the launcher each of ``processes`` predicts its share, process 0
    scores the gathered records and every process returns its stats. All processes must call it."""
    records = predict_coco(predictor, coco, image_dir, label_to_category_id, progress, processes)
    return from_rank0(evaluate_segm(coco, records) if processes.main else None, processes)


def evaluation_dataset(ann: str, images: str, class_names: Sequence[str]) -> CocoDataset:
    """The COCO-format set ``ann`` (annotation file) / ``images`` (folder) to score a model of
    ``class_names`` on, its categories matched by name. Classes it has no instance of are not
    scored (COCO's AP averages the classes with ground truth), which one log line says;
    InputError when the folder lacks the set's images or one's size is not the file's (``check_picture_sizes``),
    before any model runs."""
    dataset = CocoDataset(ann, images, class_names=list(class_names), allow_missing=True)
    if all(category is None for category in dataset.label_to_category_id):
        raise InputError(f"{ann} has none of the model's classes ({', '.join(class_names)}); it has "
                         f"{', '.join(dataset.other_categories) or 'no categories'} "
                         "— score weights made for its classes, or rename the model's classes (class_names) to its own")
    listed = [dataset.coco.imgs[i]['file_name'] for i in sorted(dataset.coco.getImgIds())]
    absent = [name for name in listed if not (dataset.image_dir / name).is_file()]
    if absent:
        raise InputError(f'the images folder {images} lacks {len(absent)} of the {len(listed)} images {ann} lists '
                         f'(e.g. {absent[0]}) — give the folder that holds the pictures of that annotation file')
    check_picture_sizes(dataset.coco, images, ann)
    unscored = dataset.classes_without_instances
    if unscored and len(unscored) < len(class_names):
        kept = [name for name in class_names if name not in unscored]
        logger.info(f'{ann} has no annotations of {", ".join(unscored)}: scored on {", ".join(kept)}')
    if dataset.other_categories:
        logger.info(f'{ann}: {", ".join(dataset.other_categories)} not scored (not a class of the model)')
    return dataset
