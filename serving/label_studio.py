"""The service as a Label Studio ML backend (docs/label_studio.md): Label Studio connected to
``http://HOST:PORT/label-studio`` calls these routes there, answered by the service's own predictor within its
limits (``Service.segment``).

``GET /health`` answers at once (Label Studio waits 1 s): 200 once the model is ready, else 503 with the reason.
``POST /setup`` maps the project's labelling config (its one ``PolygonLabels`` or ``BrushLabels`` tag) to the
model's classes by name, 400 naming the labels it cannot map; it answers the model version. ``POST /predict``
fetches each task's picture (from ``label_studio_url`` with the token the operator gave, or a file under
``label_studio_files``), segments it and answers its instances of the config's labels as polygons in percent or
brushes in Label Studio's RLE (``data.label_studio``), with scores and the model version. ``POST /webhook``
takes Label Studio's events and trains on none: a training request (there or ``POST /train``) gets 501 saying
how to fine-tune (export, ``solov2 labelstudio2coco``, ``solov2 train``). ``GET /versions``: the model version.
"""
import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pycocotools.mask as mask_util
from fastapi import APIRouter, FastAPI, Request

from solov2.core.errors import InputError
from solov2.data.label_studio import LabelTag, class_indices, encode_brush, label_tag, polygon_points, region
from solov2.data.polygons import mask_polygons
from solov2.data.results import SHOWN_MIN_SCORE
from solov2.serving.limits import HttpError, read_body

