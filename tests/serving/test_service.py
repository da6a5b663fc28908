"""The service over real HTTP on 127.0.0.1 (one server for the module): answers equal to
``Segmenter``'s for the same bytes, alone and batched across concurrent requests; each bad
body gets its 4xx and the next request its answer; overload gives 503 and recovers; stalled
uploads hold up nobody and get 408; an engine failure is a JSON 500; request ids; the deadline
gives 504; /metrics parses; readiness."""
import http.client
import io
import json
import logging
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from solov2 import ModelSpec, Segmenter
from solov2.core.paths import CACHE_ENV, SAMPLE_IMAGES
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.tools import serve
from tests.pictures import large_jpeg, png_header, tiff_bomb, webp_bomb
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

PICTURES = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))
SETTINGS = ServeSettings(SMALL_MODEL, max_batch=4, max_wait_ms=50, queue_size=6, max_body_mb=1,
                         max_pixels=2_000_000, max_uploads=17, body_timeout_s=6, min_upload_kb_s=0)


@pytest.fixture(scope='module')
def client():
    with serving(SETTINGS) as running:
        yield running


@pytest.fixture(scope='module')
def segmenter():
    return Segmenter(SMALL_MODEL)


def same_answer(got: dict, expected: dict) -> None:
    """Each instance's fields equal (masks as COCO RLE) but its score, within 1e-4."""
    assert got['image_size'] == expected['image_size'] and got['class_names'] == expected['class_names']
    assert len(got['instances']) == len(expected['instances']) > 0
    for one, other in zip(got['instances'], expected['instances']):
        assert {**one, 'score': None} == {**other, 'score': None}
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


HDR = cv2.imencode('.hdr', np.ones((64, 64, 3), np.float32))[1].tobytes()     # OpenCV decodes it, Pillow not
BAD_BODIES = [
    ('empty', b'', 'image/jpeg', 400, 'empty'),
    ('not a picture', b'hello, this is text', 'image/png', 400, 'cannot read'),
    ('truncated JPEG', PICTURES[0].read_bytes()[:5000], 'image/jpeg', 400, 'cannot read'),
    ('huge declared size', png_header(40000, 30000), 'image/png', 413, '40000x30000'),
    ('WebP bomb', webp_bomb(12000, 12000), 'image/webp', 413, '12000x12000 = 144 MP, over the limit of 2 MP'),
    ('TIFF bomb', tiff_bomb(12000, 12000), 'image/tiff', 413, '144 MP, over the limit of 2 MP: send a smaller'),
    ('no size in its header', HDR, 'image/vnd.radiance', 400, 'whose header gives its size'),
    ('too many bytes', b'\xff' * (2 * 2**20), 'image/jpeg', 413, 'over the limit of 1 MB'),
    ('wrong content type', b'{"picture": 1}', 'application/json', 415, 'application/json'),
    ('wrong type, too many bytes', b'\xff' * (2 * 2**20), 'text/plain', 415, 'text/plain'),    # type first
    ('form without file', b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
     'multipart/form-data; boundary=b', 400, '"file"'),
]


@pytest.mark.parametrize('name, body, content_type, status, said', BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_a_bad_body_gets_its_error_and_the_next_request_its_answer(client, name, body, content_type, status, said):
    """The error says what the client can change: never a setting of the service, nor how to lift a limit."""
    refused = client.post('/v1/segment', content=body, headers={'Content-Type': content_type})
    assert refused.status_code == status and said in refused.json()['error'], refused.text
    assert not re.search(r'--[a-z]|max_image_pixels|overrides|=0', refused.json()['error']), refused.text
    assert client.post('/v1/segment', content=PICTURES[1].read_bytes()).status_code == 200


def test_bad_query_and_big_pictures_are_refused_with_reasons(client):
    bad = client.post('/v1/segment', content=PICTURES[0].read_bytes(), params={'masks': 'svg', 'max_instances': 0})
    assert bad.status_code == 400 and 'masks' in bad.json()['error']
    bad = client.post('/v1/segment', content=PICTURES[0].read_bytes(), params={'max_instances': 0})
    assert bad.status_code == 400 and 'max_instances' in bad.json()['error']
    big = cv2.imencode('.webp', np.zeros((1500, 1500, 3), np.uint8))[1].tobytes()
    refused = client.post('/v1/segment', content=big, headers={'Content-Type': 'image/webp'})
    assert refused.status_code == 413 and '1500x1500' in refused.json()['error']


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) since it began or was reset, MB."""
    return int(re.search(r'VmHWM:\s+(\d+) kB', Path('/proc/self/status').read_text()).group(1)) / 1024


def test_bombs_get_413_from_their_headers_without_the_memory_to_decode_them(client):
    """A WebP of 36 bytes and a TIFF of 6 KB that decode to 144 MP each (1 GB held while
    decoding) get 413: the peak resident memory of the process running the server (this
    one; the peak reset first) grows by less than 100 MB."""
    Path('/proc/self/clear_refs').write_text('5')         # the peak becomes the current use
    before = peak_rss_mb()
    for bomb in (webp_bomb, tiff_bomb):
        refused = client.post('/v1/segment', content=bomb(12000, 12000))
        assert refused.status_code == 413 and '12000x12000' in refused.json()['error'], refused.text
    assert peak_rss_mb() - before < 100


def test_fast_decode_answers_as_the_library_does_on_the_whole_picture(segmenter):
    """--fast-decode (``ModelSpec.fast_decode``): a large JPEG is answered as ``Segmenter`` with
    it answers the bytes, on the whole picture's grid, not as the whole decoding is."""
    assert serve.settings_of(serve.parse_args(['--fast-decode'])).model.fast_decode is True
    fast, data = replace(SMALL_MODEL, fast_decode=True), large_jpeg(PICTURES[-1], 5)      # 2560 x 1280
    with serving(ServeSettings(fast)) as quick:
        got = quick.post('/v1/segment', content=data, headers={'Content-Type': 'image/jpeg'}).json()
    same_answer(got, Segmenter(fast)(data).to_dict())
    assert got['image_size'] == [1280, 2560] and got != segmenter(data).to_dict()


