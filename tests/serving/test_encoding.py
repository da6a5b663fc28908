"""An answer's bytes made in pieces (serving/encoding.py): the bytes ``json.dumps`` makes, and no piece of a
large answer longer than one of its instances, so the interpreter's lock is given up between them."""
import json
import math

import cv2
import numpy as np
import pytest

from solov2.serving.encoding import json_bytes
from solov2.tools.dev.polygon_speed import tiled
from tests.serving.running import SMALL_MODEL, ServeSettings, serving

VALUES = [
    {}, [], (), 'é "quoted" \\ \u2028', 0, -0.0, 1e-7, 2.5e300, 123456789012345678901234567890, True, None,
    {'a': [], 'b': {}, 'c': [1, 2.25, [3, {'d': 'ü'}]], 'e': (1, 'two'), 'f': {'g': {'h': [None, False]}}},
    {1: 'int key', 2.5: 'float key', None: 'none key', False: 'bool key'},       # JSON's string keys, made as dumps
    {'mixed': {1: [1], 'one': [2]}}, [[[[1]]]], [{'polygons': [[0.5, 1.25, 3.75, 4.0]], 'score': 0.3}] * 3,
]


@pytest.mark.parametrize('value', VALUES, ids=range(len(VALUES)))
@pytest.mark.parametrize('depth', [0, 1, 2, 5])
def test_the_bytes_are_json_dumps_bytes(value, depth):
    assert json_bytes(value, depth) == json.dumps(value, ensure_ascii=False, allow_nan=False,
                                                  separators=(',', ':')).encode()


@pytest.mark.parametrize('bad, error', [({'x': [1.0, math.nan]}, ValueError), ([{'y': math.inf}], ValueError),
                                        ({'z': [object()]}, TypeError), ({'n': np.float32(1)}, TypeError)])
def test_what_json_cannot_hold_raises_as_json_dumps(bad, error):
    with pytest.raises(error):
        json.dumps(bad, allow_nan=False)
    with pytest.raises(error):
        json_bytes(bad)


def test_a_large_answer_is_made_in_pieces_no_longer_than_one_instance(monkeypatch):
    made, dumps = [], json.dumps

    def recorded(value, *args, **kwargs):
        text = dumps(value, *args, **kwargs)
        made.append(len(text))
        return text
    picture = cv2.imencode('.jpg', tiled(1024, 1024))[1].tobytes()        # the samples tiled: many instances
    with serving(ServeSettings(SMALL_MODEL)) as client:
        monkeypatch.setattr(json, 'dumps', recorded)
        answer = client.post('/v1/segment', content=picture, params={'masks': 'polygons', 'min_score': 0},
                             headers={'Content-Type': 'image/jpeg', 'Accept-Encoding': 'identity'})
        monkeypatch.setattr(json, 'dumps', dumps)
    assert answer.status_code == 200, answer.text
    instances = answer.json()['instances']
    longest = max(len(dumps(one, ensure_ascii=False, separators=(',', ':'))) for one in instances)
    assert len(instances) >= 20 and len(answer.content) > 10 * longest
    assert made and max(made) <= longest, (max(made), longest, len(answer.content))
