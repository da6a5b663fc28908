"""The service's in-flight budget (``--max-in-flight-mb``): the pictures being decoded never hold
more than it, a picture that finds no room is refused at once (503, counted by reason) and one
alone over it gets 413, both before decoding; one whose request ended while it waited for a
decoding thread is never decoded, and the budget's default lowers the default pixel limit."""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from solov2 import Segmenter
from solov2.core.paths import SAMPLE_IMAGES
from solov2.model.inference.memory import MemoryBudget, decode_cost
from solov2.serving import app
from solov2.tools import serve
from tests.helpers import REPO_DIR
from tests.pictures import webp_bomb
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

PICTURE = cv2.imencode('.png', np.full((1000, 1000, 3), 90, np.uint8))[1].tobytes()
JPEG = {'Content-Type': 'image/jpeg'}
BUDGET_MB = 1.5 * decode_cost(PICTURE, 1000, 1000, 320, 640) / 2**20        # room for one PICTURE (config 9's size)


class Decodes:
    """``Service.read`` (a picture's decode) counted: calls, and the most running at once (each made to last
    ``seconds``)."""

    def __init__(self, seconds: float):
        self.seconds, self.calls, self.running, self.most = seconds, 0, 0, 0
        self.lock, self.decode = threading.Lock(), app.Service.read

    def __call__(self, *args, **model):
        with self.lock:
            self.calls, self.running = self.calls + 1, self.running + 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.seconds)
            return self.decode(*args, **model)
        finally:
            with self.lock:
                self.running -= 1


def budget_in_use(client) -> float:
    return metric_families(client)['solov2_in_flight_budget_bytes'].samples[0].value


def refused_by_reason(client) -> dict:
    """{reason: 503s} counted by /metrics."""
    return {sample.labels['reason']: sample.value for sample in metric_families(client)['solov2_refused'].samples
            if sample.name.endswith('_total')}


def test_pictures_being_decoded_never_hold_more_than_the_budget_and_one_over_it_gets_413(monkeypatch):
    """Six pictures at once, four decoding threads, a budget of 1.5 pictures: one decodes at a time,
    the pictures that find no room are refused at once (503 with Retry-After, counted under 'decode
    budget'), and each is answered when sent again after its Retry-After; a WebP that alone needs more
    than the budget gets 413, undecoded."""
    decodes = Decodes(0.5)
    settings = ServeSettings(SMALL_MODEL, helper_threads=4, max_pixels=20_000_000, max_in_flight_mb=BUDGET_MB)
    with serving(settings) as client:
        monkeypatch.setattr(app.Service, 'read', lambda service, data, **model: decodes(service, data, **model))

        def post_until_answered(data):
            refusals = []
            while (answer := client.post('/v1/segment', content=data)).status_code == 503:
                refusals.append(answer.elapsed.total_seconds())
                time.sleep(float(answer.headers['Retry-After']) / 10)
            return answer.status_code, refusals
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(post_until_answered, [PICTURE] * 6))
        assert [status for status, _ in answers] == [200] * 6
        refusals = [seconds for _, waits in answers for seconds in waits]
        assert refusals and max(refusals) < decodes.seconds, refusals      # refused at once, not after a wait
        assert (decodes.calls, decodes.most) == (6, 1)
        assert refused_by_reason(client) == {'in-flight budget': len(refusals)}
        refused = client.post('/v1/segment', content=webp_bomb(3000, 3000))
        assert refused.status_code == 413 and 'send a smaller picture' in refused.json()['error'], refused.text
        assert '3000x3000' in refused.json()['error'] and decodes.calls == 6
        assert budget_in_use(client) == 0