def test_0_is_no_pixel_limit_in_the_service_as_in_the_library():
    """The config's max_image_pixels=0 is no limit, warm-up included (its picture was refused,
    and the service never ready): a picture whose header gives no size is decoded. Without
    --max-pixels the config's limit holds, --max-pixels 0 is none."""
    with serving(ServeSettings(replace(SMALL_MODEL, overrides=('max_image_pixels=0',)))) as unlimited:
        assert unlimited.get('/v1/model').json()['max_pixels'] == 0
        assert unlimited.post('/v1/segment', content=HDR).status_code == 200
    assert serve.settings_of(serve.parse_args([])).max_pixels is None
    assert serve.settings_of(serve.parse_args(['--max-pixels', '0'])).max_pixels == 0


def test_overload_gets_503_with_retry_after_and_recovers(client):
    bodies = [PICTURES[0].read_bytes()] * 16
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda data: client.post('/v1/segment', content=data), bodies))
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 4, statuses
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.headers['Retry-After'] == '1' and 'requests in flight' in busy.json()['error']
    assert client.post('/v1/segment', content=bodies[0]).status_code == 200


def port_of(client) -> int:
    return int(str(client.base_url).rsplit(':', 1)[1])


def received(connection: socket.socket) -> bytes:
    """What the service sent on ``connection`` until it closed it."""
    parts = [connection.recv(65536)]
    while parts[-1]:
        parts.append(connection.recv(65536))
    return b''.join(parts)


def uploads_held(client) -> float:
    """The request bodies the service is receiving now (its ``solov2_uploads`` metric)."""
    return next(s.value for s in metric_families(client)['solov2_uploads'].samples)


