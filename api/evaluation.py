"""``evaluate``: COCO mask AP in percent of a ``Segmenter`` (or a predictor) on an annotated image
set, as eval.py prints it and training's evaluation hook logs it."""
import functools
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

from solov2.core.errors import InputError
from solov2.model.distributed import SINGLE, Processes
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.predicting import evaluation_dataset, score_coco


@functools.lru_cache(maxsize=4)
def described_set(ann: str, images: str, class_names: Tuple[str, ...], version: tuple):
    """The CocoDataset of a set (``evaluation_dataset``), read and described once per
    ``version`` of its files (each one's full path and mtime), not at every evaluation."""
    return evaluation_dataset(ann, images, class_names)


def checked_set(ann: str, images: str, class_names: Sequence[str]):
    """The CocoDataset of the set ``ann`` / ``images`` for a model of ``class_names`` (``evaluation_dataset``: read,
    checked and described once per version of its files); InputError for a set that cannot be scored, which
    training asks before its first step."""
    version = tuple((str(Path(p).resolve()), Path(p).stat().st_mtime_ns) for p in (ann, images))
    return described_set(ann, images, tuple(class_names), version)


def evaluate(segmenter, ann: str, images: str, progress: Optional[Callable[[int], None]] = None,
             processes: Processes = SINGLE) -> Dict[str, float]:
    """Mask AP of ``segmenter`` (a ``solov2.api.Segmenter``, or a ``model.inference.pipeline.Predictor``)
    on the COCO-format set ``ann`` (annotation file) / ``images`` (folder): the 12 COCO numbers
    in percent (0-100) by name (AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl), as eval.py
    prints them; 0 for every number when nothing is detected. ``progress(1)`` is called after
    each image. Under ``paddle.distributed.launch`` pass
    ``processes=model.distributed.start_processes(device)``: each process predicts its share of
    the images, process 0 scores them all, and every process returns its numbers. Categories
    are matched by name; classes the set has no instance of are not scored (one log line says which)."""
    predictor = segmenter if isinstance(segmenter, Predictor) else segmenter.predictor
    dataset = checked_set(ann, images, predictor.engine.class_names)
    if not dataset.coco.getImgIds():
        raise InputError(f'{ann} lists no images — nothing to evaluate; give an annotation file with images')
    stats = score_coco(predictor, dataset.coco, str(dataset.image_dir), dataset.label_to_category_id, progress,
                       processes)
    return {name: 100 * value for name, value in stats.items()}
