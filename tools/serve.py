"""Serve SOLOv2 over HTTP: one shared model, batching across requests, limits, metrics, a clean stop.

    python tools/serve.py                                   # the shipped model on 127.0.0.1:8000
    python tools/serve.py --weights W --port 8080 --workers 2
    curl --data-binary @images/shapes_000023.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/v1/segment

Routes: POST /v1/segment (the picture as the body or the form field "file"; query
score_threshold, min_score, max_instances, masks=rle|polygons|none), GET /v1/model, /healthz,
/readyz, /metrics, and the OpenAPI document /openapi.json. The port opens at once and the model
opens beside it (/readyz 503 with the reason meanwhile, e.g. the one-time export of --backend
auto); weights that do not load end it in one line, exit 2; SIGTERM or Ctrl-C meanwhile end it
at once. Once ready, SIGTERM or Ctrl-C stop taking requests (/readyz 503, the port open),
finish those in flight (up to --timeout-s) and exit 0. With --workers N the port opens at once
too (answering 503 meanwhile) while a child process opens the model once (auto: exports it), then
N processes serve it while this one, holding no model, watches them. The application is ``solov2.serving.app``;
docs/serving.md says how to call it, its settings, metrics and scaling out (Ray Serve too).
"""
import argparse
import concurrent.futures
import contextlib
import dataclasses
import gc
import importlib
import inspect
import json
import logging
import logging.config
import multiprocessing
import os
import re
import signal
import sys
import threading
import time

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.errors import InputError  # noqa: E402  (no Paddle here: a --workers parent never loads it)
from solov2.core.paths import SHIPPED_WEIGHTS  # noqa: E402
from solov2.serving.logs import FORMS, log_config  # noqa: E402  (the standard library only)
from solov2.tools import cli  # noqa: E402  (before Paddle)

SETTINGS_ENV = 'SOLOV2_SERVE_SETTINGS'     # the settings, as JSON, for --workers' processes
MEANWHILE = 'solov2-serve-meanwhile'       # the thread that answers --workers' port while no worker does


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser('Serve SOLOv2 instance segmentation over HTTP.', notes=__doc__.split('\n\n', 1)[1])
    cli.add_inference_args(parser, SHIPPED_WEIGHTS, batch_size=False, fast_decode=True)
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)')
    parser.add_argument('--port', type=cli.at_least(0, most=65535), default=8000, help='port (default 8000)')
    parser.add_argument('--forwarded-allow-ips', default='127.0.0.1', metavar='ADDRESSES',
                        help="proxies whose X-Forwarded-For names the client (its log line's address): a comma list, "
                             "'*' any (default 127.0.0.1: a proxy on this machine, docs/serving.md's nginx)")
    parser.add_argument('--workers', type=cli.at_least(1), default=1,
                        help='processes, each with its model, sharing the port and the cores (default 1)')
    parser.add_argument('--log-format', choices=FORMS, default='text',
                        help='log lines on standard error: text (time, level, logger, message) or json, one object '
                             'a line (default text)')
    add_settings_flags(parser)
    return parser.parse_args(argv)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each of the service's settings (``ServeSettings`` but its model): its name, default,
    bound and help from the setting, the other settings its help names written as their flags."""
    from solov2.serving.settings import ServeSettings  # no Paddle: the parser is built before loading
    fields = dataclasses.fields(ServeSettings)[1:]
    names = re.compile(r'\b(' + '|'.join(field.name for field in fields) + r')\b')
    for field in fields:
        bound, default = field.metadata, field.default
        text = names.sub(lambda name: name.group(1) if name.group(1) == field.name else     # its own name: a word
                         '--' + name.group(1).replace('_', '-'), bound['help'])
        if bound.get('env'):        # taken from the environment (``settings_of``)
            continue
        if bound.get('text'):
            parser.add_argument('--' + field.name.replace('_', '-'), metavar='TEXT', help=text)
            continue
        if bound.get('choices'):
            parser.add_argument('--' + field.name.replace('_', '-'), choices=bound['choices'], default=default,
                                help=f'{text} (default {default})')
            continue
        if bound.get('switch'):
            parser.add_argument('--no-' + field.name.replace('_', '-'), dest=field.name, action='store_false',
                                help=f'turn off {text}')
            continue
        parser.add_argument('--' + field.name.replace('_', '-'), default=default,
                            type=cli.at_least(bound['least'], bound['whole'], bound['above']),
                            help=text + ('' if default is None else f' (default {default:g})'))


def settings_of(args):
    """The service's settings from the command line, checked; Paddle is imported here."""
    with cli.interruptible_loading():
        from solov2.model.runtime import cpu_threads
        from solov2.serving.app import ServeSettings
    args.threads = cpu_threads(args.threads, args.workers)       # each of --workers' processes: its share
    secrets = {field.name: os.environ.get(field.metadata['env']) or None for field in dataclasses.fields(ServeSettings)
               if field.metadata.get('env')}
    settings = ServeSettings(cli.model_spec(args), **cli.named_fields(ServeSettings, args), **secrets)   # the flags
    return dataclasses.replace(settings, model=cli.fetched(settings.model))     # a published name fetched once checked


