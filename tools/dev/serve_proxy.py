"""The service with and without docs/serving.md's nginx file in front, under each attack, on loopback:

    python tools/dev/serve_proxy.py --seconds 8

Starts ``tools/serve.py`` (the shipped model, ``--backend``) and nginx from the system's packages with
the documented file, then for each attack (``TRICKLERS`` reconnecting tricklers sending a body a byte
every 0.2 s; ``SLOWLORIS`` connections sending a header line every 2 s; both), straight at the service
and through nginx, a good client from another loopback address posts a 640x480 JPEG every 0.25 s for
``--seconds``. Prints the good client's statuses and worst latency for each.
"""
import argparse
import collections
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import httpx  # noqa: E402

from solov2.core.paths import SAMPLE_IMAGES  # noqa: E402
from solov2.tools.dev import report  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / 'docs' / 'serving.md'
NGINX = shutil.which('nginx') or ('/usr/sbin/nginx' if os.path.exists('/usr/sbin/nginx') else None)
TRICKLERS, SLOWLORIS = 64, 1000
GOOD, TRICKLING, LORIS = '127.0.0.1', '127.0.0.2', '127.0.0.3'       # one loopback address each


def documented_config() -> str:
    """The nginx block of docs/serving.md that its marker says the suite runs."""
    return re.search(r'<!-- nginx: tests/serving/test_nginx\.py[^>]*-->\n```nginx\n(.*?)```', DOCS.read_text(),
                     re.S).group(1)


def start_nginx(folder: Path, port: int, service_port: int) -> subprocess.Popen:
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
            if process.poll() is not None:
                raise RuntimeError(f'nginx did not start: {process.stderr.read().decode()}') from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError('nginx did not start within 20 s')


def attack(port: int, stop: threading.Event, counts: collections.Counter, tricklers: int = TRICKLERS,
           slowloris: int = SLOWLORIS) -> None:
    """Until ``stop``: ``tricklers`` connections from ``TRICKLING`` sending a body a byte every 0.2 s and
    ``slowloris`` from ``LORIS`` sending a header line every 2 s, each reconnecting when closed
    (``counts``: connections opened by address)."""
    selector, pace = selectors.DefaultSelector(), {}
    trickle = (b'POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n')

    def connect(source: str, first: bytes) -> None:
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

    for _ in range(tricklers):
        connect(TRICKLING, trickle)
    for _ in range(slowloris):
        connect(LORIS, b'POST /v1/segment HTTP/1.1\r\n')
    while not stop.is_set():
        for key, _ in selector.select(0.05):          # closed or answered (nginx's 429, a timeout): again
            source, first, _ = pace.pop(key.fileobj)
            selector.unregister(key.fileobj)
            key.fileobj.close()
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


def good_client(port: int, body: bytes, seconds: float) -> list:
    """(status, seconds, answer) of a picture posted from ``GOOD`` every 0.25 s for ``seconds`` (status 0:
    the connection failed)."""
    done = []
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=60,
                      transport=httpx.HTTPTransport(local_address=GOOD)) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                answer = client.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'})
                done.append((answer.status_code, time.monotonic() - began, answer))
            except httpx.TransportError:
                done.append((0, time.monotonic() - began, None))
            time.sleep(0.25)
    return done


def picture() -> bytes:
    """A 640x480 JPEG of a sample picture."""
    return cv2.imencode('.jpg', cv2.resize(cv2.imread(os.path.join(SAMPLE_IMAGES, 'shapes_000042.jpg')),
                                           (640, 480)))[1].tobytes()


def under_attack(port: int, body: bytes, seconds: float, tricklers: int, slowloris: int) -> list:
    """``good_client`` on ``port`` while ``attack`` runs (set up for a second first)."""
    stop, counts = threading.Event(), collections.Counter()
    attacker = threading.Thread(target=attack, args=(port, stop, counts, tricklers, slowloris), daemon=True)
    attacker.start()
    try:
        time.sleep(1.0)
        return good_client(port, body, seconds)
    finally:
        stop.set()
        attacker.join(30)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def run(args) -> str:
    from solov2.tools.dev.serve_speed import start, stop
    body, lines = picture(), []
    service_port, proxy_port = free_port(), free_port()
    server = start('service', service_port, argparse.Namespace(backend=args.backend, threads=0, max_padding=0.0),
                   queue_size=16)
    with tempfile.TemporaryDirectory() as folder:
        nginx = start_nginx(Path(folder), proxy_port, service_port)
        try:
            for name, tricklers, slowloris in (('tricklers', TRICKLERS, 0), ('slowloris', 0, SLOWLORIS),
                                               ('both', TRICKLERS, SLOWLORIS)):
                for via, port in (('the service alone', service_port), ('behind nginx', proxy_port)):
                    done = under_attack(port, body, args.seconds, tricklers, slowloris)
                    statuses = collections.Counter(status for status, _, _ in done)
                    lines.append(f'{name}, {via}: good client {dict(statuses)}, worst '
                                 f'{max(seconds for _, seconds, _ in done):.2f} s')
        finally:
            nginx.terminate()
            nginx.wait(30)
            stop(server)
    return '\n'.join([report.machine_line(0) + f'; backend {args.backend}; {args.seconds:g} s each', *lines])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=8.0)
    parser.add_argument('--backend', default='dygraph')
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