def test_a_picture_refused_for_room_or_whose_request_ended_while_it_waited_is_never_decoded(monkeypatch):
    """Room for one picture, one decoding thread busy for 1 s with another's decode: a picture that
    does not fit is refused at once, undecoded; one that fits but whose request ends (a deadline of
    0.4 s) while it waits for the thread is never decoded either; the budget is all given back."""
    decodes = Decodes(1.0)
    small = cv2.imencode('.png', np.full((100, 100, 3), 90, np.uint8))[1].tobytes()
    with serving(ServeSettings(SMALL_MODEL, timeout_s=0.4, max_in_flight_mb=BUDGET_MB, helper_threads=1)) as client:
        monkeypatch.setattr(app.Service, 'read', lambda service, data, **model: decodes(service, data, **model))
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(client.post, '/v1/segment', content=PICTURE)
            while decodes.calls < 1:
                if first.done():            # its deadline passed before the reading thread took it (a loaded
                    first = pool.submit(client.post, '/v1/segment', content=PICTURE)     # machine): dropped, again
                time.sleep(0.01)
            over, waiting = pool.map(lambda data: client.post('/v1/segment', content=data), [PICTURE, small])
        assert (first.result().status_code, over.status_code, waiting.status_code) == (504, 503, 504)
        assert over.headers['Retry-After'] == '1' and 'no room for this one' in over.json()['error']
        time.sleep(1.5)
        assert decodes.calls == 1 and budget_in_use(client) == 0


def test_a_flood_of_large_pictures_re_posted_leaves_small_ones_answered():
    """Six clients re-post a 16 MP picture (room for one at a time in the in-flight budget: quick to
    decode, slower to finish) as fast as they are answered, with as many in-flight slots as they are:
    a client sending a small picture every 0.2 s is answered every time, while the flood's pictures
    are answered or refused at once for room (the budget, or their half of the slots)."""
    large = cv2.imencode('.jpg', np.full((4000, 4000, 3), 90, np.uint8))[1].tobytes()
    small = cv2.imencode('.jpg', np.full((480, 640, 3), 150, np.uint8))[1].tobytes()
    budget = 1.5 * decode_cost(large, 4000, 4000, 320, 640) / 2**20
    flooders, seconds = 6, 4.0
    with serving(ServeSettings(SMALL_MODEL, max_in_flight_mb=budget, queue_size=flooders)) as client:
        stop_at, flood = time.monotonic() + seconds, []

        def re_post():
            while time.monotonic() < stop_at:
                flood.append(client.post('/v1/segment', content=large).status_code)

        def small_client():
            answers = []
            while time.monotonic() < stop_at:
                answers.append(client.post('/v1/segment', content=small))
                time.sleep(0.2)
            return answers
        with ThreadPoolExecutor(flooders + 1) as pool:
            for _ in range(flooders):
                pool.submit(re_post)
            answers = pool.submit(small_client).result()
        assert [answer.status_code for answer in answers] == [200] * len(answers)
        reasons = refused_by_reason(client)          # decoding one at a time, finishing at most half the slots
        assert set(flood) == {200, 503} and set(reasons) <= {'in-flight budget', 'large in flight'}
        assert sum(reasons.values()) == flood.count(503)
        assert max(answer.elapsed.total_seconds() for answer in answers) < seconds


def test_the_budget_setting_and_the_pixel_limit_it_gives(segmenter_app):
    """--max-in-flight-mb: checked, None by default (an eighth of the memory, at most 1 GB), 0 no
    budget; the default pixel limit is what the budget holds, when less than the config's."""
    assert serve.settings_of(serve.parse_args([])).max_in_flight_mb is None
    assert serve.settings_of(serve.parse_args(['--max-in-flight-mb', '0'])).max_in_flight_mb == 0
    with pytest.raises(SystemExit):
        serve.parse_args(['--max-in-flight-mb', '-1'])       # argparse: the flag named
    with pytest.raises(ValueError, match='max_in_flight_mb'):
        ServeSettings(SMALL_MODEL, max_in_flight_mb=-1)      # the library: its own name
    with pytest.warns(FutureWarning, match='max_decode_mb= is the old name of max_in_flight_mb='):
        old = serve.settings_of(serve.parse_args(['--max-decode-mb', '70']))        # the old flag, one release
    assert old.max_in_flight_mb == 70 and old.max_decode_mb is None
    with pytest.raises(ValueError, match='give one'):
        ServeSettings(SMALL_MODEL, max_in_flight_mb=70, max_decode_mb=70)
    assert segmenter_app(None).budget == min(2**30, app.default_budget()) > 0
    assert segmenter_app(0).max_pixels == 100_000_000
    assert segmenter_app(70).max_pixels == (70 * 2**20 - 3 * 4 * 3 * 320 * 640) // 7      # 9.97 MP


