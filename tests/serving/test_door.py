"""The service's door over raw sockets (one server for the module, one request in flight at
most): a full queue refuses before the body is read; a body trickled under the least rate gets
408; a refusal that leaves a body unread closes the connection after reading and dropping a
little more of it (a 2 GB body is not drained; a 15 MB one sent whole gets its answer, no reset);
a malformed request gets the JSON error shape; large answers are gzipped for a client that
asks; one log line a request, the probes at debug level."""
import gzip
import json
import logging
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from solov2.core.paths import SAMPLE_IMAGES
from solov2.model.inference.dygraph_backend import DygraphBackend
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving
from tests.serving.test_service import port_of, received

PICTURE = (Path(SAMPLE_IMAGES) / 'shapes_000023.jpg').read_bytes()
SETTINGS = ServeSettings(SMALL_MODEL, queue_size=1, max_body_mb=1, min_upload_kb_s=64, body_timeout_s=30,
                         timeout_s=20)


@pytest.fixture(scope='module')
def client():
    with serving(SETTINGS) as running:
        yield running


def connect(client) -> socket.socket:
    return socket.create_connection(('127.0.0.1', port_of(client)), timeout=10)


def head(length: int) -> bytes:
    return (f'POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n'
            f'Content-Length: {length}\r\n\r\n').encode()


def answer_of(raw: bytes):
    """(status line, headers {name: value}, JSON body) of an HTTP answer."""
    top, body = raw.split(b'\r\n\r\n', 1)
    lines = top.decode().split('\r\n')
    headers = {name.lower(): value.strip() for name, value in (line.split(':', 1) for line in lines[1:])}
    return lines[0], headers, json.loads(body)


def test_a_full_queue_refuses_before_the_body_is_read(client, monkeypatch):
    """One request in flight (a network run that sleeps 3 s) fills --queue-size 1: the next one,
    which sent its headers only, gets 503 at once and its connection closed."""
    slow = DygraphBackend.run
    monkeypatch.setattr(DygraphBackend, 'run', lambda *args: time.sleep(3) or slow(*args))
    busy = threading.Thread(target=client.post, args=('/v1/segment',), kwargs={'content': PICTURE})
    busy.start()
    deadline = time.monotonic() + 10
    while metric_families(client)['solov2_in_flight'].samples[0].value < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    with connect(client) as waiting:
        waiting.sendall(head(500_000))          # and not one byte of the body
        began = time.monotonic()
        status, headers, body = answer_of(received(waiting))
        took = time.monotonic() - began
    busy.join()
    assert status.startswith('HTTP/1.1 503') and took < 2, (status, took, body)
    assert 'requests in flight' in body['error'] and headers['connection'] == 'close' and body['request_id']


def test_a_large_upload_refused_before_its_body_is_read_gets_its_503_not_a_reset(monkeypatch):
    """The one in-flight slot held (a network run that sleeps): six clients each uploading a legal
    15 MB body, more than the sockets' buffers hold, the plain way (send it all, then read the
    answer), are refused before it is read; each reads its 503 and its Retry-After (the server reads
    and drops the rest of the body before it closes) instead of a connection reset while it sends."""
    slow = DygraphBackend.run
    monkeypatch.setattr(DygraphBackend, 'run', lambda *args: time.sleep(4) or slow(*args))
    body = bytes(15 * 2**20)
    with serving(ServeSettings(SMALL_MODEL, queue_size=1, max_body_mb=32, timeout_s=20)) as running:
        busy = threading.Thread(target=running.post, args=('/v1/segment',), kwargs={'content': PICTURE})
        busy.start()
        while metric_families(running)['solov2_in_flight'].samples[0].value < 1:
            time.sleep(0.02)

        def upload(_):
            try:
                with connect(running) as uploading:
                    uploading.sendall(head(len(body)) + body)
                    status, headers, _ = answer_of(received(uploading))
                    return status.split()[1], headers.get('retry-after')
            except OSError as exc:
                return type(exc).__name__, None
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(upload, range(6)))
        busy.join()
    assert answers == [('503', '1')] * 6, answers


