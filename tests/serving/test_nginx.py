"""docs/serving.md's nginx configuration, run in nginx from the system's packages (.ci/run installs
it) in front of the service, on loopback addresses: reconnecting tricklers and slowloris connections
from two addresses leave a good client from a third answered 200 within 2 s each time, its answers
those of the service alone, and the service's log names the client's address, not nginx's."""
import logging
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time

import cv2
import pytest

from tests.helpers import REPO_DIR, free_port
from tests.serving.running import SMALL_MODEL, ServeSettings, httpx, serving

NGINX = shutil.which('nginx') or next((p for p in ('/usr/sbin/nginx',) if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(not NGINX and not os.environ.get('SOLOV2_REQUIRE_SYSTEM_PACKAGES'),
                                reason='needs nginx (apt install nginx; .ci/run installs it)')
TRICKLERS, SLOWLORIS, SECONDS = 64, 1000, 8.0
GOOD, TRICKLING, LORIS = '127.0.0.1', '127.0.0.2', '127.0.0.3'       # one address each


def documented_config() -> str:
    """The nginx block of docs/serving.md that its marker says the suite runs."""
    text = (REPO_DIR / 'docs' / 'serving.md').read_text()
    return re.search(r'<!-- nginx: tests/serving/test_nginx\.py[^>]*-->\n```nginx\n(.*?)```', text, re.S).group(1)


def start_nginx(folder, port: int, service_port: int) -> subprocess.Popen:
    """nginx in the foreground with the documented file on 127.0.0.1:``port``, in front of ``service_port``."""
    site = documented_config().replace('listen 80;', f'listen 127.0.0.1:{port};')
    (folder / 'solov2.conf').write_text(site.replace('server 127.0.0.1:8000;', f'server 127.0.0.1:{service_port};'))
    temporary = ''.join(f'{kind}_temp_path {folder / kind};\n' for kind in ('client_body', 'proxy', 'fastcgi', 'uwsgi',
                                                                            'scgi'))
    (folder / 'nginx.conf').write_text(
        ('user root;\n' if os.geteuid() == 0 else '') + f'worker_processes 1;\nworker_rlimit_nofile 8192;\n'
        f'pid {folder / "nginx.pid"};\nerror_log {folder / "error.log"} warn;\nevents {{ worker_connections 4096; }}\n'
        f'http {{\naccess_log {folder / "access.log"};\n{temporary}include {folder / "solov2.conf"};\n}}\n')
    process = subprocess.Popen([NGINX, '-p', str(folder), '-c', str(folder / 'nginx.conf'), '-g', 'daemon off;'],
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return process
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
    process.kill()
    pytest.fail('nginx did not start')


def attack(port: int, stop: threading.Event, counts: dict) -> None:
    """Until ``stop``: ``TRICKLERS`` connections from ``TRICKLING`` sending a body a byte every 0.2 s, each
    reconnecting when closed, and ``SLOWLORIS`` from ``LORIS`` sending a header line every 2 s."""
    selector, pace = selectors.DefaultSelector(), {}

    def connect(source: str, first: bytes):
        connection = socket.socket()
        connection.setblocking(False)
        connection.bind((source, 0))
        try:
            connection.connect(('127.0.0.1', port))
        except BlockingIOError:
            pass
        pace[connection] = (source, first, 0.0)
        selector.register(connection, selectors.EVENT_READ)
        counts[source] += 1

    trickle = ('POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n'
               '\r\n').encode()
    for index in range(TRICKLERS + SLOWLORIS):
        connect(TRICKLING, trickle) if index < TRICKLERS else connect(LORIS, b'POST /v1/segment HTTP/1.1\r\n')
    while not stop.is_set():
        for key, _ in selector.select(0.05):          # closed by nginx (refused, timed out): reconnect
            connection = key.fileobj
            source, first, _ = pace.pop(connection)
            selector.unregister(connection)
            connection.close()
            connect(source, first)
        now = time.monotonic()
        for connection, (source, first, due) in list(pace.items()):
            if now >= due:
                try:
                    connection.send(first if due == 0.0 else b'x' if source == TRICKLING else b'X-Slow: 1\r\n')
                except OSError:
                    continue
                pace[connection] = (source, first, now + (0.2 if source == TRICKLING else 2.0))
    for connection in list(pace):
        connection.close()


def test_behind_the_documented_nginx_a_good_client_is_answered_while_others_trickle_and_stall(tmp_path, caplog):
    small = cv2.imencode('.jpg', cv2.resize(cv2.imread(str(REPO_DIR / 'images' / 'shapes_000042.jpg')), (640, 480)))[1]
    body = small.tobytes()
    with serving(ServeSettings(SMALL_MODEL)) as client:
        alone = client.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'}).json()
        port = free_port()
        nginx = start_nginx(tmp_path, port, int(client.base_url.port))
        stop, counts, answers = threading.Event(), {TRICKLING: 0, LORIS: 0}, []
        attacker = threading.Thread(target=attack, args=(port, stop, counts))
        attacker.start()
        try:
            time.sleep(1.0)                                   # the attack in place
            caplog.set_level(logging.INFO, logger='solov2.serving.app')
            with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=30,
                              transport=httpx.HTTPTransport(local_address=GOOD)) as good:
                end = time.monotonic() + SECONDS
                while time.monotonic() < end:
                    began = time.monotonic()
                    answer = good.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'})
                    answers.append((answer.status_code, time.monotonic() - began, answer))
                    time.sleep(0.25)
        finally:
            stop.set()
            attacker.join(30)
            nginx.terminate()
            nginx.wait(30)
    assert counts[LORIS] >= SLOWLORIS and counts[TRICKLING] > TRICKLERS, counts     # tricklers were refused, came back
    assert [status for status, _, _ in answers] == [200] * len(answers) and len(answers) >= 10
    assert max(seconds for _, seconds, _ in answers) < 2.0, [round(s, 2) for _, s, _ in answers]
    assert all(answer.json() == alone for _, _, answer in answers)
    logged = [record.getMessage() for record in caplog.records if 'POST /v1/segment 200' in record.getMessage()]
    assert logged and all(f' {GOOD} POST' in line for line in logged)
    via_nginx = [line for line in (tmp_path / 'access.log').read_text().splitlines() if line.startswith(GOOD)]
    assert len(via_nginx) >= len(answers)
