"""One training round from a Label Studio project (docs/label_studio.md, "Train from Label Studio"), the steps
``tools/training_round.py`` runs in a process of its own, which ``serving.training`` starts.

``Round``: Label Studio's address and the project, the serving version's checkpoint, the round's folder, its
threads, iterations and config overrides. ``run_round`` fetches the project's labelling config and its annotated
tasks (the export, JSON) and their pictures through Label Studio's API, holds out the tasks whose id ``held_out``
picks (fixed by the id, so rounds compare), has both parts converted to COCO (``convert``: as
``labelstudio2coco`` converts them), grows the class head for the project's labels the model lacks
(``grown_start``), fine-tunes from the serving version (``api.training.train``), then measures the mask AP of
both on the held-out part (``held_out_ap``); ``report(stage, message)`` hears each step.
"""
import dataclasses
import json
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

import numpy as np

from solov2.api.evaluation import evaluate
from solov2.api.segmenter import Segmenter
from solov2.api.training import TrainOptions, train
from solov2.config.sidecar import sidecar_path
from solov2.core.errors import InputError
from solov2.data.label_studio import class_indices, label_tag
from solov2.model.build import CLASS_HEAD
from solov2.model.checkpoint import load_paddle_params
from solov2.model.solov2_head import CATE_PRIOR
from solov2.serving.label_studio_client import LabelStudioClient

HELD_OUT_EVERY = 5          # a task is held out when the CRC-32 of its id is a multiple of this: about one in five
MAX_EXPORT = 512 * 2**20    # the most bytes of a project's export read
MAX_PICTURE = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Round:
    """What one round is given (``ROUND.json``)."""
    url: str                    # Label Studio's address
    project: int                # the project's id
    weights: str                # the serving version's checkpoint (its sidecar beside it)
    folder: str                 # the round's folder: pictures, exports, COCO files, the training run
    threads: int = 1            # CPU threads of its training and evaluation
    max_iters: int = 300        # training iterations
    overrides: Sequence[str] = ()   # config changes for the round (NAME=VALUE)
    timeout_s: float = 30.0     # each request to Label Studio


Report = Callable[[str, str], None]          # report(stage, message): a round's progress
Convert = Callable[[List[dict], Path, Path, Path, str], None]     # convert(tasks, images, classes, out, key)


def held_out(task_id: int) -> bool:
    """Whether the task ``task_id`` is in the held-out split: fixed by its id, whatever else the project holds."""
    return zlib.crc32(str(task_id).encode()) % HELD_OUT_EVERY == 0


def fetched_json(client: LabelStudioClient, where: str) -> Any:
    """The JSON at ``where`` (a path on Label Studio) through ``client``."""
    data = client.fetch(client.address(where), MAX_EXPORT)
    if len(data) > MAX_EXPORT:
        raise InputError(f'Label Studio answered more than {MAX_EXPORT >> 20} MB for {where}')
    return json.loads(data)


def project_classes(config: str, parent_classes: Sequence[str]) -> tuple[list[str], str, list[str]]:
    """(the round's classes: the parent's, each named as the project's label that maps to it, then the project's
    labels no class maps to (``class_indices``); the tag's data key; the new labels)."""
    tag = label_tag(config)
    mapping = class_indices(tag, parent_classes)
    classes = [mapping.labels.get(index, name) for index, name in enumerate(parent_classes)]
    return classes + list(mapping.unmatched), tag.data_key, list(mapping.unmatched)


def fetch_pictures(client: LabelStudioClient, tasks: List[dict], key: str, folder: Path) -> None:
    """Each task's picture (its ``data[key]``, a Label Studio URL) saved in ``folder`` under its URL's file name."""
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        where = str(task['data'][key])
        target = folder / Path(where.split('?')[0]).name
        if not target.is_file():
            data = client.fetch(client.address(where), MAX_PICTURE)
            target.write_bytes(data[:MAX_PICTURE])


def converted(tasks: List[dict], name: str, folder: Path, key: str, convert: Convert) -> Path:
    """``folder/data/<name>.json``: the COCO file of ``tasks`` (part of a JSON export) as ``convert`` makes it, the
    pictures in ``folder/images``, the classes in ``folder/data/classes.txt``, the picture under ``data[key]``."""
    out = folder / 'data' / f'{name}.json'
    convert(tasks, folder / 'images', folder / 'data' / 'classes.txt', out, key)
    return out


def grown_start(weights: str, classes: Sequence[str], out: Path) -> str:
    """A checkpoint ``out`` of the parent ``weights`` whose class head predicts ``classes``: a class the parent
    has keeps its rows, a new one starts as a new head's (weights N(0, 0.01), bias the prior ``CATE_PRIOR``,
    ``SOLOv2Head``); the parent's own when the classes are its."""
    sidecar = json.loads(sidecar_path(weights).read_text(encoding='utf-8'))
    parent = list(sidecar['class_names'])
    if parent == list(classes):
        return weights
    params = load_paddle_params(weights)
    weight, bias = params[CLASS_HEAD + 'weight'], params[CLASS_HEAD + 'bias']
    rng = np.random.default_rng(0)
    grown_w = rng.normal(0, 0.01, (len(classes),) + weight.shape[1:]).astype(weight.dtype)
    grown_b = np.full(len(classes), -np.log((1 - CATE_PRIOR) / CATE_PRIOR), bias.dtype)
    for index, name in enumerate(parent):
        if index < len(classes):
            grown_w[index], grown_b[index] = weight[index], bias[index]
    params = {**params, CLASS_HEAD + 'weight': grown_w, CLASS_HEAD + 'bias': grown_b}
    return write_grown(params, sidecar, classes, out)


