"""The service's ASGI application: ``create_app(settings)`` -> FastAPI (docs/serving.md).

The model opens and warms up in a thread: ``/healthz`` answers at once, ``/readyz`` and
``/v1/segment`` 503 with the reason until it is ready and while stopping. A request is refused
(503) before its body is read while ``queue_size`` are in flight or ``max_uploads`` bodies are
coming; its body is read within the limits (408), then admitted by its cost: its share of the
predictor's in-flight budget taken at once, or 503 at once (it holds no slot waiting for memory);
then it goes through the predictor's stages (``Predictor.submit``: read in a worker, batched with
others of its padded size by the predictor's ``queue``, finished in a worker), all within
``timeout_s`` (504).
"""
import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Literal, Optional, Tuple, Union, cast

import cv2
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from solov2 import __version__
from solov2.api.segmenter import Segmenter, instances_of, per_call_params
from solov2.core.errors import InputError
from solov2.data.polygons import compile_tracer
from solov2.data.results import SHOWN_MIN_SCORE
from solov2.data.transforms import header_size
from solov2.model.inference.batching import Batching
from solov2.model.inference.memory import default_budget, pixels_within
from solov2.model.inference.pipeline import REFUSE, PipelineOptions, Predictor, Refused
from solov2.model.inference.spec import ModelSpec
from solov2.model.runtime import cpu_threads
from solov2.serving.admin import add_admin_routes
from solov2.serving.encoding import GZIP_BYTES, GZIP_LEVEL, answer_bytes
from solov2.serving.label_studio import add_label_studio_routes
from solov2.serving.limits import (
    MULTIPART,
    HttpError,
    check_content_type,
    check_declared_length,
    client_error,
    read_body,
)
from solov2.serving.liveness import Liveness
from solov2.serving.metrics import Metrics
from solov2.serving.schema import QUERY, Alive, Answer, Model, Ready, openapi_of, picture_body, refusals
from solov2.serving.settings import ServeSettings
from solov2.serving.switching import Served, Slot
from solov2.serving.training import TrainingJobs, add_training_routes
from solov2.serving.versions import VersionStore
from solov2.serving.wire import LOADING, STOPPING

LOG = logging.getLogger(__name__)
Form = Union[str, Callable[..., Any]]      # an answer's form: a name, or form(instances, version=...) making it
RETRY = {'Retry-After': '1'}
CLOSED = 'the model was closed by the program serving it (Segmenter.close): nothing serves requests'
REQUEST_ID = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")      # a sane X-Request-ID: an HTTP token, bounded
SLOTS = {'uploads': ('max_uploads', 'uploads being received', 1), 'in flight': ('queue_size', 'requests in flight', 1),
         'large in flight': ('queue_size', 'large pictures in flight', 2)}
ANSWER_FORMS = ('instances', 'coco', 'labelme')     # the ``format`` of ``/v1/segment`` (``answer_content``)
PROBES = ('/healthz', '/readyz', '/metrics')        # logged at debug level
PAGE = Path(__file__).resolve().parent / 'page'      # the page at / (index.html, its script and style)
PAGE_FILES = {'page.js': 'text/javascript', 'page.css': 'text/css'}
PAGE_HEADERS = {'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                                           "blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                           "frame-ancestors 'none'",
                'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-cache'}


