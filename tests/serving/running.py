"""Running the service for a test: on 127.0.0.1 in a thread of the test process (uvicorn, as
tools/serve.py runs it), with real HTTP clients; skipped without the serve extra."""
import contextlib
import threading
import time
from typing import Iterator

import pytest

pytest.importorskip('fastapi', reason='the service needs requirements-serve.txt')
httpx = pytest.importorskip('httpx', reason='the service tests need requirements-test.txt')
uvicorn = pytest.importorskip('uvicorn', reason='the service needs requirements-serve.txt')
prometheus_parser = pytest.importorskip('prometheus_client.parser', reason='the service needs requirements-serve.txt')

from solov2 import ModelSpec  # noqa: E402
from solov2.core.paths import SHIPPED_WEIGHTS  # noqa: E402
from solov2.serving.app import ServeSettings, create_app  # noqa: E402
from solov2.serving.wire import SERVER_OPTIONS  # noqa: E402
from tests.helpers import free_port  # noqa: E402

SMALL_MODEL = ModelSpec(SHIPPED_WEIGHTS, backend='dygraph', threads=1)   # starts in a second


def metric_families(client) -> dict:
    """{name: family} of the service's /metrics, parsed as Prometheus text."""
    families = prometheus_parser.text_string_to_metric_families(client.get('/metrics').text)
    return {family.name: family for family in families}


def wait_ready(client, timeout_s: float = 60.0, path: str = '/readyz') -> None:
    """Wait until ``path`` answers 200 (the model loaded and warmed up); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if client.get(path).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f'{path} did not answer 200 within {timeout_s} s')


@contextlib.contextmanager
def serving(settings: ServeSettings, ready: bool = True, app=None) -> Iterator['httpx.Client']:
    """An HTTP client of the service for ``settings`` (or of ``app``, made by ``create_app``) running on
    127.0.0.1 in a thread (ready when ``ready``); the server stops, finishing its requests, when the block ends."""
    port = free_port()
    app = create_app(settings) if app is None else app
    server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning',
                                           **SERVER_OPTIONS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=30) as client:
            wait_ready(client, path='/readyz' if ready else '/healthz')
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