@pytest.fixture(scope='module')
def segmenter_app():
    """A Service around the small model (not served), for a budget of ``mb``."""
    segmenter, services = Segmenter(SMALL_MODEL), []

    def make(mb):
        services.append(app.Service(ServeSettings(SMALL_MODEL, max_in_flight_mb=mb), segmenter))
        return services[-1]
    yield make


def test_the_service_runs_on_its_predictors_workers_and_budget_its_helper_threads_one_per_core(monkeypatch):
    """The service holds no pool or budget of its own: its pictures go through its predictor's workers
    (0 helper threads, the default, is one per core this process may use: its CPU affinity,
    ``model.runtime.cpu_threads``, not the machine's count) within its predictor's budget."""
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    segmenter = Segmenter(SMALL_MODEL)
    service = app.Service(ServeSettings(SMALL_MODEL, max_in_flight_mb=70, max_batch=3), segmenter)
    service.load()
    assert service.problem is None and service.running.queue.finishing.workers == 8
    assert service.running.queue.reading.workers == 8
    deadline = time.monotonic() + 10        # the warm-up's bytes, back once its work ended on the queue's thread
    while service.running.budget.used and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.running.budget.limit == 70 * 2**20 and service.running.budget.used == 0
    assert not [name for name, value in vars(service).items() if isinstance(value, (ThreadPoolExecutor, MemoryBudget))]
    assert service.running is segmenter.predictor and segmenter.predictor.queue.batching.max_batch == 3   # one
    service.close()
    assert segmenter(str(REPO_DIR / SAMPLE_IMAGES / 'shapes_000023.jpg')) is not None     # the host's, still open


def test_the_service_holds_the_segmenter_and_sees_its_hosts_set_pipeline_and_close():
    """A host's ``Segmenter`` served: after the host's ``set_pipeline`` the next request answers on the new
    predictor (not "cannot schedule new futures after shutdown" on the old one), the one ``Service.predictor``
    gives; after its ``close``, ``/readyz`` and the requests say 503 with the reason (nothing can serve), not
    ready, and ``Service.predictor`` is None (the metrics read nothing)."""
    from solov2.model.inference.pipeline import PipelineOptions
    segmenter = Segmenter(SMALL_MODEL)
    picture = (REPO_DIR / SAMPLE_IMAGES / 'shapes_000023.jpg').read_bytes()
    application = app.create_app(ServeSettings(SMALL_MODEL), segmenter=segmenter)
    with serving(ServeSettings(SMALL_MODEL), app=application) as client:
        service = application.state.service
        assert client.post('/v1/segment', content=picture, headers=JPEG).status_code == 200
        old = segmenter.predictor
        segmenter.set_pipeline(PipelineOptions(workers=1))
        answer = client.post('/v1/segment', content=picture, headers=JPEG)
        assert answer.status_code == 200 and answer.json()['instances'] and segmenter.predictor is not old
        assert service.predictor is segmenter.predictor           # the one the metrics and liveness read
        segmenter.close()
        ready, refused = client.get('/readyz'), client.post('/v1/segment', content=picture, headers=JPEG)
        assert ready.status_code == refused.status_code == 503
        assert 'closed' in ready.json()['error'] and 'closed' in refused.json()['error']
        assert service.predictor is None and client.get('/metrics').status_code == 200    # nothing serves
