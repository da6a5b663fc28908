"""The service's decode budget (``--max-decode-mb``): the pictures being decoded never hold
more than it, a picture alone over it gets 413 before decoding, one whose request ended while
it waited for its share is never decoded, and its default lowers the default pixel limit."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from solov2.model.inference.memory import decode_cost
from solov2.serving import app
from solov2.tools import serve
from tests.pictures import webp_bomb
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

PICTURE = cv2.imencode('.png', np.full((1000, 1000, 3), 90, np.uint8))[1].tobytes()
BUDGET_MB = 1.5 * decode_cost(PICTURE, 1000, 1000, 320, 640) / 2**20        # room for one PICTURE (config 9's size)


class Decodes:
    """``decode_picture`` counted: calls, and the most running at once (each made to last ``seconds``)."""

    def __init__(self, seconds: float):
        self.seconds, self.calls, self.running, self.most = seconds, 0, 0, 0
        self.lock, self.decode = threading.Lock(), app.decode_picture

    def __call__(self, *args):
        with self.lock:
            self.calls, self.running = self.calls + 1, self.running + 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.seconds)
            return self.decode(*args)
        finally:
            with self.lock:
                self.running -= 1


def budget_in_use(client) -> float:
    return metric_families(client)['solov2_decode_budget_bytes'].samples[0].value


def test_pictures_being_decoded_never_hold_more_than_the_budget_and_one_over_it_gets_413(monkeypatch):
    """Six pictures at once, four decoding threads, a budget of 1.5 pictures: one decodes at a
    time and all are answered; a WebP that alone needs more than the budget gets 413, undecoded."""
    decodes = Decodes(0.1)
    settings = ServeSettings(SMALL_MODEL, helper_threads=4, max_pixels=20_000_000, max_decode_mb=BUDGET_MB)
    with serving(settings) as client:
        monkeypatch.setattr(app, 'decode_picture', decodes)
        monkeypatch.setattr(app, 'SHARE_WAIT_S', 30.0)          # each waits its turn, however loaded the machine
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda data: client.post('/v1/segment', content=data), [PICTURE] * 6))
        assert [answer.status_code for answer in answers] == [200] * 6
        assert (decodes.calls, decodes.most) == (6, 1)
        refused = client.post('/v1/segment', content=webp_bomb(3000, 3000))
        assert refused.status_code == 413 and 'send a smaller picture' in refused.json()['error'], refused.text
        assert '3000x3000' in refused.json()['error'] and decodes.calls == 6
        assert budget_in_use(client) == 0


def test_a_picture_whose_request_ended_while_it_waited_is_never_decoded(monkeypatch):
    """Two pictures, room for one, decodes of 1 s, a deadline of 0.4 s: both get 504, the one
    waiting for its share is never decoded, and the budget is all given back once the first is done."""
    decodes = Decodes(1.0)
    with serving(ServeSettings(SMALL_MODEL, timeout_s=0.4, max_decode_mb=BUDGET_MB)) as client:
        monkeypatch.setattr(app, 'decode_picture', decodes)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda data: client.post('/v1/segment', content=data), [PICTURE] * 2))
        assert [answer.status_code for answer in answers] == [504, 504]
        time.sleep(1.5)
        assert decodes.calls == 1 and budget_in_use(client) == 0


def test_the_budget_setting_and_the_pixel_limit_it_gives(segmenter_app):
    """--max-decode-mb: checked, None by default (an eighth of the memory, at most 1 GB), 0 no
    budget; the default pixel limit is what the budget holds, when less than the config's."""
    assert serve.settings_of(serve.parse_args([])).max_decode_mb is None
    assert serve.settings_of(serve.parse_args(['--max-decode-mb', '0'])).max_decode_mb == 0
    with pytest.raises(SystemExit):
        serve.parse_args(['--max-decode-mb', '-1'])       # argparse: the flag named
    with pytest.raises(ValueError, match='max_decode_mb'):
        ServeSettings(SMALL_MODEL, max_decode_mb=-1)      # the library: its own name
    assert segmenter_app(None).budget.limit == min(2**30, app.default_budget()) > 0
    assert segmenter_app(0).max_pixels == 100_000_000
    assert segmenter_app(70).max_pixels == (70 * 2**20 - 3 * 4 * 3 * 320 * 640) // 7      # 9.97 MP


@pytest.fixture(scope='module')
def segmenter_app():
    """A Service around the small model (not served), for a budget of ``mb``."""
    from solov2 import Segmenter
    segmenter, services = Segmenter(SMALL_MODEL), []

    def make(mb):
        services.append(app.Service(ServeSettings(SMALL_MODEL, max_decode_mb=mb), segmenter))
        return services[-1]
    yield make
    for service in services:
        service.pool.shutdown()
