"""The service as a Label Studio ML backend (docs/label_studio.md): Label Studio connected to
``http://HOST:PORT/label-studio`` calls these routes there, answered by the service's own predictor within its
limits (``Service.segment``); a refusal is logged at WARNING with its request id and reason (Label Studio shows
only its status).

``GET /health`` answers at once (Label Studio waits 1 s): 200 once the model is ready, else 503 with the reason;
with Label Studio's address and the token's kind and last refusal (``LabelStudioClient``). ``POST /setup`` maps
the project's labelling config (its ``PolygonLabels`` or ``BrushLabels`` tag; with both, the one
``label_studio_tag`` names) to the model's classes (``data.label_studio.class_indices``: case aside, or as a
label's ``predicted_values`` says), naming the labels left to people; 400 when none maps. ``POST /predict``
answers one result per task, in order: each task's picture fetched (from ``label_studio_url`` with the token, or a
file under ``label_studio_files``), segmented, its instances of the config's labels as polygons in percent or
brushes in Label Studio's RLE (``data.label_studio``), with scores, the picture's uncertainty as the prediction's
``score`` (``serving.uncertainty``) and the model version that made it, the JSON made in the
service's worker; an interactive request (a box or points drawn with a smart tool in ``params.context``) gets
the one instance the drawing holds (``prompted_prediction``); a task that fails gets an empty list (Label Studio
1.23 stores no prediction for it, and retrieves it again next time) and its reason in the log and the answer's
``errors``. ``POST /webhook`` takes Label
Studio's events: a training request (there or ``POST /train``) starts a training round (``serving.training``), or
answers the one running; a service without a versions folder or Label Studio's address gets 501 saying how to
fine-tune by hand. ``GET /versions``: the model version.
"""
import asyncio
import contextlib
import functools
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from solov2.api.segmenter import per_call_params
from solov2.core.errors import InputError
from solov2.data.label_studio import (
    LabelTag,
    Prompt,
    class_indices,
    encode_brush,
    label_tag,
    polygon_points,
    prompt_of,
    prompted_instance,
    region,
)
from solov2.data.polygons import mask_polygons
from solov2.serving.label_studio_client import LabelStudioClient
from solov2.serving.limits import HttpError, client_error, read_body
from solov2.serving.uncertainty import ranked

PREFIX = '/label-studio'
RETRY = {'Retry-After': '1'}
TRAINING = ('give it a versions folder and label_studio_url to train from Label Studio, or export the project as JSON, '
            'convert it with "solov2 labelstudio2coco" and fine-tune with "solov2 train" (docs/label_studio.md)')
LOG = logging.getLogger(__name__)
FAILED = b'[]'              # a failed task's result: Label Studio 1.23 stores no prediction of an empty list
PROMPT_SCORE = 0.02         # an interactive request's candidates: from this category score (the config's is 0.1)


class LoggedRoute(APIRoute):
    """A route whose refusals (``HttpError``, ``InputError``) are logged at WARNING with the request's id and
    reason before the service's handlers answer them: Label Studio shows only the status."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def logged(request: Request):
            try:
                return await handler(request)
            except (HttpError, InputError) as exc:
                refusal = client_error(exc) if isinstance(exc, InputError) else exc
                LOG.warning('%s Label Studio %s refused %d: %s', getattr(request.state, 'request_id', '-'),
                            request.url.path, refusal.status, refusal.message)
                raise
        return logged


def add_label_studio_routes(app: FastAPI, settings) -> None:
    """Mount the ML backend routes (module docstring) under ``PREFIX`` on the service's ``app``, Label Studio
    reached as ``settings`` say; its token is tried once as the app starts (``check_at_start``)."""
    client = app.state.label_studio = LabelStudioClient(settings.label_studio_url, settings.label_studio_token,
                                                        settings.timeout_s)
    check_at_start(app, client)
    router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=LoggedRoute)   # Label Studio's protocol

    @router.get('/health')
    async def health(request: Request):
        """Ready or not, at once: 200 ``{"status": "UP", ...}`` once the model is ready, else 503 with the reason;
        ``label_studio``: its address, the token's kind and last refusal."""
        service = request.app.state.service
        if service.problem is not None:
            raise HttpError(503, service.problem, RETRY, 'not ready')
        return {'status': 'UP', 'model_class': 'SOLOv2', 'model_version': model_version(service),
                **({'label_studio': client.state()} if client.url else {})}

    @router.post('/setup')
    async def setup(request: Request):
        """The project's labelling config (``schema``) checked against the model's classes; the model version and
        the labels left to people (``labels_not_predicted``)."""
        service, body = await ready_body(request)
        tag = label_tag(body.get('schema'), service.settings.label_studio_tag)
        mapping = class_indices(tag, service.model.class_names)
        if mapping.unmatched:
            LOG.info('%s Label Studio project %s: the %s tag %r labels %s are no class of this model: not predicted',
                     request.state.request_id, body.get('project'), tag.type, tag.name, ', '.join(mapping.unmatched))
        return {'model_version': model_version(service), 'labels_not_predicted': list(mapping.unmatched)}

    @router.post('/predict')
    async def predict(request: Request):
        """``{"results": [one prediction per task, in order], ...}`` for the ``tasks`` under ``label_config``."""
        service, body = await ready_body(request)
        return await predictions(service, client, body, request.state.request_id)

    @router.get('/versions')
    async def versions(request: Request):
        """The one model version served (Label Studio lists it in the project's model settings)."""
        service = request.app.state.service
        if service.segmenter is None:
            raise HttpError(503, service.problem, RETRY, 'not ready')
        return {'versions': [model_version(service)]}

    @router.post('/webhook')
    async def webhook(request: Request):
        """Label Studio's project events: ``START_TRAINING`` starts a training round (``training_started``), the
        others are taken and ignored."""
        service, body = await ready_body(request, need_model=False)
        if body.get('action') == 'START_TRAINING':
            project = body.get('project')
            return training_started(service, project.get('id') if isinstance(project, dict) else None)
        return {'status': 'ignored', 'action': body.get('action')}

    @router.post('/train')
    async def train(request: Request):
        """Label Studio's older training call (its project as ``"<id>.<time>"``): a training round."""
        service, body = await ready_body(request, need_model=False)
        return training_started(service, str(body.get('project', '')).split('.')[0])
    app.include_router(router)


