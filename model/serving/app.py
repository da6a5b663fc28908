"""The service's ASGI application: ``create_app(settings)`` -> FastAPI (module docstring of
``solov2.model.serving``; docs/serving.md).

The model loads and warms up in a thread after start-up: ``/healthz`` answers at once,
``/readyz`` and ``/v1/segment`` only once it is ready (503 before). A segmentation request
is admitted while fewer than ``queue_size`` are in flight (503 with Retry-After otherwise),
read within ``max_body_mb``, decoded and prepared in a worker thread, run through the network
with the pictures of other requests that share its padded size (``batching.Batcher``),
post-processed and encoded in a worker thread, all within ``timeout_s`` (504 otherwise).
"""
import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Literal, Optional, Sequence

import cv2
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from solov2 import __version__
from solov2.core.errors import InputError
from solov2.model.api.segmenter import Segmenter, per_call_params, to_instances
from solov2.model.serving.batching import Batcher
from solov2.model.serving.limits import (
    HttpError,
    check_content_type,
    check_declared_length,
    decode_picture,
    read_body,
)
from solov2.model.serving.metrics import Metrics
from solov2.model.serving.schema import QUERY, Answer, picture_body, refusals

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """What a service runs and its limits. The model: ``Segmenter``'s arguments (``weights``,
    ``config``, ``backend``, ``model_dir``, ``precision``, ``device``, ``threads``,
    ``overrides``). Batching: at most ``max_batch`` pictures a network run, the oldest waiting
    at most ``max_wait_ms`` for others. Limits: ``queue_size`` requests in flight, bodies of
    ``max_body_mb``, pictures of ``max_pixels`` (0: the config's ``max_image_pixels``),
    ``timeout_s`` from a request's arrival to its answer. ``helper_threads``: the threads
    that decode and encode (0: one per core)."""
    weights: Optional[str] = None
    config: Optional[int] = None
    backend: str = 'auto'
    model_dir: Optional[str] = None
    precision: str = 'f32'
    device: Optional[str] = None
    threads: int = 0
    overrides: Sequence[str] = ()
    max_batch: int = 4
    max_wait_ms: float = 5.0
    queue_size: int = 16
    max_body_mb: float = 32.0
    max_pixels: int = 0
    timeout_s: float = 30.0
    helper_threads: int = 0

    def segmenter(self) -> Segmenter:
        """The model these settings name."""
        return Segmenter(self.weights, self.config, self.backend, self.model_dir, self.precision, self.device,
                         self.threads, list(self.overrides))