def test_stalled_uploads_hold_up_nobody_and_get_408(client):
    """Uploads that stop half-way fill --max-uploads, not the requests in flight: the next upload
    is refused before it is read, one of them that goes on is answered, a good request too, at
    once; the stalled ones get 408 once they have sent nothing for --body-timeout-s, and are closed."""
    data = PICTURES[2].read_bytes()
    head = (f'POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n'
            f'Content-Length: {len(data)}\r\n\r\n').encode()
    began = time.monotonic()
    uploads = [socket.create_connection(('127.0.0.1', port_of(client)), timeout=10)
               for _ in range(SETTINGS.max_uploads)]
    try:
        for upload in uploads:
            upload.sendall(head + data[:len(data) // 2])
        while uploads_held(client) < SETTINGS.max_uploads and time.monotonic() - began < SETTINGS.body_timeout_s - 2:
            time.sleep(0.01)            # a probe sent sooner may take the last slot itself for a moment
        refused = client.post('/v1/segment', content=b'')
        assert refused.status_code == 503 and 'uploads being received' in refused.json()['error'], refused.text
        slow = uploads.pop()
        slow.sendall(data[len(data) // 2:])
        assert slow.recv(64).startswith(b'HTTP/1.1 200')
        assert client.post('/v1/segment', content=data).status_code == 200
        assert time.monotonic() - began < SETTINGS.body_timeout_s        # beside the stalled ones
        for upload in uploads:
            answer = received(upload)
            assert answer.startswith(b'HTTP/1.1 408') and b'the body stopped coming' in answer, answer
        assert time.monotonic() - began > SETTINGS.body_timeout_s
    finally:
        for upload in uploads:
            upload.close()


def test_an_engine_failure_is_a_json_500_counted_with_the_connection_kept(client, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError('the engine broke')
    before = requests_answered(client).get(('/v1/segment', '500'), 0)
    connection = http.client.HTTPConnection('127.0.0.1', port_of(client), timeout=30)
    monkeypatch.setattr(DygraphBackend, 'run', broken)
    connection.request('POST', '/v1/segment', PICTURES[0].read_bytes(), {'X-Request-ID': 'trace-42'})
    failed = connection.getresponse()
    answer = json.loads(failed.read())
    assert failed.status == 500 and failed.getheader('X-Request-ID') == answer['request_id'] == 'trace-42'
    assert 'RuntimeError' in answer['error']
    assert any('trace-42' in record.getMessage() and 'the engine broke' in record.exc_text
               for record in caplog.records)
    monkeypatch.undo()
    connection.request('GET', '/healthz')                       # the same connection, still open
    assert connection.getresponse().status == 200
    connection.close()
    assert requests_answered(client)[('/v1/segment', '500')] == before + 1


def test_each_answer_has_a_request_id_that_its_error_names(client):
    assert client.get('/healthz', headers={'X-Request-ID': 'abc-1.2_3'}).headers['X-Request-ID'] == 'abc-1.2_3'
    made = {client.get('/healthz', headers={'X-Request-ID': bad}).headers['X-Request-ID']
            for bad in ('a b', 'x' * 129, 'a;b', '')}
    assert len(made) == 4 and all(re.fullmatch('[0-9a-f]{32}', one) for one in made)
    refused = client.post('/v1/segment', content=b'', headers={'X-Request-ID': 'r-1'})
    assert refused.json()['request_id'] == refused.headers['X-Request-ID'] == 'r-1'


def requests_answered(client) -> dict:
    """{(route, status): count} of the service's solov2_requests_total."""
    return {(s.labels['route'], s.labels['status']): s.value for s in metric_families(client)['solov2_requests'].samples
            if s.name == 'solov2_requests_total'}


def test_metrics_parse_as_prometheus_text(client):
    client.post('/v1/segment', content=b'')
    families, requests = metric_families(client), requests_answered(client)
    assert requests[('/v1/segment', '200')] >= 1 and requests[('/v1/segment', '400')] >= 1
    assert {'solov2_request_seconds', 'solov2_batch_size', 'solov2_queue_depth', 'solov2_in_flight',
            'solov2_uploads'} <= set(families)
    assert families['solov2_in_flight'].samples[0].value == families['solov2_uploads'].samples[0].value == 0


def test_model_and_openapi_pages(client):
    model = client.get('/v1/model').json()
    assert (model['config'], model['classes'], model['backend']) == (9, ['circle', 'square', 'triangle', 'star'],
                                                                       'dygraph')
    assert (model['precision'], model['pinned']) == ('f32', False)
    assert model['weights'] == 'shapes_r18.pdparams' and str(os.getpid()) not in json.dumps(model)   # no path, no pid
    assert client.get('/readyz').json() == {'ready': True, 'engine': 'dygraph'}
    assert '/v1/segment' in client.get('/openapi.json').json()['paths']     # the rest: test_contract.py


def test_a_request_past_its_deadline_gets_504_and_the_service_goes_on(monkeypatch):
    """A network run slower than ``timeout_s`` (a stand-in that sleeps 1 s first): 504, then ready.
    A body still coming at the deadline is the client's slowness: 408, not a 504 that asks for
    a smaller picture."""
    slow = DygraphBackend.run
    with serving(ServeSettings(SMALL_MODEL, timeout_s=0.3)) as hurried:
        def late_body():
            yield PICTURES[0].read_bytes()[:1000]
            time.sleep(0.6)
            yield PICTURES[0].read_bytes()[1000:]
        uploaded = hurried.post('/v1/segment', content=late_body())
        assert uploaded.status_code == 408 and 'did not arrive within 0.3 s' in uploaded.json()['error']
        monkeypatch.setattr(DygraphBackend, 'run', lambda *args: time.sleep(1.0) or slow(*args))
        late = hurried.post('/v1/segment', content=PICTURES[0].read_bytes())
        assert late.status_code == 504 and 'no answer within 0.3 s' in late.json()['error']
        assert 'smaller' not in late.json()['error'] + uploaded.json()['error']
        assert hurried.get('/readyz').status_code == 200


def test_an_engine_in_place_of_the_one_asked_for_is_named_in_readyz_and_metrics(tmp_path, monkeypatch, caplog):
    """auto with a cache that cannot be written (a file where its folder would be) serves on
    dygraph, several times slower: ready, but /readyz, /metrics and a WARNING say so."""
    (tmp_path / 'file').write_text('')
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'file' / 'cache'))
    with caplog.at_level(logging.WARNING, logger='solov2'), \
            serving(ServeSettings(ModelSpec(SMALL_MODEL.weights, backend='auto', threads=1))) as fallen:
        ready = fallen.get('/readyz').json()
        engines = metric_families(fallen)['solov2_engine'].samples
    assert ready['engine'] == 'dygraph' and 'dygraph runs instead (several times slower)' in ready['fallback']
    assert [(one.labels, one.value) for one in engines] == [({'asked': 'auto', 'engine': 'dygraph', 'precision': 'f32',
                                                              'pinned': 'false', 'fallback': 'true'}, 1.0)]
    assert any(record.getMessage().startswith('ready: ') and 'dygraph runs instead' in record.getMessage()
               for record in caplog.records if record.levelno == logging.WARNING)


def test_not_ready_until_the_model_loads_and_says_why(tmp_path):
    with serving(ServeSettings(ModelSpec(tmp_path / 'missing.pdparams', backend='dygraph')), ready=False) as broken:
        deadline = time.monotonic() + 30
        while 'loading' in broken.get('/readyz').json()['error'] and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = broken.get('/readyz')
        assert ready.status_code == 503 and 'missing.pdparams' in ready.json()['error']
        assert broken.get('/healthz').status_code == 200
        assert broken.post('/v1/segment', content=io.BytesIO(PICTURES[0].read_bytes()).read()).status_code == 503


def test_a_stopping_service_counts_its_refusals_as_stopping_not_as_not_ready():
    from solov2.serving.app import create_app
    app = create_app(ServeSettings(SMALL_MODEL))
    with serving(ServeSettings(SMALL_MODEL), app=app) as client:
        app.state.service.drain(0)
        refused = client.post('/v1/segment', content=PICTURES[0].read_bytes(), headers={'Content-Type': 'image/jpeg'})
        samples = metric_families(client)['solov2_refused'].samples
    assert (refused.status_code, refused.json()['error'], refused.headers['retry-after']) == (
        503, 'the service is stopping', '1')
    assert [(one.labels, one.value) for one in samples if one.name.endswith('_total')] == [({'reason': 'stopping'}, 1)]


def test_answers_are_encoded_in_a_worker_and_healthz_answers_while_they_are_made(monkeypatch):
    """The answer's bytes (JSON, and gzip when the client takes it) are made in the worker's encode stage: no
    answer's instance is turned into JSON on a thread running the event loop, so ``/healthz`` answers within a few
    milliseconds while answers whose instances take 0.2 s each to encode are made; a gzipped answer decodes to
    the same."""
    import asyncio
    import threading
    on_loop, dumps = [], json.dumps

    def slow(content, *args, **kwargs):
        if isinstance(content, dict) and 'polygons' in content:        # an answer's instance
            try:
                asyncio.get_running_loop()
                on_loop.append(threading.current_thread().name)
            except RuntimeError:
                pass
            time.sleep(0.2)
        return dumps(content, *args, **kwargs)
    picture = (Path(SAMPLE_IMAGES) / 'shapes_000023.jpg').read_bytes()
    with serving(ServeSettings(SMALL_MODEL)) as client:
        monkeypatch.setattr(json, 'dumps', slow)
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(client.post, '/v1/segment', content=picture, params={'masks': 'polygons'},
                                   headers={'Accept-Encoding': encoding}) for encoding in ('gzip', 'identity')]
            time.sleep(0.2)
            probes = []
            while not all(answer.done() for answer in answers):
                began = time.perf_counter()
                assert client.get('/healthz').status_code == 200
                probes.append(time.perf_counter() - began)
        zipped, plain = [answer.result() for answer in answers]
    assert not on_loop and max(probes) < 0.3, (on_loop, probes)
    assert zipped.status_code == plain.status_code == 200 and zipped.json() == plain.json()
    assert plain.headers.get('content-encoding') is None and plain.headers['content-type'] == 'application/json'


def test_the_polygon_tracer_is_compiled_before_the_service_says_it_is_ready(monkeypatch):
    """Warming up compiles the tracer's loops (``compile_tracer``, seconds the first time) before ``/readyz``
    answers 200, so that the first request for polygons does not wait for it."""
    from solov2.serving import app as service_app
    compiled_when = []
    monkeypatch.setattr(service_app, 'compile_tracer', lambda: compiled_when.append(time.monotonic()))
    with serving(ServeSettings(SMALL_MODEL)) as client:
        ready_when = time.monotonic()
        assert client.get('/readyz').status_code == 200
    assert len(compiled_when) == 1 and compiled_when[0] < ready_when