def check_at_start(app: FastAPI, client: LabelStudioClient) -> None:
    """Try ``client``'s token once in a thread as ``app`` starts (its lifespan, wrapped): one WARNING line when
    Label Studio refuses it or cannot be reached, else one INFO line."""
    inner = app.router.lifespan_context

    def check() -> None:
        problem = client.check()
        if problem:
            LOG.warning('Label Studio token: %s', problem)
        elif client.url and client.token:
            LOG.info('Label Studio at %s takes the %s', client.url, client.kind)

    @contextlib.asynccontextmanager
    async def lifespan(started: Any) -> AsyncIterator[Any]:
        async with inner(started) as state:
            threading.Thread(target=check, name='solov2-label-studio-check', daemon=True).start()
            yield state
    app.router.lifespan_context = lifespan


def training_started(service, project: Any) -> dict:
    """``{"status": "started" or "running", "job": its number}`` for a training round of ``project`` (an id)
    (``TrainingJobs.start``); 501 naming what the service lacks to train, 400 without a project id."""
    problem = service.training.problem()
    if problem is not None:
        raise HttpError(501, f'{problem}: {TRAINING}')
    try:
        project_id = int(project)
    except (TypeError, ValueError):
        raise HttpError(400, f'the training request names no project id ({project!r})') from None
    job, started = service.training.start(project_id)
    return {'status': 'started' if started else 'running', 'job': job.id, 'project': job.project}


async def predictions(service, client: LabelStudioClient, body: dict, request_id: str) -> Response:
    """Label Studio's ``/predict`` answer for a request ``body``: each of its ``tasks`` segmented (at most
    ``min(max_batch, queue_size)`` at once) as a prediction of its ``label_config``'s tag, or, for an interactive
    request (a ``Prompt`` in ``params.context``), the one instance the prompt holds; the JSON bytes joined as
    they came from the service's worker; a task that fails ``FAILED``, its reason logged and in ``errors``."""
    tag = label_tag(body.get('label_config'), service.settings.label_studio_tag)
    labels = class_indices(tag, service.model.class_names).labels
    tasks = body.get('tasks')
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        raise HttpError(400, 'tasks is not a list of task objects')
    params = body.get('params')
    prompt = prompt_of(params.get('context') if isinstance(params, dict) else None, tag)
    room = asyncio.Semaphore(max(1, min(service.settings.max_batch, service.settings.queue_size)))
    version = model_version(service)
    asked = Asked(tag, functools.partial(ranked, encode=functools.partial(prediction, tag=tag, labels=labels),
                                         version=version), service.running.params, 0.0)    # scored by uncertainty
    if prompt is not None:
        asked = Asked(tag, functools.partial(prompted_prediction, tag=tag, labels=labels, prompt=prompt,
                                             version=version),
                      per_call_params(service.running.params, PROMPT_SCORE), 0.0)
    errors: dict[int, dict[str, Any]] = {}            # by the task's place: said in the tasks' order

    async def one(place: int, task: dict) -> bytes:
        async with room:
            try:
                return await task_prediction(service, client, task, asked)
            except HttpError as exc:
                where = task.get('data', {}).get(tag.data_key) if isinstance(task.get('data'), dict) else None
                LOG.warning('%s Label Studio task %s (%s) not predicted (%d): %s', request_id, task.get('id', '?'),
                            where, exc.status, exc.message)
                errors[place] = {'task': task.get('id'), 'status': exc.status, 'error': exc.message}
                return FAILED
    results = await asyncio.gather(*(one(place, task) for place, task in enumerate(tasks)))
    head = json.dumps({'model_version': version, 'errors': [errors[place] for place in sorted(errors)]})
    head = head[:-1].encode()                                                            # the object left open
    return Response(head + b', "results": [' + b','.join(results) + b']}', media_type='application/json')