def test_a_body_trickled_under_the_least_rate_gets_408_and_is_closed(client):
    """1 KB every 0.25 s (4 KB/s, under 64 KB/s): 408 after the first 2 s, long before the
    idle timeout (30 s) or the deadline (20 s); the connection closed."""
    with connect(client) as slow:
        slow.sendall(head(200_000))
        began = time.monotonic()
        while not select.select([slow], [], [], 0.25)[0] and time.monotonic() - began < 15:
            slow.sendall(b'\xff' * 1024)
        status, headers, body = answer_of(received(slow))
    assert status.startswith('HTTP/1.1 408') and 'too slowly' in body['error'], (status, body)
    assert 2 < time.monotonic() - began < 8 and headers['connection'] == 'close'


def test_a_refusal_with_the_body_unread_closes_the_connection_instead_of_draining_it(client):
    """2 GB declared: 413 from the header, then the server closes (it would read 2 GB else)."""
    with connect(client) as big:
        big.sendall(head(2 * 2**30) + b'\xff' * 65536)
        status, headers, body = answer_of(received(big))
    assert status.startswith('HTTP/1.1 413') and headers['connection'] == 'close', status
    assert 'send a smaller file' in body['error'] and headers['x-request-id'] == body['request_id']
    assert client.post('/v1/segment', content=PICTURE).headers.get('connection') != 'close'   # a body read: kept


def test_a_malformed_request_gets_the_json_error_shape(client):
    with connect(client) as bad:
        bad.sendall(b'NOT HTTP AT ALL\r\n\r\n')
        status, headers, body = answer_of(received(bad))
    assert status.startswith('HTTP/1.1 400') and headers['content-type'] == 'application/json', (status, body)
    assert set(body) == {'error', 'request_id'} and headers['x-request-id'] == body['request_id']


def test_large_answers_are_gzipped_when_the_client_accepts_it(client):
    every = {'masks': 'polygons', 'min_score': 0}         # every instance: an answer over gzip's threshold
    plain = client.post('/v1/segment', content=PICTURE, params=every, headers={'Accept-Encoding': 'identity'})
    with client.stream('POST', '/v1/segment', content=PICTURE, params=every,
                       headers={'Accept-Encoding': 'gzip'}) as packed:
        sent = b''.join(packed.iter_raw())
    assert 'content-encoding' not in plain.headers and packed.headers['content-encoding'] == 'gzip'
    assert json.loads(gzip.decompress(sent)) == plain.json() and len(sent) < len(plain.content) / 2
    assert 'content-encoding' not in client.get('/healthz', headers={'Accept-Encoding': 'gzip'}).headers


def test_each_request_is_logged_once_with_its_id_status_and_latency_the_probes_at_debug(client, caplog):
    caplog.set_level(logging.DEBUG, logger='solov2.serving')
    client.get('/v1/model', headers={'X-Request-ID': 'log-1'})
    client.get('/readyz', headers={'X-Request-ID': 'probe-1'})
    client.post('/v1/segment', content=b'', headers={'X-Request-ID': 'log-2'})
    lines = {record.getMessage().split()[0]: record for record in caplog.records
             if record.name == 'solov2.serving.app' and record.getMessage().split()[0] in
             ('log-1', 'probe-1', 'log-2')}
    assert lines['log-1'].getMessage().startswith('log-1 127.0.0.1 GET /v1/model 200 ')      # the client's address
    assert lines['log-1'].levelno == logging.INFO
    assert lines['log-2'].getMessage().startswith('log-2 127.0.0.1 POST /v1/segment 400 ')
    assert lines['probe-1'].levelno == logging.DEBUG and lines['log-1'].getMessage().endswith(' ms')