def write_grown(params: Dict[str, np.ndarray], sidecar: dict, classes: Sequence[str], out: Path) -> str:
    """``params`` saved as ``out`` with the parent's ``sidecar`` naming ``classes``."""
    import paddle
    out.parent.mkdir(parents=True, exist_ok=True)
    paddle.save(cast(Any, params), str(out))     # numpy arrays, as save_checkpoint writes them
    sidecar_path(str(out)).write_text(json.dumps({**sidecar, 'num_classes': len(classes),
                                                  'class_names': list(classes)}, indent=1), encoding='utf-8')
    return str(out)


def gathered(job: Round, client: LabelStudioClient, folder: Path, convert: Convert,
             report: Report) -> tuple[Path, Path, dict]:
    """The project's annotated tasks fetched, split by ``held_out`` and converted: (training COCO, held-out COCO,
    facts: the task ids of each part, the classes, the new labels); InputError when a part would be empty."""
    parent = json.loads(sidecar_path(job.weights).read_text(encoding='utf-8'))['class_names']
    config = fetched_json(client, f'/api/projects/{job.project}')['label_config']
    classes, key, new = project_classes(config, parent)
    export = fetched_json(client, f'/api/projects/{job.project}/export?exportType=JSON&download_all_tasks=false')
    tasks = [task for task in export if any(not one.get('was_cancelled') for one in task.get('annotations') or [])]
    held = [task for task in tasks if held_out(int(task['id']))]
    training = [task for task in tasks if not held_out(int(task['id']))]
    if not held or not training:
        raise InputError(f'{len(tasks)} annotated tasks give {len(training)} to train on and {len(held)} held out '
                         f'(a task id in {HELD_OUT_EVERY} is): annotate more tasks')
    report('fetch', f'{len(tasks)} annotated tasks: {len(training)} to train on, {len(held)} held out; '
                    f'classes {", ".join(classes)}' + (f' (new: {", ".join(new)})' if new else ''))
    fetch_pictures(client, tasks, key, folder / 'images')
    (folder / 'data').mkdir(parents=True, exist_ok=True)
    (folder / 'data' / 'classes.txt').write_text('\n'.join(classes) + '\n', encoding='utf-8')
    facts = {'project': job.project, 'train_tasks': sorted(int(t['id']) for t in training),
             'held_out_tasks': sorted(int(t['id']) for t in held), 'classes': classes, 'new_labels': new}
    return (converted(training, 'train', folder, key, convert), converted(held, 'held_out', folder, key, convert),
            facts)


def held_out_ap(weights: str, held: Path, images: Path, threads: int) -> float:
    """Mask AP (percent) of the checkpoint ``weights`` on the held-out COCO file over every category with an
    instance there: ``api.evaluation.evaluate`` averages the categories the model has a class of, and a category
    it lacks (a new label, for the serving version) counts 0 in the mean, so both versions are scored on the
    same categories."""
    coco = json.loads(held.read_text(encoding='utf-8'))
    names = {category['id']: category['name'] for category in coco['categories']}
    present = {names[one['category_id']] for one in coco['annotations'] if not one.get('iscrowd')}
    with Segmenter(weights, backend='dygraph', threads=threads) as segmenter:
        known = present & set(segmenter.class_names)
        if not known:
            return 0.0
        return float(evaluate(segmenter, str(held), str(images))['AP']) * len(known) / len(present)


def run_round(job: Round, token: Optional[str], convert: Convert, report: Report) -> dict:
    """The round (module docstring), Label Studio reached with ``token``: its result (the trained weights, the
    data folder, both held-out APs, the facts a version records)."""
    began, folder = time.monotonic(), Path(job.folder)
    client = LabelStudioClient(job.url, token, job.timeout_s)
    train_ann, held, facts = gathered(job, client, folder, convert, report)
    start = grown_start(job.weights, facts['classes'], folder / 'start' / 'grown.pdparams')
    report('train', f'fine-tuning {job.max_iters} iterations on {job.threads} threads')
    data = [f'dataset_dir={str(folder)!r}', "train_ann='data/train.json'", "train_images='images'",
            "val_ann='data/held_out.json'", "val_images='images'", 'num_workers=0']
    summary = train(TrainOptions(weights=start, classes=str(folder / 'data' / 'classes.txt'),
                                 output=str(folder / 'run'), overrides=tuple(data) + tuple(job.overrides),
                                 max_iters=job.max_iters, threads=job.threads, device='cpu', log_every=10,
                                 checkpoint_every=job.max_iters))
    trained = str(summary.best_weights or summary.last_checkpoint / 'model.pdparams')
    report('evaluate', 'mask AP of the new and the serving version on the held-out tasks')
    new_ap = held_out_ap(trained, held, folder / 'images', job.threads)
    old_ap = held_out_ap(job.weights, held, folder / 'images', job.threads)
    return {'weights': trained, 'data': str(folder / 'data'), 'held_out_ap': new_ap, 'parent_held_out_ap': old_ap,
            'facts': {**facts, 'iterations': summary.iteration, 'minutes': (time.monotonic() - began) / 60},
            'train_ann': str(train_ann), 'held_out_ann': str(held)}