@dataclass(frozen=True)
class Asked:
    """What a ``/predict`` request asks of each task: the config's ``tag``, ``encode`` (``Instances`` -> the
    prediction, in the worker), the network's ``params`` and the least score of the instances encoded."""
    tag: LabelTag
    encode: Callable
    params: Any
    min_score: float


def model_version(service) -> str:
    """The model version serving (``Service.version``); each prediction names the one that made it."""
    return service.version


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


async def task_prediction(service, client: LabelStudioClient, task: dict, asked: Asked) -> bytes:
    """One task's prediction, its JSON bytes made by the service's worker (``asked.encode``): its picture fetched
    and segmented within ``timeout_s``; HttpError with the reason (a timeout 504, bad input 400)."""
    try:
        return await asyncio.wait_for(segmented(service, client, task, asked), service.settings.timeout_s)
    except asyncio.TimeoutError:
        raise HttpError(504, f'no answer within {service.settings.timeout_s:g} s') from None
    except InputError as exc:
        raise client_error(exc) from None


async def segmented(service, client: LabelStudioClient, task: dict, asked: Asked) -> bytes:
    """A task's picture fetched (in a thread) and segmented, its instances scoring at least ``asked.min_score``
    answered as ``asked.encode`` makes them, in the service's worker."""
    data = await asyncio.to_thread(task_picture, service.settings, client, task, asked.tag)
    answer = await service.segment(data, asked.params, 'none', asked.min_score, form=asked.encode)
    return answer.body


def prediction(instances, tag: LabelTag, labels: dict[int, str], version: str) -> dict:
    """A picture's ``Instances`` as a Label Studio prediction of ``tag``'s regions (those of the classes in
    ``labels``, {class index: label value}), one region an instance where Label Studio allows it: a brush; or
    polygons in percent, a polygon per part (a Label Studio polygon has one ring), the first part's region id
    ``solov2_<i>`` the ``parentID`` of the others (Label Studio nests them under it; ``labelstudio2coco`` joins
    them into one instance); its score the mean of the regions'."""
    if tag.kind not in ('brush', 'polygon'):
        raise ValueError(f"a Label Studio region kind is 'brush' or 'polygon', not {tag.kind!r}")
    height, width = instances.image_size
    regions = []
    for index, (label, score) in enumerate(zip(instances.labels.tolist(), instances.scores.tolist())):
        if label not in labels:
            continue
        if tag.kind == 'brush':
            regions.append({'id': f'solov2_{index}', **region(tag, labels[label], score, height, width, {
                'format': 'rle', 'rle': encode_brush(instances.crops.paste(index))})})
            continue
        polygons = mask_polygons(instances.crops.crop(index), instances.crops.box(index))
        for part, polygon in enumerate(polygons):
            link = {'id': f'solov2_{index}'} if part == 0 else {'id': f'solov2_{index}_{part}',
                                                                'parentID': f'solov2_{index}'}
            regions.append({**link, **region(tag, labels[label], score, height, width,
                                             {'points': polygon_points(polygon, height, width), 'closed': True})})
    score = float(np.mean([one['score'] for one in regions])) if regions else 0.0
    return {'result': regions, 'score': round(score, 4), 'model_version': version}


def prompted_prediction(instances, tag: LabelTag, labels: dict[int, str], prompt: Prompt, version: str) -> dict:
    """An interactive request's prediction: the one instance among the picture's candidates (``Instances``, any
    class score) that ``prompt`` holds (``prompted_instance``), as ``prediction`` makes it, labelled with the
    prompt's label where ``tag`` has it (case aside), else as ``labels`` map its class; no region when none."""
    index = prompted_instance(instances.crops, instances.scores, prompt)
    if index is None:
        return {'result': [], 'score': 0.0, 'model_version': version}
    label = int(instances.labels[index])
    named = {value.casefold(): value for value in tag.values}.get((prompt.label or '').casefold())
    chosen = named or labels.get(label) or prompt.label or instances.class_names[label]
    return prediction(instances[[index]], tag, {label: chosen}, version)


def task_picture(settings, client: LabelStudioClient, task: dict, tag: LabelTag) -> bytes:
    """The encoded picture of a task: its ``data[tag.data_key]``, a Label Studio URL (``/data/...`` or one under
    ``label_studio_url``) fetched by ``client``, else a path under ``label_studio_files``."""
    where = (task.get('data') or {}).get(tag.data_key) if isinstance(task.get('data'), dict) else None
    if not isinstance(where, str) or not where:
        raise HttpError(400, f'it has no picture under data.{tag.data_key}')
    max_bytes = int(settings.max_body_mb * 2**20)
    if where.startswith(('http://', 'https://', '/data/')):
        data = client.fetch(client.address(where), max_bytes)
        if len(data) > max_bytes:
            raise HttpError(413, f'its picture {where} is over {max_bytes / 2**20:g} MB')
        return data
    return local_picture(settings.label_studio_files, where, max_bytes)


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
