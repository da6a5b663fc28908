"""Serve SOLOv2 over HTTP: one shared model, batching across requests, limits, metrics, a clean stop.

    python tools/serve.py                                   # the shipped model on 127.0.0.1:8000
    python tools/serve.py --weights W --port 8080 --workers 2
    curl --data-binary @images/shapes_000023.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/v1/segment

Routes: POST /v1/segment (the picture as the body or the form field "file"; query
score_threshold, min_score, max_instances, masks=rle|polygons|none), GET /v1/model, /healthz,
/readyz, /metrics, and the OpenAPI document /openapi.json. The model opens before the port
(weights that do not load: one line, exit 2; SIGTERM or Ctrl-C: at once); then SIGTERM or
Ctrl-C stop taking requests, finish those in flight (up to --timeout-s) and exit 0. The
application is ``solov2.model.serving.app``;
docs/serving.md says how to call it, its settings, metrics and scaling out (Ray Serve too).
"""
import argparse
import contextlib
import dataclasses
import json
import os
import sys

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools.cli import (  # before Paddle
    add_inference_args,
    command,
    fetched,
    interruptible_load,
    interruptible_loading,
    make_parser,
    model_spec,
    tune_for,
)

with interruptible_loading():      # Ctrl-C or SIGTERM while Paddle and the library load: one line
    from solov2.core.errors import InputError
    from solov2.core.paths import SHIPPED_WEIGHTS
    from solov2.model.inference.backend_factory import ModelSpec
    from solov2.model.runtime import cpu_threads

SETTINGS_ENV = 'SOLOV2_SERVE_SETTINGS'     # the settings, as JSON, for --workers' processes


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('Serve SOLOv2 instance segmentation over HTTP.', notes=__doc__.split('\n\n', 1)[1])
    add_inference_args(parser, SHIPPED_WEIGHTS, batch_size=False, fast_decode=True)
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)')
    parser.add_argument('--port', type=int, default=8000, help='port (default 8000)')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes, each with its model, sharing the port and the cores (default 1)')
    parser.add_argument('--max-batch', type=int, default=4, help='most pictures in one network run (default 4)')
    parser.add_argument('--max-padding', type=float, default=0.0,
                        help='pictures of different padded sizes share a network run when the batch then has at '
                             'most 1 + this times the pixels they run with alone (dygraph, onnx; default 0: one '
                             'size, or one size bucket, a run; docs/serving.md says when more pays)')
    parser.add_argument('--max-wait-ms', type=float, default=5.0,
                        help='how long a picture waits for others to join its network run (default 5)')
    parser.add_argument('--queue-size', type=int, default=16,
                        help='requests in flight (body read) per process; more get 503 with Retry-After (default 16)')
    parser.add_argument('--max-uploads', type=int, default=64,
                        help='request bodies being received at once per process, each up to --max-body-mb; more '
                             'get 503 with Retry-After before their body is read (default 64)')
    parser.add_argument('--body-timeout-s', type=float, default=10.0,
                        help='a client that sends nothing of its body for this many seconds gets 408 and its '
                             'connection closed (default 10)')
    parser.add_argument('--min-upload-kb-s', type=float, default=32.0,
                        help='a body that comes slower than this many KB a second after its first 2 s gets 408 '
                             'and its connection closed, its upload slot freed (default 32; 0: any rate)')
    parser.add_argument('--max-body-mb', type=float, default=32.0, help='largest request body, MB (default 32)')
    parser.add_argument('--max-pixels', type=int,
                        help="largest picture in pixels, more get 413; 0: no limit (default: the config's "
                             'max_image_pixels, 100 MP unless --opt max_image_pixels=N says otherwise)')
    parser.add_argument('--timeout-s', type=float, default=30.0,
                        help='a request unanswered after this many seconds gets 504; also how long a stop '
                             'waits for the requests in flight (default 30)')
    return parser.parse_args(argv)


def settings_of(args):
    """The service's settings from the command line, checked (InputError for one that cannot work)."""
    from solov2.model.serving.app import ServeSettings
    counts = (('--workers', args.workers), ('--max-batch', args.max_batch), ('--queue-size', args.queue_size),
              ('--max-uploads', args.max_uploads))
    for flag, value in counts:
        if value < 1:
            raise InputError(f'{flag} must be at least 1, not {value}')
    if min(args.max_body_mb, args.timeout_s, args.body_timeout_s) <= 0 or \
            min(args.max_wait_ms, args.max_padding, args.max_pixels or 0, args.min_upload_kb_s) < 0:
        raise InputError('--max-body-mb, --timeout-s and --body-timeout-s must be above 0, --max-wait-ms, '
                         '--max-padding, --max-pixels and --min-upload-kb-s at least 0')
    spec = fetched(model_spec(args))      # checked before a published name is fetched
    named = {field.name: getattr(args, field.name) for field in dataclasses.fields(ServeSettings)
             if hasattr(args, field.name)}         # the flags are the settings' names
    return ServeSettings(dataclasses.replace(spec, threads=cpu_threads(spec.threads, args.workers)), **named)


def worker_app():
    """The application of one of --workers' processes (uvicorn's factory), from ``SETTINGS_ENV``."""
    from solov2.model.serving.app import ServeSettings, create_app
    named = json.loads(os.environ[SETTINGS_ENV])
    settings = ServeSettings(**{**named, 'model': ModelSpec(**named['model'])})
    tune_for(settings.model.device, settings.model.threads)
    return create_app(settings)


def uvicorn_server(config):
    """A uvicorn server whose stop on SIGTERM or Ctrl-C (finishing the requests in flight)
    ends in a return, for exit 0, instead of raising the signal again after it."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()
    return Server(config)


def serve(settings, args, segmenter) -> None:
    """Run the service until SIGTERM or Ctrl-C: in this process around the opened ``segmenter``,
    or in --workers processes, each opening its own (``segmenter`` is released first)."""
    import uvicorn

    from solov2.model.serving.wire import SERVER_OPTIONS
    options = {'host': args.host, 'port': args.port, 'timeout_graceful_shutdown': int(settings.timeout_s) + 1,
               'log_level': 'info', **SERVER_OPTIONS}
    if args.workers == 1:
        from solov2.model.serving.app import create_app
        uvicorn_server(uvicorn.Config(create_app(settings, segmenter=segmenter), **options)).run()
        return
    segmenter.close()
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    # a worker imports Paddle and the library before it answers the supervisor's first check
    uvicorn.run('solov2.tools.serve:worker_app', factory=True, workers=args.workers, timeout_worker_healthcheck=120,
                **options)


@command
def main(argv) -> int:
    args = parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise InputError(f'the service needs its extra ({exc.name} is missing): pip install -r '
                         "requirements-serve.txt, or pip install '.[serve]'") from None
    settings = settings_of(args)
    tune_for(settings.model.device, settings.model.threads)
    # before listening: a model that does not open ends here; an empty 'auto' cache is filled once
    serve(settings, args, interruptible_load(settings.segmenter))
    return 0


if __name__ == '__main__':
    sys.exit(main())
