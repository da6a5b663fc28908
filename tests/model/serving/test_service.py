"""The service over real HTTP on 127.0.0.1 (one server for the module): answers equal to
``Segmenter``'s for the same bytes, alone and batched across concurrent requests; each bad
body gets its 4xx and the next request its answer; overload gives 503 and recovers; a slow
client holds up nobody; the deadline gives 504; /metrics parses; readiness."""
import io
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from solov2 import Segmenter
from solov2.core.paths import SAMPLE_IMAGES
from tests.model.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

PICTURES = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))
SETTINGS = ServeSettings(**SMALL_MODEL, max_batch=4, max_wait_ms=50, queue_size=6, max_body_mb=1,
                         max_pixels=2_000_000)


@pytest.fixture(scope='module')
def client():
    with serving(SETTINGS) as running:
        yield running


@pytest.fixture(scope='module')
def segmenter():
    return Segmenter(**SMALL_MODEL)


def same_answer(got: dict, expected: dict) -> None:
    """Labels, boxes and masks (COCO RLE) equal, scores within 1e-4."""
    assert got['image_size'] == expected['image_size'] and got['class_names'] == expected['class_names']
    assert len(got['instances']) == len(expected['instances']) > 0
    for one, other in zip(got['instances'], expected['instances']):
        assert (one['label'], one['name'], one['box'], one['mask']) == \
            (other['label'], other['name'], other['box'], other['mask'])
        assert one['score'] == pytest.approx(other['score'], abs=1e-4)


def batch_count(client) -> float:
    families = metric_families(client)
    return next(s.value for s in families['solov2_batch_size'].samples if s.name == 'solov2_batch_size_count')


def test_answers_equal_segmenters_for_the_same_bytes(client, segmenter):
    for path in PICTURES[::2]:          # square ones and the wide one
        data = path.read_bytes()
        answer = client.post('/v1/segment', content=data, headers={'Content-Type': 'image/jpeg'})
        assert answer.status_code == 200, answer.text
        same_answer(answer.json(), segmenter(data).to_dict())
    data = PICTURES[0].read_bytes()
    form = client.post('/v1/segment', files={'file': ('x.jpg', data, 'image/jpeg')},
                       params={'score_threshold': 0.3, 'max_instances': 3, 'masks': 'polygons'}).json()
    expected = segmenter(data, score_threshold=0.3, max_instances=3)
    assert [one['score'] for one in form['instances']] == pytest.approx(expected.scores.tolist(), abs=1e-4)
    assert [one['polygons'] for one in form['instances']] == [[p.ravel().tolist() for p in one]
                                                               for one in expected.polygons()]


def test_concurrent_requests_share_network_batches_with_the_same_answers(client, segmenter):
    """Pictures of two padded sizes at once: each size's run their own batches."""
    square = [path for path in PICTURES if cv2.imread(str(path)).shape[:2] == (256, 256)]
    wide = [path for path in PICTURES if cv2.imread(str(path)).shape[:2] != (256, 256)]
    bodies = [path.read_bytes() for path in square[:2] + wide[:1]] * 2      # as many as the queue takes
    before = batch_count(client)
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda data: client.post('/v1/segment', content=data), bodies))
    assert [answer.status_code for answer in answers] == [200] * len(bodies)
    assert batch_count(client) - before < len(bodies)            # fewer network runs than pictures
    alone = {data: segmenter(data).to_dict() for data in set(bodies)}
    for data, answer in zip(bodies, answers):
        same_answer(answer.json(), alone[data])


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring ``width`` x ``height`` RGB, and nothing else."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + struct.pack('>I', 13) + b'IHDR' + ihdr + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr))


BAD_BODIES = [
    ('empty', b'', 'image/jpeg', 400, 'empty'),
    ('not a picture', b'hello, this is text', 'image/png', 400, 'cannot read'),
    ('truncated JPEG', PICTURES[0].read_bytes()[:5000], 'image/jpeg', 400, 'cannot read'),
    ('huge declared size', png_header(40000, 30000), 'image/png', 413, '40000x30000'),
    ('too many bytes', b'\xff' * (2 * 2**20), 'image/jpeg', 413, 'over the limit of 1 MB'),
    ('wrong content type', b'{"picture": 1}', 'application/json', 415, 'application/json'),
    ('form without file', b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
     'multipart/form-data; boundary=b', 400, '"file"'),
]


