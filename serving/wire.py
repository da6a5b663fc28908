"""How uvicorn runs the service: ``SERVER_OPTIONS`` for ``uvicorn.Config``: its access log off (the
application logs each request), a request uvicorn cannot parse answered in the service's error
shape, 400 ``{"error", "request_id"}``, and a connection closed while its request's body is still
coming closed as nginx's lingering close does (``JsonRefusals``); and what the port of several worker
processes answers while the model opens once, until they answer, and while they stop (``waiting_app``).
"""
import asyncio
import contextlib
import json
import logging
import signal
import threading
import uuid
from typing import Any, Callable, Optional, cast

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.server import Server, ServerState
from uvicorn.supervisors.multiprocess import Process

LOG = logging.getLogger(__name__)
SERVER_OPTIONS = {'http': f'{__name__}:JsonRefusals', 'access_log': False}
LINGER_S, LINGER_BYTES = 2.0, 64 * 2**20      # how long, how much of a refused body is read and dropped (Lingering)
STOP_GRACE_S = 0.5        # on a stop, a connection with no request in progress is closed this long after (shutdown)
LOADING = 'the model is loading'
OPENING = f'{LOADING}: opening it once (exporting it when needed) before the worker processes start'
STOPPING = 'the service is stopping'


def waiting_app(problem: str):
    """The ASGI application of several processes' port while no worker answers it (no Paddle in the parent):
    while the model opens once in a child process and the workers start (``OPENING``), and while they finish
    their requests (``STOPPING``): ``/healthz`` alive, anything else 503 ``problem`` with Retry-After and a
    request id, as one process answers while its model loads or it drains (``Connection: close`` while they
    stop)."""
    async def app(scope, receive, send) -> None:
        if scope['type'] != 'http':
            return
        alive, request_id = scope['path'] == '/healthz', uuid.uuid4().hex
        said = {'alive': True} if alive else {'error': problem, 'request_id': request_id}
        closing = [(b'connection', b'close')] if problem == STOPPING else []     # kept connections end on an answer
        await send({'type': 'http.response.start', 'status': 200 if alive else 503,
                    'headers': [(b'content-type', b'application/json'), (b'retry-after', b'1'),
                                (b'x-request-id', request_id.encode()), *closing]})
        await send({'type': 'http.response.body', 'body': json.dumps(said, ensure_ascii=False).encode()})
    return app


class Lingering:
    """A connection's transport whose ``close`` lingers while ``protocol``'s request body is still
    coming: the answer written, its side shut (FIN), reading resumed and the rest dropped by
    ``JsonRefusals``; closed for good at the client's end of stream, ``LINGER_BYTES`` or ``LINGER_S``.
    Everything else is the transport's own. Why: a socket closed with unread data sends a reset, and a
    client still uploading (a 15 MB body refused 503 before it was read) then loses the answer waiting
    in its buffer instead of reading it and its Retry-After."""

    def __init__(self, transport, protocol):
        self.transport, self.protocol = transport, protocol
        self.dropped: Optional[int] = None          # bytes read and dropped while lingering (None: not lingering)

    def __getattr__(self, name):
        return getattr(self.transport, name)

    def close(self) -> None:
        cycle = getattr(self.protocol, 'cycle', None)
        if self.dropped is not None or self.transport.is_closing() or not (cycle and cycle.more_body):
            return self.transport.close()
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            return self.transport.close()
        self.dropped = 0
        self.transport.resume_reading()
        self.protocol.loop.call_later(LINGER_S, self.transport.close)

    def drop(self, data: bytes) -> None:
        """Count ``data`` received while lingering; close past ``LINGER_BYTES``."""
        self.dropped = (self.dropped or 0) + len(data)
        if self.dropped > LINGER_BYTES:
            self.transport.close()