class Service:
    """One application's state: the model once loaded, its batcher, worker threads, metrics."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.segmenter: Optional[Segmenter] = None
        self.batcher: Optional[Batcher] = None
        self.problem: Optional[str] = 'the model is loading'
        self.in_flight = 0
        self.pool = ThreadPoolExecutor(settings.helper_threads or os.cpu_count() or 1, 'solov2-serve')
        self.metrics = Metrics(settings.max_batch, lambda: self.batcher.depth if self.batcher else 0)
        self.loaded = threading.Event()

    @property
    def max_pixels(self) -> int:
        return self.settings.max_pixels or self.segmenter.cfg.max_image_pixels

    def load(self) -> None:
        """Load the model and run one picture through it (in a thread; ``problem`` says why
        the service is not ready, None once it is)."""
        try:
            segmenter = self.settings.segmenter()
            self.batcher = Batcher(segmenter, self.settings.max_batch, self.settings.max_wait_ms / 1000,
                                   self.metrics.batch)
            self.segmenter = segmenter
            colour = cv2.imencode('.png', np.full((64, 64, 3), (40, 120, 200), np.uint8))[1].tobytes()
            asyncio.run(self.segment(colour, segmenter.backend.params, 'none'))
            self.problem = None
            LOG.info(f'ready: {segmenter!r}')
        except Exception as exc:  # said by /readyz and the log; the service stays up for /healthz
            self.problem = f'the model did not load: {exc}'
            LOG.exception(self.problem)
        finally:
            self.loaded.set()

    async def segment(self, data: bytes, params, masks: str, min_score: float = 0.0) -> Dict[str, Any]:
        """The JSON answer for an encoded picture: decoded and prepared in a worker thread,
        run in the batcher's next batch of its kind, post-processed and encoded in a worker
        (each stage timed in ``metrics``)."""
        loop = asyncio.get_running_loop()
        chw, meta = await loop.run_in_executor(self.pool, self.prepare, data)
        row = await asyncio.wrap_future(self.batcher.submit(chw, meta, params))
        return await loop.run_in_executor(self.pool, self.finish, row, meta, params, masks, min_score)

    def prepare(self, data: bytes):
        """(chw [3, Hp, Wp] float32, meta) of an encoded picture; HttpError 400 or 413."""
        with self.metrics.stage('decode'):
            return self.segmenter.backend.prepare(decode_picture(data, self.max_pixels))

    def finish(self, row, meta, params, masks: str, min_score: float) -> Dict[str, Any]:
        """The network's output for one picture -> its answer (``answer``)."""
        with self.metrics.stage('postprocess'):
            instances = to_instances(self.segmenter.backend, row, meta, params, min_score)
        with self.metrics.stage('encode'):
            return answer(instances, masks)

    def close(self) -> None:
        """Finish what is queued, stop the network thread and the workers."""
        if self.batcher is not None:
            self.batcher.close(self.settings.timeout_s)
        self.pool.shutdown(wait=True)

    def admit(self) -> None:
        """Count a segmentation request in; 503 when not ready or ``queue_size`` are in flight."""
        if self.problem is not None:
            raise HttpError(503, self.problem, {'Retry-After': '1'})
        if self.in_flight >= self.settings.queue_size:
            raise HttpError(503, f'busy: {self.in_flight} requests in flight, the most this service takes '
                                 '(its --queue-size); try again shortly', {'Retry-After': '1'})
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)


def answer(instances, masks: str) -> Dict[str, Any]:
    """``Instances.to_dict()``; with ``masks='polygons'`` each mask as ``polygons`` (flat
    [x0, y0, x1, y1, ...] lists, ``Instances.polygons``), with 'none' no masks."""
    result = instances.to_dict()
    outlines = instances.polygons() if masks == 'polygons' else None
    for index, one in enumerate(result['instances']):
        if masks != 'rle':
            del one['mask']
        if outlines is not None:
            one['polygons'] = [polygon.ravel().tolist() for polygon in outlines[index]]
    return result


def create_app(settings: ServeSettings, load_first: bool = False) -> FastAPI:
    """The service's ASGI application for ``settings`` (module docstring): serve it with
    uvicorn (``tools/serve.py``) or Ray Serve (``ray_deployment``). Its state is made when
    it starts (the ASGI lifespan), so the application itself holds only its routes. The
    model loads beside the running server, or with ``load_first`` before the start-up ends
    (for a host that sends traffic once a start-up has ended, as Ray Serve does)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service = app.state.service = Service(settings)
        threading.Thread(target=service.load, name='solov2-serve-load', daemon=True).start()
        if load_first:
            await asyncio.to_thread(service.loaded.wait)
        try:
            yield
        finally:
            await asyncio.to_thread(service.loaded.wait)
            await asyncio.to_thread(service.close)

    app = FastAPI(title='SOLOv2 instance segmentation', version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description='One shared SOLOv2 model; concurrent pictures of one padded size share a '
                                              'network run. This document: GET /openapi.json.')
    add_error_handlers(app)
    add_routes(app, settings)

    @app.middleware('http')
    async def count(request: Request, call_next):
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get('route')
        request.app.state.service.metrics.observe(getattr(route, 'path', 'other'), response.status_code,
                                                  time.perf_counter() - began)
        return response
    return app


def error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    """``{"error": message}`` with ``status``."""
    return JSONResponse({'error': message}, status, headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": "..."}``: the service's own (``HttpError``), a bad query
    parameter (400 naming it), a bad argument (InputError, 400), a malformed form (400)."""

    @app.exception_handler(HttpError)
    async def refused(request: Request, exc: HttpError):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [f'{".".join(str(part) for part in one["loc"])}: {one["msg"]}' for one in exc.errors()]
        return error(400, '; '.join(problems))

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError):
        return error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, 'headers', None))


