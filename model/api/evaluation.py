"""``evaluate``: COCO mask AP of a ``Segmenter`` on an annotated image set, as eval.py prints it."""
from typing import Callable, Dict, Optional

from solov2.core.errors import InputError
from solov2.model.distributed import SINGLE, Processes
from solov2.model.inference.evaluation import evaluation_dataset, score_coco


def evaluate(segmenter, ann: str, images: str, progress: Optional[Callable[[int], None]] = None,
             processes: Processes = SINGLE) -> Dict[str, float]:
    """Mask AP of ``segmenter`` (a ``model.api.Segmenter``) on the COCO-format set ``ann``
    (annotation file) / ``images`` (folder): the 12 COCO numbers in percent (0-100) by name
    (AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl), as eval.py prints them; 0 for every
    number when nothing is detected. ``progress(1)`` is called after each image. Under
    ``paddle.distributed.launch`` pass ``processes=model.distributed.start_processes(device)``:
    each process predicts its share of the images, process 0 scores them all, and every
    process returns its numbers. Categories are matched by name; classes the set has no
    instance of are not scored (one log line says which)."""
    dataset = evaluation_dataset(ann, images, segmenter.class_names)
    if not dataset.coco.getImgIds():
        raise InputError(f'{ann} lists no images — nothing to evaluate; give an annotation file with images')
    stats = score_coco(segmenter.backend, dataset.coco, str(dataset.image_dir), dataset.label_to_category_id,
                       progress, processes)
    return {name: 100 * value for name, value in stats.items()}