PREFIX = '/label-studio'
RETRY = {'Retry-After': '1'}
TRAINING = ('this backend does not train from Label Studio: export the project as JSON, convert it with '
            '"solov2 labelstudio2coco" and fine-tune with "solov2 train" (docs/label_studio.md)')


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: the token goes to the Label Studio the operator named, nowhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def add_label_studio_routes(app: FastAPI) -> None:
    """Mount the ML backend routes (module docstring) under ``PREFIX`` on the service's ``app``."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)      # Label Studio's protocol, not this API's

    @router.get('/health')
    async def health(request: Request):
        """Ready or not, at once: 200 ``{"status": "UP", ...}`` once the model is ready, else 503 with the reason."""
        service = request.app.state.service
        if service.problem is not None:
            raise HttpError(503, service.problem, RETRY, 'not ready')
        return {'status': 'UP', 'model_class': 'SOLOv2', 'model_version': model_version(service)}

    @router.post('/setup')
    async def setup(request: Request):
        """The project's labelling config (``schema``) checked against the model's classes; the model version."""
        service, body = await ready_body(request)
        class_indices(label_tag(body.get('schema')), service.segmenter.class_names)
        return {'model_version': model_version(service)}

    @router.post('/predict')
    async def predict(request: Request):
        """``{"results": [one prediction per task, in order]}`` for the ``tasks`` under ``label_config``."""
        return await predictions(*await ready_body(request))

    @router.get('/versions')
    async def versions(request: Request):
        """The one model version served (Label Studio lists it in the project's model settings)."""
        service = request.app.state.service
        if service.segmenter is None:
            raise HttpError(503, service.problem, RETRY, 'not ready')
        return {'versions': [model_version(service)]}

    @router.post('/webhook')
    async def webhook(request: Request):
        """Label Studio's project events, taken and ignored; ``START_TRAINING`` 501 (``TRAINING``)."""
        _, body = await ready_body(request, need_model=False)
        if body.get('action') == 'START_TRAINING':
            raise HttpError(501, TRAINING)
        return {'status': 'ignored', 'action': body.get('action'), 'reason': TRAINING}

    @router.post('/train')
    async def train():
        """Label Studio's older training call: 501 (``TRAINING``)."""
        raise HttpError(501, TRAINING)
    app.include_router(router)


async def predictions(service, body: dict) -> dict:
    """Label Studio's ``/predict`` answer for a request ``body``: each of its ``tasks`` segmented (at most
    ``min(max_batch, queue_size)`` at once) as a prediction of its ``label_config``'s tag; a task that fails fails
    them all (the others are cancelled)."""
    tag = label_tag(body.get('label_config'))
    labels = class_indices(tag, service.segmenter.class_names)
    tasks = body.get('tasks')
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise HttpError(400, 'tasks is not a list of task objects')
    room = asyncio.Semaphore(max(1, min(service.settings.max_batch, service.settings.queue_size)))
    version = model_version(service)

    async def one(task):
        async with room:
            return await task_prediction(service, task, tag, labels, version)
    jobs = [asyncio.ensure_future(one(task)) for task in tasks]
    try:
        return {'results': await asyncio.gather(*jobs), 'model_version': version}
    finally:                                    # a task that failed fails the batch: the others stop
        for job in jobs:
            job.cancel()


def model_version(service) -> str:
    """The model version Label Studio stores with each prediction: the config's name and the weights'
    (or exported model folder's) name."""
    spec = service.settings.model
    source = spec.weights or spec.model_dir
    return f'solov2-{service.segmenter.cfg.__name__}' + (f'-{Path(source).name}' if source else '')


async def ready_body(request: Request, need_model: bool = True) -> tuple[Any, dict]:
    """(the service, the request's JSON object read within the service's body limits); 503 before the model is
    ready (``need_model``), 400 when the body is not a JSON object."""
    service = request.app.state.service
    if need_model and service.problem is not None:
        raise HttpError(503, service.problem, RETRY, 'not ready')
    settings = service.settings
    with service.held('uploads'):
        body = await read_body(request.stream(), int(settings.max_body_mb * 2**20), settings.body_timeout_s,
                               settings.min_upload_kb_s * 1024)
    request.state.body_in = True
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise HttpError(400, 'the body is not a JSON object')
    return service, document


async def task_prediction(service, task: dict, tag: LabelTag, labels: dict, version: str) -> dict:
    """One task's prediction: its picture fetched and segmented within ``timeout_s``, its instances of ``labels``
    as ``tag``'s regions; an error names the task."""
    name = f"task {task.get('id', '?')}"
    try:
        answer = await asyncio.wait_for(segmented(service, task, tag), service.settings.timeout_s)
        return await asyncio.to_thread(prediction, answer, tag, labels, version)
    except asyncio.TimeoutError:
        raise HttpError(504, f'{name}: no answer within {service.settings.timeout_s:g} s') from None
    except InputError as exc:
        raise HttpError(400, f'{name}: {exc.args[0]}') from None
    except HttpError as exc:
        raise HttpError(exc.status, f'{name}: {exc.message}', exc.headers, exc.reason) from None


async def segmented(service, task: dict, tag: LabelTag) -> dict:
    """A task's picture fetched (in a thread) and segmented: ``Instances.to_dict('rle')`` of those scoring at
    least ``SHOWN_MIN_SCORE``."""
    data = await asyncio.to_thread(task_picture, service.settings, task, tag)
    answer = await service.segment(data, service.running.params, 'rle', SHOWN_MIN_SCORE)
    return json.loads(answer.body)          # the answer's JSON bytes, made in the service's worker


def prediction(answer: dict, tag: LabelTag, labels: dict, version: str) -> dict:
    """A picture's answer (``Instances.to_dict('rle')``) as a Label Studio prediction of ``tag``'s regions:
    polygons (an instance's every part) in percent, or brushes; its score the mean of the regions'."""
    if tag.kind not in ('brush', 'polygon'):
        raise ValueError(f"a Label Studio region kind is 'brush' or 'polygon', not {tag.kind!r}")
    height, width = answer['image_size']
    regions = []
    for record in answer['instances']:
        if record['label'] not in labels:
            continue
        mask = mask_util.decode(record['mask']).astype(bool)
        label, score = labels[record['label']], record['score']
        if tag.kind == 'brush':
            regions.append(region(tag, label, score, height, width, {'format': 'rle', 'rle': encode_brush(mask)}))
            continue
        x0, y0, x1, y1 = record['box']
        for polygon in mask_polygons(mask[y0:y1, x0:x1], record['box']):
            if len(polygon) >= 3:
                regions.append(region(tag, label, score, height, width,
                                      {'points': polygon_points(polygon, height, width), 'closed': True}))
    score = float(np.mean([one['score'] for one in regions])) if regions else 0.0
    return {'result': regions, 'score': round(score, 4), 'model_version': version}


def task_picture(settings, task: dict, tag: LabelTag) -> bytes:
    """The encoded picture of a task: its ``data[tag.data_key]``, a Label Studio URL (``/data/...`` or one under
    ``label_studio_url``) fetched with the token, else a path under ``label_studio_files``."""
    where = (task.get('data') or {}).get(tag.data_key) if isinstance(task.get('data'), dict) else None
    if not isinstance(where, str) or not where:
        raise HttpError(400, f'it has no picture under data.{tag.data_key}')
    max_bytes = int(settings.max_body_mb * 2**20)
    if where.startswith(('http://', 'https://', '/data/')):
        return download(label_studio_address(settings.label_studio_url, where), settings.label_studio_token,
                        max_bytes, settings.timeout_s)
    return local_picture(settings.label_studio_files, where, max_bytes)


def label_studio_address(base: Optional[str], where: str) -> str:
    """The full URL of a task's picture on the Label Studio at ``base``; 400 for one elsewhere or without ``base``."""
    if not base:
        raise HttpError(400, f'its picture {where} is on Label Studio, and this service was not given its address '
                             '(label_studio_url)')
    address = urllib.parse.urljoin(base.rstrip('/') + '/', where)
    if not address.startswith(base.rstrip('/') + '/'):
        raise HttpError(400, f'its picture {where} is not on the Label Studio this service fetches from ({base})')
    return address


def download(address: str, token: Optional[str], max_bytes: int, timeout_s: float) -> bytes:
    """The body at ``address``, fetched with ``Authorization: Token <token>`` (no redirect followed), at most
    ``max_bytes``; 502 when Label Studio cannot be reached or refuses, 413 over the size."""
    headers = {'Authorization': f'Token {token}'} if token else {}
    try:
        with urllib.request.build_opener(NoRedirect).open(urllib.request.Request(address, headers=headers),
                                                          timeout=timeout_s) as response:
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        hint = ': give the service a Label Studio API token (LABEL_STUDIO_API_KEY)' if exc.code in (401, 403) else ''
        raise HttpError(502, f'Label Studio answered {exc.code} for its picture {address}{hint}') from None
    except (urllib.error.URLError, OSError) as exc:
        raise HttpError(502, f'its picture {address} could not be fetched: {exc}') from None
    if len(data) > max_bytes:
        raise HttpError(413, f'its picture {address} is over {max_bytes / 2**20:g} MB')
    return data


def local_picture(root: Optional[str], where: str, max_bytes: int) -> bytes:
    """The file ``where`` inside the folder ``root`` (a relative path, or an absolute one inside it); 400 for
    one outside it, without ``root`` or missing."""
    if not root:
        raise HttpError(400, f'its picture {where} is a file path, and this service was not given a folder of '
                             'pictures to read (label_studio_files)')
    folder = Path(root).resolve()
    path = (folder / where).resolve()          # an absolute ``where`` stays itself
    if folder not in path.parents or not path.is_file():
        raise HttpError(400, f'its picture {where} is not a file in the folder of pictures this service reads')
    if path.stat().st_size > max_bytes:
        raise HttpError(413, f'its picture {where} is over {max_bytes / 2**20:g} MB')
    return path.read_bytes()