def add_routes(app: FastAPI, settings: ServeSettings) -> None:
    """The service's routes (module docstring) and what the OpenAPI says of them (``schema``)."""

    @app.post('/v1/segment', openapi_extra=picture_body(settings.max_body_mb), responses={
        200: {'model': Answer}, **refusals(400, 408, 413, 415, 500, 503, 504, 'default')})
    async def segment(request: Request,
                      score_threshold: Optional[float] = Query(None, ge=0, le=1, description=QUERY['score_threshold']),
                      max_instances: Optional[int] = Query(None, ge=1, description=QUERY['max_instances']),
                      min_score: float = Query(0.0, ge=0, le=1, description=QUERY['min_score']),
                      masks: Literal['rle', 'polygons', 'none'] = Query('rle', description=QUERY['masks'])):
        """The instances of the picture sent (the body, or the field ``file`` of a form), as
        ``Instances.to_dict()``: masks as COCO RLE, ``polygons`` or none."""
        service: Service = request.app.state.service
        service.admit()
        try:
            params = per_call_params(service.segmenter.backend.params, score_threshold, max_instances)
            result = await asyncio.wait_for(segment_request(service, request, params, masks, min_score),
                                            service.settings.timeout_s)
        except asyncio.TimeoutError:
            raise HttpError(504, f"no answer within {service.settings.timeout_s:g} s (the service's --timeout-s)"
                                 ' — send a smaller picture or try again') from None
        finally:
            service.release()
        return JSONResponse(result)

    @app.get('/v1/model', responses=refusals(500, 503))
    async def model(request: Request):
        """The model served (config, classes, backend, weights) and the process that answered."""
        service: Service = request.app.state.service
        if service.segmenter is None:
            raise HttpError(503, service.problem or 'the model is loading', {'Retry-After': '1'})
        settings, seg = service.settings, service.segmenter
        return {'process': os.getpid(), 'config': seg.number, 'config_name': seg.cfg.__name__,
                'classes': list(seg.class_names), 'backend': seg.backend.name, 'weights': settings.weights,
                'model_dir': settings.model_dir, 'max_batch': settings.max_batch, 'max_pixels': service.max_pixels}

    @app.head('/healthz')
    @app.get('/healthz')
    async def healthz():
        """Alive: the process answers."""
        return {'alive': True}

    @app.head('/readyz', responses=refusals(503))
    @app.get('/readyz', responses=refusals(503))
    async def readyz(request: Request):
        """Ready: the model is loaded and warmed up (503 with the reason before)."""
        problem = request.app.state.service.problem
        return {'ready': True} if problem is None else error(503, problem, {'Retry-After': '1'})

    @app.get('/metrics', response_class=PlainTextResponse)
    async def metrics(request: Request):
        """The Prometheus metrics."""
        body, content_type = request.app.state.service.metrics.exposition()
        return Response(body, media_type=content_type)


async def segment_request(service: Service, request: Request, params, masks: str, min_score: float
                          ) -> Dict[str, Any]:
    """Read the request's picture within the limits, then segment it (``Service.segment``)."""
    max_bytes = int(service.settings.max_body_mb * 2**20)
    kind = check_content_type(request.headers.get('content-type'))
    check_declared_length(request.headers.get('content-length'), max_bytes)
    body = await read_body(request.stream(), max_bytes)
    if kind == 'multipart':
        body = await form_file(request, body)
    return await service.segment(body, params, masks, min_score)


async def form_file(request: Request, body: bytes) -> bytes:
    """The field ``file`` of a multipart form already read as ``body``; 400 without it."""
    async def replay():
        return {'type': 'http.request', 'body': body, 'more_body': False}

    async with Request(request.scope, replay).form() as form:
        upload = form.get('file')
        if upload is None or isinstance(upload, str):
            raise HttpError(400, 'the form has no file field "file": send the picture as -F file=@picture.jpg')
        return await upload.read()