class Service:
    """One application's state: the model (a ``Segmenter``, whose predictor batches, finishes and admits as the
    settings say; each request takes the predictor it has then, so a host's ``set_pipeline`` or ``close`` is seen by
    the next request), the requests held, metrics; ``on_loaded(service)``, called once the load ends, reports a
    ``failure`` itself (else the log does)."""

    def __init__(self, settings: ServeSettings, segmenter: Optional[Segmenter] = None,
                 on_loaded: Optional[Callable[['Service'], None]] = None):
        self.settings = settings
        self.given = segmenter          # the host's (never closed here), else the service opens its own
        self.slot = Slot()              # the model serving (``switching``), switched on the event loop
        self.loop: Optional[asyncio.AbstractEventLoop] = None      # the server's, set as it starts
        self.store = VersionStore(settings.versions) if settings.versions else None
        self.switching = threading.Lock()         # one switch of version at a time
        self.training = TrainingJobs(self)        # rounds of training from Label Studio
        self._problem: Optional[str] = LOADING
        self.failure: Optional[Exception] = None
        self.on_loaded = on_loaded
        self.replica = uuid.uuid4().hex[:12]     # tells replicas apart in /v1/model: no process id, no host
        self.counts = dict.fromkeys(SLOTS, 0)
        self.budget = default_budget() if settings.max_in_flight_mb is None else int(settings.max_in_flight_mb * 2**20)
        self.metrics = Metrics(settings.max_batch, self.pictures_waiting, self.bytes_in_flight, self.counts)
        self.loaded = threading.Event()
        self.liveness = Liveness(settings.timeout_s, self.bytes_in_flight)

    @property
    def segmenter(self) -> Optional[Segmenter]:
        """The segmenter serving (``slot``); before the model is loaded the host's, if it gave one, else None."""
        return self.slot.current.segmenter if self.slot.current is not None else self.given

    @property
    def predictor(self) -> Optional[Predictor]:
        """The predictor serving now (the metrics'): the segmenter's as it is now (a host's ``set_pipeline`` gives it
        a new one); None until the model is loaded and once its host closed it."""
        served = self.slot.current
        return None if served is None or served.segmenter.closed else served.predictor

    def bytes_in_flight(self) -> int:
        """Bytes the predictor serving holds for the pictures in flight (its budget's used part); 0 if none serves."""
        serving = self.predictor
        return serving.budget.used if serving is not None else 0

    def pictures_waiting(self) -> int:
        """Pictures read and waiting for the network of the predictor serving (its queue's depth); 0 if none serves."""
        serving = self.predictor
        return serving.queue.depth if serving is not None else 0

    @property
    def version(self) -> str:
        """The name of the model version serving (``versions``); RuntimeError before it is loaded."""
        if self.slot.current is None:
            raise RuntimeError(f'{LOADING}: no model version yet')
        return self.slot.current.version

    @property
    def model(self) -> Segmenter:
        """The segmenter ``load`` opened; RuntimeError before (requests are refused 503 until then)."""
        if self.segmenter is None:
            raise RuntimeError(f'{LOADING}: no segmenter yet')
        return self.segmenter

    @property
    def problem(self) -> Optional[str]:
        """Why it serves no request now (their 503's reason, ``/readyz``'s): loading, the model did not load,
        stopping, or its host closed the model; None when it serves."""
        if self._problem is None and self.segmenter is not None and self.segmenter.closed:
            return CLOSED
        return self._problem

    @problem.setter
    def problem(self, reason: Optional[str]) -> None:
        self._problem = reason

    @property
    def running(self) -> Predictor:
        """The segmenter's predictor as it is now (a host's ``set_pipeline`` gives it a new one); RuntimeError
        before the model is loaded, 503 once its host closed it."""
        if self.segmenter is not None and self.segmenter.closed:
            raise HttpError(503, CLOSED, RETRY, 'not ready')
        return self.model.predictor

    @property
    def max_pixels(self) -> int:
        """The pixel limit of the model serving (``pixel_limit``)."""
        return self.pixel_limit(self.model.cfg)

    def pixel_limit(self, cfg) -> int:
        """The pixel limit: ``max_pixels``, else the config's lowered to the pictures that fit the in-flight budget."""
        budget = self.budget
        if self.settings.max_pixels is not None or not (cfg.max_image_pixels and budget):
            return cfg.max_image_pixels if self.settings.max_pixels is None else self.settings.max_pixels
        return min(cfg.max_image_pixels, pixels_within(budget, cfg.test_short, cfg.test_max))

    def load(self) -> None:
        """Open the model unless it came opened and warm it up (in a thread: ``problem`` says why it is not ready)."""
        try:
            spec, version, given = self.starting_version()
            if given is not None:
                given.set_pipeline(self.pipeline())
            segmenter = given or Segmenter(spec, progress=self.exporting, pipeline=self.pipeline())
            served = Served(segmenter, version or legacy_version(spec, segmenter), owns=given is None)
            self.problem = f'{LOADING}: warming up (compiling what its batches will run)'
            self.warm_up(served)
            self.slot.put(served)
            self.metrics.engine(self.settings.model.backend, segmenter.backend, precision_of(segmenter,
                                                                                           self.settings.model))
            self.metrics.version(served.version)
            self.problem = None
            said = LOG.warning if self.fallback else LOG.info       # a slower engine than asked for: a warning
            said(f'ready: {segmenter!r}' + (f'; {self.fallback}' if self.fallback else ''))
        except Exception as exc:  # said by /readyz (and the log, or on_loaded); the service stays up for /healthz
            self.problem, self.failure = f'the model did not load: {exc}', exc
            if self.on_loaded is None:
                LOG.exception(self.problem)
        finally:
            self.loaded.set()
            if self.on_loaded is not None:
                self.on_loaded(self)

    def pipeline(self) -> PipelineOptions:
        """How pictures move through each model served: batching, reading and finishing threads, the budget."""
        settings, threads = self.settings, cpu_threads(self.settings.helper_threads)     # each stage's threads
        return PipelineOptions(Batching(settings.max_batch, settings.max_wait_ms / 1000, settings.max_padding,
                                        self.metrics.batch), threads, threads, self.budget)

    def starting_version(self) -> Tuple[ModelSpec, Optional[str], Optional[Segmenter]]:
        """(the model to open, its version's name, the host's segmenter or None): without a versions folder the
        model the settings name (None: named by ``legacy_version``); with one, the version ``serving.json``
        names, else (a new folder, or a host's segmenter) the settings' weights, added as a version when they are
        none (``VersionStore.of_weights``)."""
        spec, store = self.settings.model, self.store
        if store is None:
            return spec, None, self.given
        weights = str(spec.weights)
        if not Path(weights).is_file():
            raise InputError(f'weights file not found: {weights} (a versions folder keeps checkpoints: give the '
                             '.pdparams file)')
        given = store.of_weights(weights, f'the weights the service started with: {Path(weights).name}').name
        serving = store.serving()['serving']
        if serving is None or self.given is not None:
            if serving != given:
                store.served(given)
            return spec, given, self.given
        if serving != given:
            LOG.info(f'serving version {serving} of {store.root} (the one serving when the service last stopped; '
                     f'the weights given are version {given})')
        return dataclasses.replace(spec, weights=store.weights(serving)), serving, None

    def switch(self, name: Optional[str] = None) -> str:
        """Serve the version ``name`` of the versions folder (None: roll back to the one served before): open
        it, warm it up on the engine the service runs, then switch atomically on the event loop (``Slot.put``:
        requests in flight finish on the old model, the next go to the new); the name served. One switch at a
        time (InputError while another runs); a version that fails to open or warm up leaves the one serving."""
        store, loop = self.store, self.loop
        if store is None or loop is None:
            raise InputError('this service has no versions folder (versions): it serves one model')
        if not self.switching.acquire(blocking=False):
            raise InputError('a switch of version is under way: try again once it ends')
        try:
            rollback, name = name is None, store.previous() if name is None else name
            spec = dataclasses.replace(self.settings.model, weights=store.weights(name))
            served = Served(Segmenter(spec, pipeline=self.pipeline()), name)
            try:
                self.warm_up(served)
            except BaseException:
                served.close()
                raise
            asyncio.run_coroutine_threadsafe(self.put(served), loop).result()
            store.served(name, rollback)
            LOG.info(f'model version {name} serving' + (' (rolled back)' if rollback else ''))
            return name
        finally:
            self.switching.release()

    async def put(self, served: Served) -> None:
        """Make ``served`` the model serving (on the event loop: ``Slot.put``) and name it in the metrics."""
        self.slot.put(served)
        self.metrics.version(served.version)

    def exporting(self, stage: str, fraction: float) -> None:
        """``Segmenter``'s progress while ``auto`` exports, said by ``problem``."""
        self.problem = (f'{LOADING}: exporting it once for the faster engine ({stage}, {fraction:.0%}; '
                        'later starts load it from the cache)')

    @property
    def fallback(self) -> str:
        """Why the engine serving is not the one asked for (``Backend.fallback``); '' when it is."""
        return (self.segmenter and self.segmenter.backend.fallback) or ''

    def drain(self, timeout_s: float) -> None:
        """Stop taking requests (503) while the port stays open; wait until none is held, at most ``timeout_s``."""
        self.problem = STOPPING
        deadline = time.monotonic() + timeout_s
        while any(self.counts.values()) and time.monotonic() < deadline:
            time.sleep(0.02)

    def warm_up(self, served: Served) -> None:
        """Compile what ``served``'s engine will run and the polygon tracer's loops, then run a picture through,
        so that no request pays for a compile."""
        settings = self.settings
        served.segmenter.backend.compile_ahead(settings.max_batch, mixed=settings.max_padding > 0)
        compile_tracer()
        colour = cv2.imencode('.png', np.full((64, 64, 3), (40, 120, 200), np.uint8))[1].tobytes()
        asyncio.run(self.segment(colour, served.predictor.params, 'none', served=served))

    async def segment(self, data: bytes, params, masks: str, min_score: float = 0.0, form: Form = 'instances',
                      name: str = 'picture', gzipped: bool = False, served: Optional[Served] = None) -> Response:
        """The answer for an encoded picture (JSON, gzipped when ``gzipped`` says the client takes it and it is
        large; its bytes made in a worker, ``answer``): an in-flight slot, and a large picture one of their half
        (``SLOTS``; 503 when full), then the predictor's request (``Predictor.submit``) admitted by its cost with
        ``REFUSE``: its share of the predictor's budget (``cost``) taken, or 503 at once, so a picture that does
        not fit beside those in flight holds nothing while small ones keep flowing. A request that ends early (the
        deadline, a client gone) cancels its picture. All on the model serving as it is admitted (``served``: that
        one, being warmed up), named by the ``X-Model-Version`` header; 503 once the host closed it."""
        if served is not None:
            return await self.segment_on(served, data, params, masks, min_score, form, name, gzipped)
        served = self.slot.lease()
        try:
            if served.segmenter.closed:
                raise HttpError(503, CLOSED, RETRY, 'not ready')
            return await self.segment_on(served, data, params, masks, min_score, form, name, gzipped)
        finally:
            self.slot.release(served)

    async def segment_on(self, served: Served, data: bytes, params, masks: str, min_score: float, form: Form,
                         name: str, gzipped: bool) -> Response:
        """``segment`` on the model ``served``."""
        predictor = served.predictor
        cost, limit = self.cost(data, predictor), predictor.budget.limit
        large = limit and cost * self.settings.queue_size > limit     # SLOTS
        with self.held('in flight'), self.held('large in flight') if large else contextlib.nullcontext():
            request = predictor.submit(data, functools.partial(self.read, predictor=predictor), lambda _, prepared, row:
                                       self.answer(row, prepared.meta, params, masks, min_score, form, name, gzipped,
                                                   served), params, cost, REFUSE)
            try:
                body, headers = await asyncio.wrap_future(request.future)
            except Refused as exc:
                raise HttpError(503, f'busy: {exc} this service holds at once; try again after Retry-After seconds',
                                RETRY, 'in-flight budget') from None
            finally:
                request.cancel()            # the request ended early: its picture dropped (answered: nothing)
            return Response(body, media_type='application/json',
                            headers={**headers, 'X-Model-Version': served.version})

    def cost(self, data: bytes, predictor: Predictor) -> int:
        """The bytes ``data`` takes from the budget (``PictureReader.cost``); 413 when over it; 0 when its
        header refuses it (it is refused as it is read)."""
        size, budget, max_pixels = header_size(data), self.budget, self.pixel_limit(predictor.cfg)
        if size is None or (max_pixels and size[0] * size[1] > max_pixels):
            return 0 if max_pixels else budget
        cost = predictor.reader.cost(data) or 0
        if budget and cost > budget:
            raise HttpError(413, f'the picture is {size[0]}x{size[1]}: decoding it takes about {cost / 2**20:.0f} MB, '
                                 f'over the {budget / 2**20:.0f} MB this service holds in flight at once; send a '
                                 'smaller picture')
        return cost

    def read(self, data: bytes, predictor: Predictor):
        """[H, W, 3] uint8 RGB of an encoded picture, read as ``Segmenter`` reads bytes (``predictor.read``:
        LimitError over ``max_pixels``, InputError when it does not decode)."""
        with self.metrics.stage('decode'):
            return predictor.read(data, max_pixels=self.pixel_limit(predictor.cfg), what='the picture')

    def answer(self, row, meta, params, masks: str, min_score: float, form: Form, name: str,
               gzipped: bool, served: Served) -> Tuple[bytes, Dict[str, str]]:
        """The network's output for one picture -> the bytes of its JSON answer and their headers (``answer_bytes``:
        made in pieces, gzipped when ``gzipped`` says the client takes it), made here in a worker so that the event
        loop only moves them: ``answer_content`` in ``form`` of the model ``served`` (a labelme file names the picture
        ``name``; the 'instances' form and a callable form, the Label Studio routes' predictions, name its
        version)."""
        with self.metrics.stage('postprocess'):
            found = served.predictor.finish(row, meta, params)
            instances = instances_of(served.segmenter.class_names, found, min_score)
        self.liveness.moved()
        with self.metrics.stage('encode'):
            return answer_bytes(answer_content(instances, form, masks, name, min_score, served.version), gzipped)

    def close(self) -> None:
        """Say it is stopping (``/readyz`` 503) and close the model it opened (``Segmenter.close``: its threads
        stop once they have finished what they hold); a model the host gave stays the host's."""
        self.problem = STOPPING
        self.training.stop()
        self.slot.close()

    def check_room(self, what: str) -> None:
        """503 with Retry-After when as many of ``what`` are held as its share of its setting allows
        (``SLOTS``: the setting that bounds it, its name in a refusal, the share it may hold). Large
        pictures (each over a slot's share of the in-flight budget) may hold half the requests in flight,
        so that a flood of them, quick to decode and slow to finish, leaves the other half to the rest."""
        setting, noun, share = SLOTS[what]
        if self.counts[what] >= max(1, getattr(self.settings, setting) // share):
            raise HttpError(503, f'busy: {self.counts[what]} {noun}, the most this service takes; try again after '
                                 'Retry-After seconds', RETRY, what)

    @contextlib.contextmanager
    def held(self, what: str) -> Iterator[None]:
        """Count one of ``what`` (``SLOTS``) while the block runs; 503 (``check_room``) when that many are held."""
        self.check_room(what)
        self.counts[what] += 1
        try:
            yield
        finally:
            self.counts[what] -= 1


def answer_content(instances, form: Form, masks: str, name: str, min_score: float, version: str):
    """One picture's answer in ``form`` (``ANSWER_FORMS``) by the model version ``version``:
    ``Instances.to_dict(masks)`` with its ``model_version``, its COCO result records, or its labelme file for the
    picture ``name``; a callable ``form``, what it makes of the ``Instances`` and the version
    (``form(instances, version=...)``); ValueError for another form."""
    if callable(form):
        return form(instances, version=version)
    if form == 'instances':
        return {**instances.to_dict(masks), 'model_version': version}
    if form == 'coco':
        return instances.to_coco(0, file_name=name)
    if form == 'labelme':
        return instances.to_labelme(name, min_score=min_score)
    raise ValueError(f"an answer's form is one of {', '.join(ANSWER_FORMS)}, not {form!r}")


def create_app(settings: ServeSettings, load_first: bool = False, segmenter: Optional[Segmenter] = None,
               on_loaded: Optional[Callable[[Service], None]] = None) -> FastAPI:
    """The service's ASGI application for ``settings``, its state made when it starts (the lifespan).
    The model (``segmenter``, else opened from ``settings``) warms up beside the running server, or with
    ``load_first`` before the start-up ends (Ray Serve); then ``on_loaded(service)`` reports a failure."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service = app.state.service = Service(settings, segmenter, on_loaded)
        service.loop = asyncio.get_running_loop()
        threading.Thread(target=service.load, name='solov2-serve-load', daemon=True).start()
        watching = asyncio.create_task(service.liveness.watch())
        if load_first:
            await asyncio.to_thread(service.loaded.wait)
        try:
            yield
        finally:
            watching.cancel()
            await asyncio.to_thread(service.loaded.wait, settings.timeout_s)
            await asyncio.to_thread(service.close)

    app = FastAPI(title='SOLOv2 instance segmentation', version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description='One shared SOLOv2 model; concurrent pictures of one padded size share a '
                                              'network run. This document: GET /openapi.json.')
    add_error_handlers(app)
    add_routes(app, settings)
    add_probes(app)
    add_label_studio_routes(app, settings)
    if settings.admin_token:
        add_admin_routes(app, settings.admin_token)
    add_training_routes(app)
    if settings.page:
        add_page(app)
    app.openapi = lambda: app.openapi_schema or openapi_of(app)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_BYTES, compresslevel=GZIP_LEVEL)    # inside ``count``

    @app.middleware('http')
    async def count(request: Request, call_next):
        """Name the request (a sane X-Request-ID or a new id), answer a failure as a JSON 500,
        close the connection after a refusal that left a body unread, count and log it with the
        client's address (behind a proxy that uvicorn trusts, the one it forwards)."""
        began, given = time.perf_counter(), request.headers.get('x-request-id', '')
        request.state.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        try:
            response = await call_next(request)
        except Exception as exc:  # an engine's or the service's own failure: this request's alone
            LOG.exception(f'request {request.state.request_id} failed')
            response = error(request, 500, f'the service failed on this request ({type(exc).__name__}); its log '
                                           'says more under this request_id')
        response.headers['X-Request-ID'] = request.state.request_id
        if request.app.state.service.problem == STOPPING:
            response.headers['Connection'] = 'close'        # a kept connection ends on an answer, not idle at the stop
        body_left = request.headers.get('content-length', '0').strip() not in ('0', '') or \
            'transfer-encoding' in request.headers          # a body said to follow (a length above 0, or chunks)
        if response.status_code >= 400 and body_left and not getattr(request.state, 'body_in', False):
            response.headers['Connection'] = 'close'        # the server then reads no more of it
        seconds, route = time.perf_counter() - began, request.scope.get('route')
        request.app.state.service.metrics.observe(getattr(route, 'path', 'other'), response.status_code, seconds)
        LOG.log(logging.DEBUG if request.url.path in PROBES else logging.INFO, '%s %s %s %s %d %.0f ms',
                request.state.request_id, request.client.host if request.client else '-', request.method,
                request.scope.get('raw_path', request.url.path.encode()).decode('latin-1'),     # as sent: one word
                response.status_code, seconds * 1000)
        return response
    return app


def error(request: Request, status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    """``{"error": message, "request_id": ...}`` with ``status``."""
    return JSONResponse({'error': message, 'request_id': request.state.request_id}, status, headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": "...", "request_id": ...}``, the library's through ``client_error``."""

    @app.exception_handler(HttpError)
    @app.exception_handler(InputError)
    async def refused(request: Request, exc: Exception):
        refusal = client_error(exc) if isinstance(exc, InputError) else cast(HttpError, exc)
        if refusal.reason:
            request.app.state.service.metrics.refused.labels(refusal.reason).inc()
        return error(request, refusal.status, refusal.message, refusal.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [f'{".".join(str(part) for part in one["loc"])}: {one["msg"]}' for one in exc.errors()]
        return error(request, 400, '; '.join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(request, exc.status_code, str(exc.detail), getattr(exc, 'headers', None))


def precision_of(segmenter: Segmenter, spec) -> str:
    """The precision of the engine serving: f32, bf16, int8 or fp16."""
    return segmenter.backend.precision or spec.precision or 'f32'


def legacy_version(spec: ModelSpec, segmenter: Segmenter) -> str:
    """The version's name of a service without a versions folder (as Label Studio lists it): ``solov2-<config
    name>-<the weights' or exported model folder's name>``."""
    source = spec.weights or spec.model_dir
    return f'solov2-{segmenter.cfg.__name__}' + (f'-{Path(source).name}' if source else '')


def model_answer(service: Service) -> dict:
    """``/v1/model``'s answer (``Model``) for a service whose model is loaded."""
    settings, seg, spec = service.settings, service.model, service.settings.model
    return {'replica': service.replica, 'version': service.version, 'config': seg.number,
            'config_name': seg.cfg.__name__,
            'classes': list(seg.class_names), 'backend': seg.backend.name, 'asked': spec.backend,
            'precision': precision_of(seg, spec), 'pinned': seg.backend.pinned,
            'weights': spec.weights and Path(spec.weights).name,
            'model_dir': spec.model_dir and Path(spec.model_dir).name, 'max_batch': settings.max_batch,
            'max_pixels': service.max_pixels, 'max_body_mb': settings.max_body_mb, 'timeout_s': settings.timeout_s}


def add_routes(app: FastAPI, settings: ServeSettings) -> None:
    """The service's routes (module docstring) and what the OpenAPI says of them (``schema``)."""

    @app.post('/v1/segment', openapi_extra=picture_body(settings.max_body_mb), responses={
        200: {'model': Answer}, **refusals(400, 408, 413, 415, 500, 503, 504, 'default')})
    async def segment(request: Request,
                      score_threshold: Optional[float] = Query(None, ge=0, le=1, description=QUERY['score_threshold']),
                      max_instances: Optional[int] = Query(None, ge=1, description=QUERY['max_instances']),
                      min_score: float = Query(SHOWN_MIN_SCORE, ge=0, le=1, description=QUERY['min_score']),
                      masks: Literal['rle', 'polygons', 'none'] = Query('rle', description=QUERY['masks']),
                      format: Literal['instances', 'coco', 'labelme'] = Query('instances', description=QUERY['format']),
                      name: str = Query('picture', min_length=1, max_length=255, description=QUERY['name'])):
        """The instances of the picture sent (the body, or the field ``file`` of a form), as
        ``Instances.to_dict()``: masks as COCO RLE, ``polygons`` or none; or as COCO result records
        or a labelme file (``format``)."""
        service: Service = request.app.state.service
        if service.problem is not None:             # loading, cannot load, or stopping
            raise HttpError(503, service.problem, RETRY, 'stopping' if service.problem == STOPPING else 'not ready')
        params = per_call_params(service.running.params, score_threshold, max_instances)
        timeout_s = service.settings.timeout_s
        try:
            result = await asyncio.wait_for(segment_request(service, request, params, masks, min_score, format,
                                                            os.path.basename(name) or 'picture'), timeout_s)
        except asyncio.TimeoutError:
            if not getattr(request.state, 'body_in', False):
                raise HttpError(408, f'the body did not arrive within {timeout_s:g} s: send it faster') from None
            raise HttpError(504, f'no answer within {timeout_s:g} s of the request: the service is busy, try again '
                                 'later') from None
        return result

    @app.get('/v1/model', responses={200: {'model': Model}, **refusals(500, 503)})
    async def model(request: Request):
        """The model served (config, classes, engine, the weights' or model folder's name, limits) and
        the replica that answered (a random id): no path, process id or host."""
        service: Service = request.app.state.service
        if service.slot.current is None:
            raise HttpError(503, service.problem or LOADING, RETRY)
        return model_answer(service)


async def segment_request(service: Service, request: Request, params, masks: str, min_score: float, form: str,
                          name: str) -> Response:
    """Read the request's picture within the limits, held among the uploads (400 when it is empty), then segment
    it held in flight."""
    settings = service.settings
    max_bytes = int(settings.max_body_mb * 2**20)
    kind = check_content_type(request.headers.get('content-type'))       # 415 first, then the length's 400/413
    check_declared_length(request.headers.get('content-length'), max_bytes)
    service.check_room('in flight')                 # a full queue: refused before the body is read
    with service.held('uploads'):
        body = await read_body(request.stream(), max_bytes, settings.body_timeout_s, settings.min_upload_kb_s * 1024)
    request.state.body_in = True
    if kind == 'multipart':
        body = await form_file(request, body)
    if not body:
        raise HttpError(400, 'the body is empty: send the picture file as the body, or as the field "file" of '
                             f'{MULTIPART}')
    gzipped = 'gzip' in request.headers.get('accept-encoding', '')         # as GZipMiddleware would
    return await service.segment(body, params, masks, min_score, form, name, gzipped)


async def form_file(request: Request, body: bytes) -> bytes:
    """The field ``file`` of a multipart form already read as ``body``; 400 without it."""
    async def replay():
        return {'type': 'http.request', 'body': body, 'more_body': False}

    async with Request(request.scope, replay).form() as form:
        upload = form.get('file')
        if upload is None or isinstance(upload, str):
            raise HttpError(400, 'the form has no file field "file": send the picture as -F file=@picture.jpg')
        return await upload.read()


def add_probes(app: FastAPI) -> None:
    """The probes' routes: alive (``/healthz``), ready (``/readyz``) and the Prometheus metrics."""

    @app.head('/healthz', responses={200: {'model': Alive}, **refusals(503)})
    @app.get('/healthz', responses={200: {'model': Alive}, **refusals(503)})
    async def healthz(request: Request):
        """Alive: the process answers and its predictor moves (503 with why when it is wedged: restart it)."""
        wedged = request.app.state.service.liveness.wedged
        return {'alive': True} if wedged is None else error(request, 503, wedged)

    @app.head('/readyz', responses={200: {'model': Ready}, **refusals(503)})
    @app.get('/readyz', responses={200: {'model': Ready}, **refusals(503)})
    async def readyz(request: Request):
        """Ready: the model is loaded and warmed up (503 with the reason before and while stopping);
        the engine, and why it is not the one asked for (``fallback``) when it is not."""
        service: Service = request.app.state.service
        if service.problem is not None:
            return error(request, 503, service.problem, RETRY)
        return {'ready': True, 'engine': service.model.backend.name, **({'fallback': service.fallback} if
                                                                           service.fallback else {})}

    @app.get('/metrics', response_class=PlainTextResponse)
    async def metrics(request: Request):
        """The Prometheus metrics."""
        body, content_type = request.app.state.service.metrics.exposition()
        return Response(body, media_type=content_type)


def add_page(app: FastAPI) -> None:
    """The page at ``/`` (``PAGE``: docs/serving.md) and its script and style, sent with a content
    security policy that lets them load nothing from elsewhere; not in the OpenAPI."""
    html = (PAGE / 'index.html').read_text(encoding='utf-8')
    files = {name: (PAGE / name).read_bytes() for name in PAGE_FILES}

    @app.get('/', include_in_schema=False)
    async def page():
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get('/page/{name}', include_in_schema=False)
    async def page_file(name: str):
        if name not in files:
            raise HttpError(404, f'no such file of the page: {name}')
        return Response(files[name], media_type=PAGE_FILES[name], headers=PAGE_HEADERS)