_WORKER_APP = []          # the application this --workers process made (``worker_app``), for its server


def worker_app():
    """The application of one of --workers' processes (uvicorn's factory), from ``SETTINGS_ENV``."""
    with cli.interruptible_loading():
        from solov2.model.inference.spec import ModelSpec
        from solov2.serving.app import ServeSettings, create_app
    named = json.loads(os.environ[SETTINGS_ENV])
    settings = ServeSettings(**{**named, 'model': ModelSpec(**named['model'])})
    cli.tune_for(settings.model.device, settings.model.threads)
    _WORKER_APP.append(create_app(settings, on_loaded=worker_loaded))
    return _WORKER_APP[-1]


def worker_loaded(service) -> None:
    """A --workers process's model has loaded (``keep_from_collector``) or failed (logged as the service logs it:
    the worker stays up, ``/readyz`` says why)."""
    if service.failure is None:
        keep_from_collector()
    else:
        logging.getLogger('solov2.serving.app').error(service.problem, exc_info=service.failure)


def keep_from_collector() -> None:
    """Once the model has loaded: the objects made so far (the libraries, Paddle's layers and parameters: about
    180,000 for the shipped model) kept out of Python's garbage collector's sight for good (``gc.freeze``, meant
    for this). Its full collections scanned them all, 75-100 ms holding the interpreter's lock, in which nothing
    answered, not even ``/healthz`` (dygraph, the shipped model, 2-core AMD EPYC Zen 4: one every 10-20 s while
    serving 12 MP photos' polygons beside small pictures)."""
    gc.freeze()


def made_worker_app():
    """The application ``worker_app`` made in this process; None before."""
    return _WORKER_APP[-1] if _WORKER_APP else None


def end_loading(sig: int) -> None:
    """A SIGTERM or Ctrl-C while the model loads: the command ends at once (``cli.end_loading``)."""
    cli.end_loading(cli.Terminated() if sig == signal.SIGTERM else KeyboardInterrupt())


def serve(settings, options) -> None:
    """Run the service (``options``: ``uvicorn.Config``'s) until SIGTERM or Ctrl-C; a model that cannot load stops
    it with its error. Under systemd (``Type=notify``), it says ready and pings the watchdog while it lives."""
    import uvicorn

    from solov2.serving.app import create_app
    from solov2.serving.liveness import SystemdWatchdog
    from solov2.serving.wire import DrainingServer

    def loaded(service):
        if service.failure is not None:
            server.should_exit = True
        else:
            keep_from_collector()
    app = create_app(settings, on_loaded=loaded)
    server = DrainingServer(uvicorn.Config(app, **options), lambda: app, end_loading)
    SystemdWatchdog(lambda: getattr(getattr(app.state, 'service', None), 'liveness', None)).start()
    server.run()
    if app.state.service.failure is not None:
        raise app.state.service.failure


