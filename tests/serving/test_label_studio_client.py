"""Label Studio's tokens as the ML backend routes send them (serving/label_studio_client.py), against a stand-in
that answers as Label Studio 1.23 does (measured on 1.23.2: ``POST /api/token/refresh/`` gives an access token of
300 s for a personal access token, 401 ``{"detail": ...}`` for a bad one; ``Bearer <access>`` or ``Token <legacy>``
on the API, a personal token itself refused). A real Label Studio takes a personal token in
test_label_studio_server.py."""
import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from solov2.serving.label_studio_client import LabelStudioClient, jwt_claims
from solov2.serving.limits import HttpError
from tests.serving.running import SMALL_MODEL, ServeSettings, serving

LEGACY = 'a' * 40
PICTURE = b'\xff\xd8 the bytes of a picture'


def jwt(token_type: str, expires: float) -> str:
    """A JWT of the shape Label Studio gives (its signature not checked here)."""
    def part(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip('=')
    return f"{part({'alg': 'HS256'})}.{part({'token_type': token_type, 'exp': int(expires)})}.c2lnbmF0dXJl"


PERSONAL = jwt('refresh', time.time() + 10**6)


class StandIn(BaseHTTPRequestHandler):
    """Label Studio's token exchange and a picture under /data/ that needs a token it takes."""
    accesses: list = []            # the access tokens given, the last one valid
    legacy_on = True

    def log_message(self, *args):
        pass

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (http.server's name)
        asked = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        if asked.get('refresh') != PERSONAL:
            return self.answer(401, b'{"detail": "Token is invalid", "code": "token_not_valid"}')
        self.accesses.append(jwt('access', time.time() + (300 if len(self.accesses) else 10)))
        self.answer(200, json.dumps({'access': self.accesses[-1]}).encode())

    def do_GET(self):  # noqa: N802
        given = self.headers.get('Authorization', '')
        if given == f'Token {LEGACY}' and not self.legacy_on:
            return self.answer(401, b'{"detail": "Authentication token no longer valid: legacy token authentication '
                                    b'has been disabled for this organization"}')
        if given in ({f'Bearer {self.accesses[-1]}'} if self.accesses else set()) | {f'Token {LEGACY}'}:
            return self.answer(200, PICTURE)
        self.answer(401, b'{"detail": "Authentication credentials were not provided."}')


@pytest.fixture()
def label_studio():
    StandIn.accesses, StandIn.legacy_on = [], True
    server = ThreadingHTTPServer(('127.0.0.1', 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()


def test_a_personal_token_is_exchanged_sent_as_bearer_and_renewed(label_studio):
    client = LabelStudioClient(label_studio, PERSONAL, 5)
    assert client.kind == 'personal access token' and client.check() is None and len(StandIn.accesses) == 1
    picture = client.address('/data/upload/1/a.jpg')
    assert client.fetch(picture, 1000) == PICTURE and len(StandIn.accesses) == 2    # the first expires within 30 s
    assert client.fetch(picture, 1000) == PICTURE and len(StandIn.accesses) == 2
    StandIn.accesses.append('a token Label Studio gave someone else')             # this one refused: renewed once
    assert client.fetch(picture, 1000) == PICTURE and len(StandIn.accesses) == 4
    assert client.fetch(picture, 1000) == PICTURE and len(StandIn.accesses) == 4    # kept while it is good


def test_a_legacy_token_is_sent_as_token_and_a_refused_one_is_said(label_studio):
    legacy = LabelStudioClient(label_studio, LEGACY, 5)
    assert legacy.kind == 'legacy token' and legacy.check() is None
    assert legacy.fetch(legacy.address('/data/upload/1/a.jpg'), 1000) == PICTURE
    StandIn.legacy_on = False
    problem = legacy.check()
    assert problem and 'refused the legacy token' in problem and 'give a personal access token instead' in problem
    assert legacy.state()['problem'] == problem
    forged = LabelStudioClient(label_studio, jwt('refresh', time.time() + 100), 5)
    assert 'refused the personal access token at /api/token/refresh/ (401: Token is invalid)' in forged.check()
    with pytest.raises(HttpError, match='refused the personal access token'):
        forged.fetch(forged.address('/data/upload/1/a.jpg'), 1000)
    none = LabelStudioClient(label_studio, None, 5)
    with pytest.raises(HttpError, match='give the service a Label Studio token'):
        none.fetch(none.address('/data/upload/1/a.jpg'), 1000)
    assert none.check() is None and 'problem' not in none.state()


def test_only_a_jwt_is_taken_for_a_personal_token():
    assert jwt_claims(PERSONAL)['token_type'] == 'refresh'
    assert jwt_claims(LEGACY) is None and jwt_claims('a.b.c') is None
    short = LabelStudioClient('http://x', jwt('access', time.time() + 100), 5)
    assert short.kind == 'access token' and short.authorization()['Authorization'].startswith('Bearer ')


def test_a_refused_token_is_one_line_at_start_and_in_health(label_studio, caplog):
    forged = jwt('refresh', time.time() + 100)
    with caplog.at_level(logging.INFO, 'solov2.serving.label_studio'):
        with serving(ServeSettings(SMALL_MODEL, label_studio_url=label_studio, label_studio_token=forged)) as client:
            deadline = time.monotonic() + 10
            while 'problem' not in client.get('/label-studio/health').json()['label_studio']:
                assert time.monotonic() < deadline, 'the token was not tried at start'
                time.sleep(0.05)
            health = client.get('/label-studio/health').json()['label_studio']
    assert health['token'] == 'personal access token' and 'refused the personal access token' in health['problem']
    lines = [record for record in caplog.records if 'Label Studio token' in record.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == 'WARNING'
