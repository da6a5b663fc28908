"""Predictions of a backend over a COCO-format image set, as COCO result records."""
import os
from typing import Callable, List, Optional, Sequence

from pycocotools.coco import COCO

from solov2.config.errors import InputError
from solov2.data.coco import CocoDataset
from solov2.data.results import instances_to_coco
from solov2.data.transforms import read_image
from solov2.model.distributed import SINGLE, Processes, gather
from solov2.model.inference.pipeline import run_pipeline


def predict_coco(predictor, coco: COCO, image_dir: str, label_to_category_id: Sequence[int],
                 progress: Optional[Callable[[int], None]] = None, processes: Processes = SINGLE) -> List[dict]:
    """Run ``predictor`` on every image of ``coco`` -> COCO result records, image by image in
    image id order (an image's records in the predictor's order), whatever the threads'
    timing (RLE encoding and mask pasting happen in worker threads); ``progress(1)`` is
    called after each image. Under the launcher each of ``processes`` predicts its share
    (``Processes.share``) and every process returns the records of all images, gathered."""
    by_image = {}
    image_ids = processes.share(sorted(coco.getImgIds()))

    def load(image_id):
        image = read_image(os.path.join(image_dir, coco.imgs[image_id]['file_name']), predictor.cfg.max_image_pixels)
        return predictor.prepare(image)

    def model(loaded):
        return predictor.forward([loaded[0]])

    def finish(image_id, loaded, outputs):
        result = predictor.finish_outputs(outputs, loaded[1])
        by_image[image_id] = instances_to_coco(image_id, result.masks, result.labels, result.scores,
                                               label_to_category_id, result.boxes)
        if progress:
            progress(1)

    stats = run_pipeline(image_ids, load, model, finish)
    gathered, failed = {}, []
    for part, part_failed in gather((by_image, stats.failed), processes):     # every process fails alike
        gathered.update(part)
        failed.extend(part_failed)
    if failed:
        raise InputError(f'{len(failed)} images could not be read, e.g. {failed[0]}')
    return [record for image_id in sorted(gathered) for record in gathered[image_id]]


def predict_coco_dataset(predictor, ann: str, images: str, progress: Optional[Callable[[int], None]] = None):
    """(the loaded COCO annotations, result records) of ``predictor`` on every image of a
    COCO-format set, category ids mapped through the predictor's class names."""
    dataset = CocoDataset(ann, images, class_names=list(predictor.class_names))
    return dataset.coco, predict_coco(predictor, dataset.coco, images, dataset.label_to_category_id, progress)