@pytest.mark.parametrize('name, body, content_type, status, said', BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_a_bad_body_gets_its_error_and_the_next_request_its_answer(client, name, body, content_type, status, said):
    refused = client.post('/v1/segment', content=body, headers={'Content-Type': content_type})
    assert refused.status_code == status and said in refused.json()['error'], refused.text
    assert client.post('/v1/segment', content=PICTURES[1].read_bytes()).status_code == 200


def test_bad_query_and_big_pictures_are_refused_with_reasons(client):
    bad = client.post('/v1/segment', content=PICTURES[0].read_bytes(), params={'masks': 'svg', 'max_instances': 0})
    assert bad.status_code == 400 and 'masks' in bad.json()['error']
    bad = client.post('/v1/segment', content=PICTURES[0].read_bytes(), params={'max_instances': 0})
    assert bad.status_code == 400 and 'max_instances' in bad.json()['error']
    big = cv2.imencode('.webp', np.zeros((1500, 1500, 3), np.uint8))[1].tobytes()     # no header size: decoded
    refused = client.post('/v1/segment', content=big, headers={'Content-Type': 'image/webp'})
    assert refused.status_code == 413 and '1500x1500' in refused.json()['error']


def test_overload_gets_503_with_retry_after_and_recovers(client):
    bodies = [PICTURES[0].read_bytes()] * 16
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: client.post('/v1/segment', content=data), bodies))
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 4, statuses
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.headers['Retry-After'] == '1' and 'queue-size' in busy.json()['error']
    assert client.post('/v1/segment', content=bodies[0]).status_code == 200


def test_a_slow_client_holds_up_nobody(client):
    data = PICTURES[2].read_bytes()
    port = int(str(client.base_url).rsplit(':', 1)[1])
    with socket.create_connection(('127.0.0.1', port), timeout=30) as slow:
        slow.sendall(f'POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n'
                     f'Content-Length: {len(data)}\r\n\r\n'.encode() + data[:100])
        began = time.monotonic()
        assert client.post('/v1/segment', content=data).status_code == 200
        assert time.monotonic() - began < 10
        slow.sendall(data[100:])
        assert slow.recv(64).startswith(b'HTTP/1.1 200')


def test_metrics_parse_as_prometheus_text(client):
    client.post('/v1/segment', content=b'')
    families = metric_families(client)
    requests = {(s.labels['route'], s.labels['status']): s.value for s in families['solov2_requests'].samples
                if s.name == 'solov2_requests_total'}
    assert requests[('/v1/segment', '200')] >= 1 and requests[('/v1/segment', '400')] >= 1
    assert {'solov2_request_seconds', 'solov2_batch_size', 'solov2_queue_depth', 'solov2_in_flight'} <= set(families)
    assert families['solov2_in_flight'].samples[0].value == 0


def test_model_and_openapi_pages(client):
    model = client.get('/v1/model').json()
    assert (model['config'], model['classes'], model['backend']) == (9, ['circle', 'square', 'triangle', 'star'],
                                                                       'dygraph')
    assert '/v1/segment' in client.get('/openapi.json').json()['paths']     # the rest: test_contract.py


def test_a_request_past_its_deadline_gets_504_and_the_service_goes_on():
    with serving(ServeSettings(**SMALL_MODEL, timeout_s=0.001)) as hurried:
        late = hurried.post('/v1/segment', content=PICTURES[0].read_bytes())
        assert late.status_code == 504 and 'timeout-s' in late.json()['error']
        assert hurried.get('/readyz').status_code == 200


def test_not_ready_until_the_model_loads_and_says_why(tmp_path):
    with serving(ServeSettings(weights=str(tmp_path / 'missing.pdparams'), backend='dygraph'), ready=False) as broken:
        deadline = time.monotonic() + 30
        while 'loading' in broken.get('/readyz').json()['error'] and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = broken.get('/readyz')
        assert ready.status_code == 503 and 'missing.pdparams' in ready.json()['error']
        assert broken.get('/healthz').status_code == 200
        assert broken.post('/v1/segment', content=io.BytesIO(PICTURES[0].read_bytes()).read()).status_code == 503