class Meanwhile:
    """The listening ``sock`` of --workers answered in a thread of this process by ``wire.waiting_app`` while
    no worker answers it: from the bind until every worker serves (``OPENING``), and from a stop until they
    have finished (``STOPPING``). It serves a copy of ``sock``, closed when it stops: connections that come
    after wait in ``sock``'s backlog for the workers. Its own start and stop lines are not logged."""

    def __init__(self, sock):
        self.sock, self.server, self.thread = sock, None, None

    def start(self, problem: str) -> None:
        import uvicorn

        from solov2.serving.wire import SERVER_OPTIONS, waiting_app
        self.stop()
        self.server = uvicorn.Server(uvicorn.Config(waiting_app(problem), lifespan='off', log_config=None,
                                                    log_level=None, http=SERVER_OPTIONS['http'], access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={'sockets': [self.sock.dup()]},
                                       name=MEANWHILE, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join()
            self.server = None


def quiet_meanwhile(record) -> bool:
    """A logging filter: uvicorn's lines of ``Meanwhile``'s thread under WARNING are dropped."""
    return record.threadName != MEANWHILE or record.levelno >= logging.WARNING


def supervise(config, sock, meanwhile: Meanwhile) -> None:
    """``uvicorn.run``'s --workers run (its supervisor, ``Multiprocess``) on ``sock``, bound and listening
    already, ``meanwhile`` answering it until every worker serves and again while they stop. Each worker runs a
    ``DrainingServer``, which drains on SIGTERM as one process does (uvicorn 0.30 to 0.50 take it as the
    ``target``; later ones as a ``DrainingProcess``'s server)."""
    from uvicorn.supervisors import Multiprocess

    from solov2.serving.wire import STOPPING, DrainingProcess, DrainingServer
    app_of = importlib.import_module('solov2.tools.serve').made_worker_app   # not this file's copy as a script
    targeted = 'target' in inspect.signature(Multiprocess).parameters

    class Supervisor(Multiprocess):
        def init_processes(self) -> None:
            if targeted:
                super().init_processes()
            for _ in range(0 if targeted else self.processes_num):
                self.processes.append(DrainingProcess(self.config, self.sockets, app_of))
                self.processes[-1].start()
            for process in self.processes:        # Process.is_ready: its server started (uvicorn's ping)
                while not (self.signal_queue or not process.process.is_alive() or process.is_ready(timeout=1)):
                    time.sleep(0.05)
            meanwhile.stop()

        def terminate_all(self) -> None:
            meanwhile.start(STOPPING)             # the port answered while the workers finish their requests
            super().terminate_all()

        def join_all(self) -> None:
            super().join_all()
            sock.close()                          # the port closes with the last copy, ``meanwhile``'s
            meanwhile.stop()
    target = {'target': DrainingServer(config, app_of).run} if targeted else {}
    with contextlib.suppress(KeyboardInterrupt):
        Supervisor(config, sockets=[sock], **target).run()


def open_once(argv, sender) -> None:
    """--workers' first step, in a child process: the model opened once, its settings sent as JSON. It opens
    in a thread (an export runs in C++ for tens of seconds), so that Ctrl-C or SIGTERM end it at once."""
    @cli.command
    def run(argv) -> int:
        args = parse_args(argv)
        logging.config.dictConfig(log_config(args.log_format))
        settings = settings_of(args)        # Paddle imported here first
        cli.tune_for(settings.model.device, settings.model.threads)
        from solov2.api.segmenter import Segmenter
        with concurrent.futures.ThreadPoolExecutor(1, 'solov2-load') as pool:
            try:
                pool.submit(Segmenter, settings.model).result().close()
            except KeyboardInterrupt as exc:
                cli.end_loading(exc)
        sender.send(json.dumps(dataclasses.asdict(settings)))
        return 0
    sys.exit(run(argv))


def opened_in_a_child(argv) -> str:
    """What ``open_once`` run in a child process sends; SystemExit with its status when it fails."""
    context = multiprocessing.get_context('spawn')
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=open_once, args=(argv, sender), name='solov2-serve-open')
    child.start()
    sender.close()                 # the child's copy only: its exit without sending ends recv
    try:
        with contextlib.suppress(EOFError):
            named = receiver.recv()
        child.join()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child.terminate()          # it says the one line and removes its temporaries
        child.join()
    if child.exitcode != 0:
        raise SystemExit(child.exitcode if child.exitcode > 0 else 128 - child.exitcode)
    return named


@cli.command
def main(argv) -> int:
    args = parse_args(argv)
    if args.versions and args.workers > 1:       # a switch of version is one process's
        raise InputError('--versions switches the model of one process: serve it with --workers 1')
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise InputError(f'the service needs its extra ({exc.name} is missing): pip install -r '
                         "requirements-serve.txt, or pip install '.[serve]'") from None
    from solov2.serving.wire import OPENING, SERVER_OPTIONS
    logging.config.dictConfig(log_config(args.log_format))         # uvicorn applies it again in each worker
    options = {**SERVER_OPTIONS, 'host': args.host, 'port': args.port, 'log_level': 'info',
               'log_config': log_config(args.log_format),
               'forwarded_allow_ips': args.forwarded_allow_ips,
               'timeout_graceful_shutdown': int(args.timeout_s) + 1}      # a stop waits a little past the deadline
    if args.workers > 1:        # each worker opens the model from the cache (``worker_app``) until SIGTERM or Ctrl-C
        # a worker imports Paddle and the library before it answers the supervisor's first check
        config = uvicorn.Config('solov2.tools.serve:worker_app', factory=True, workers=args.workers,
                                timeout_worker_healthcheck=120, **options)
        sock = config.bind_socket()
        sock.listen(config.backlog)
        logging.getLogger('uvicorn.error').addFilter(quiet_meanwhile)
        meanwhile = Meanwhile(sock)
        meanwhile.start(OPENING)
        try:
            os.environ[SETTINGS_ENV] = opened_in_a_child(argv)
            supervise(config, sock, meanwhile)
        finally:
            meanwhile.stop()
        ended()
    settings = settings_of(args)
    cli.tune_for(settings.model.device, settings.model.threads)
    serve(settings, options)
    ended()
    return 0


def ended() -> None:
    """The command's end once its port has closed, every request answered: its log and output flushed, the process
    ends at once (``os._exit``). The interpreter's own teardown (Paddle's) took 2 s more, the port refused
    meanwhile, where ``/healthz`` answers until the process ends (docs/serving.md#stopping)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == '__main__':
    sys.exit(main())