class JsonRefusals(AutoHTTPProtocol):
    """uvicorn's HTTP protocol, its 400 to a malformed request in the service's JSON shape, its
    close of a connection whose body is still coming lingering (``Lingering``) and its close on a stop
    a little later (``shutdown``)."""
    transport: Lingering               # uvicorn's protocols set these (AutoHTTPProtocol: one of two classes)
    server_state: ServerState
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport) -> None:
        super().connection_made(cast(asyncio.Transport, Lingering(transport, self)))    # a transport by delegation

    def data_received(self, data: bytes) -> None:
        if self.transport.dropped is not None:
            return self.transport.drop(data)
        super().data_received(data)

    def eof_received(self) -> Optional[bool]:
        if self.transport.dropped is not None:
            self.transport.transport.close()      # the client sent all it had: close for good
        return super().eof_received()

    def shutdown(self) -> None:
        """On the server's stop, close this connection ``STOP_GRACE_S`` later, not at once: a request that
        comes meanwhile is answered (a connection accepted just before the server stopped accepting, its
        request not read yet, was closed unread: a reset for its client)."""
        self.loop.call_later(STOP_GRACE_S, self.shut)

    def shut(self) -> None:
        if not self.transport.is_closing():
            cast(Any, super()).shutdown()       # the protocol class uvicorn picked (a checker sees object)

    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        LOG.info('%s - - 400 a malformed request: %s', request_id, msg)
        body = json.dumps({'error': 'a malformed HTTP request: send HTTP/1.1 with a valid request line and headers',
                           'request_id': request_id}).encode()
        head = [b'HTTP/1.1 400 Bad Request'] + [name + b': ' + value for name, value in
                                                 self.server_state.default_headers]
        head += [b'content-type: application/json', b'content-length: %d' % len(body),
                 b'x-request-id: ' + request_id.encode(), b'connection: close']
        self.transport.write(b'\r\n'.join(head) + b'\r\n\r\n' + body)
        self.transport.close()


class DrainingServer(Server):
    """uvicorn's server for the service's application (``app_of()``, once made: the FastAPI app whose
    ``state.service`` is the ``Service``): its first SIGTERM or Ctrl-C once the model is loaded drains first
    (``Service.drain``: the port open, new requests 503 'stopping' with ``Connection: close``, so kept
    connections end on an answer, while those in flight finish), closes the model, then stops as uvicorn
    does, its port open until then; a second stops at once. While the model loads: ``on_loading(sig)``
    (None: uvicorn's own stop). A module's class, so that a supervisor of several processes can send it to them."""

    def __init__(self, config, app_of: Callable[[], Any], on_loading: Optional[Callable[[int], None]] = None):
        super().__init__(config)
        self.app_of, self.on_loading, self.draining = app_of, on_loading, False

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()      # not raised again at the end: the command exits 0

    def handle_exit(self, sig, frame):
        app = self.app_of()
        service = getattr(getattr(app, 'state', None), 'service', None)
        if service is None or not service.loaded.is_set():
            if self.on_loading is not None:
                self.on_loading(sig)
            return super().handle_exit(sig, frame)
        if self.draining or self.should_exit:
            return super().handle_exit(sig, frame)
        self.draining = True
        threading.Thread(target=self.drain, args=(service, sig), name='solov2-serve-drain', daemon=True).start()

    def drain(self, service, sig: int = signal.SIGTERM) -> None:
        LOG.info('stopping: the requests in flight finish (at most %g s), new ones get 503', service.settings.timeout_s)
        service.drain(service.settings.timeout_s)
        service.close()
        super().handle_exit(sig, None)


class DrainingProcess(Process):
    """A worker process of uvicorn's ``Multiprocess`` (0.51 and later, whose supervisor takes no ``target``)
    running a ``DrainingServer`` of ``app_of``."""

    def __init__(self, config, sockets, app_of: Callable[[], Any]):
        self.app_of = app_of
        super().__init__(config, sockets)

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(self.config, self.app_of)
        return self._server
