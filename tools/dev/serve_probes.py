"""What a liveness probe sees of ``tools/serve.py`` from its start to its stop, on loopback:

    python tools/dev/serve_probes.py --workers 2 --backend auto

Starts the service (the shipped model, ``--backend``, ``--workers``), asks ``/healthz`` every 0.1 s on a new
connection (as Kubernetes does) until ``/readyz`` has answered 200 for ``--ready-s``; then, while
``--clients`` post a 640x480 JPEG again and again (on kept connections with ``--keep-alive``), sends SIGTERM
and goes on asking until the port closes.
Prints the worst wait of a probe in each phase (from the start to ready, ready, stopping), its statuses,
what the clients got after the SIGTERM (200, the JSON 503 of a stopping service; 'reset': a connection
reset or closed without an answer), the exit code and how long after the port closed it came.
"""
import argparse
import collections
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Tuple

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import httpx  # noqa: E402

from solov2.tools.dev import report  # noqa: E402
from solov2.tools.dev.serve_proxy import free_port, picture  # noqa: E402

SERVE = Path(__file__).resolve().parents[1] / 'serve.py'
REFUSED = 'refused'


def probe(url: str) -> Tuple[object, float]:
    """(status, or REFUSED when nothing listens, or 'reset'; seconds) of one GET on a new connection."""
    began = time.monotonic()
    try:
        status: object = httpx.get(url, timeout=5, headers={'Connection': 'close'}).status_code
    except httpx.ConnectError:
        status = REFUSED
    except httpx.TransportError:
        status = 'reset'
    return status, time.monotonic() - began


def load(port: int, stop: threading.Event, after_term: threading.Event, seen: collections.Counter,
         keep_alive: bool = False, pause: float = 0.0) -> None:
    """Post a picture again and again until ``stop`` (the port closed), counting what came once ``after_term``;
    ``keep_alive``: on one connection while the service keeps it (a new one after it closes), else a new one
    each time; ``pause``: up to that many seconds (random) between a request's answer and the next."""
    pauses = random.Random(port)
    body, headers = picture(), {'Content-Type': 'image/jpeg', **({} if keep_alive else {'Connection': 'close'})}
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            try:
                answer = client.post(f'http://127.0.0.1:{port}/v1/segment', content=body, headers=headers)
                status: object = answer.status_code if answer.status_code != 503 else f"503 {answer.json()['error']}"
            except httpx.ConnectError:
                status = REFUSED
            except httpx.TransportError:
                status = 'reset'
            if after_term.is_set():
                seen[status] += 1
            stop.wait(pauses.uniform(0, pause))


def timeline(args) -> dict:
    """The phases' worst probe waits and statuses, the clients' answers after SIGTERM, and the exit code."""
    port = free_port()
    command = [sys.executable, str(SERVE), '--port', str(port), '--backend', args.backend, '--workers',
               str(args.workers), *(['--threads', str(args.threads)] if args.threads else [])]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    phases = {name: [] for name in ('starting', 'ready', 'stopping')}
    stop, after_term, seen = threading.Event(), threading.Event(), collections.Counter()
    clients: List[threading.Thread] = []
    phase, ready_at, began = 'starting', None, time.monotonic()
    closed_at = None
    try:
        while time.monotonic() - began < args.timeout_s:
            status, seconds = probe(f'http://127.0.0.1:{port}/healthz')
            if phase == 'stopping' and status == REFUSED:
                closed_at = time.monotonic()
                break
            phases[phase].append((status, seconds))
            if phase == 'starting' and probe(f'http://127.0.0.1:{port}/readyz')[0] == 200:
                phase, ready_at = 'ready', time.monotonic()
                work = (port, stop, after_term, seen, args.keep_alive, args.pause)
                clients = [threading.Thread(target=load, args=work, daemon=True) for _ in range(args.clients)]
                for client in clients:
                    client.start()
            elif phase == 'ready' and time.monotonic() - ready_at > args.ready_s:
                phase = 'stopping'
                process.send_signal(signal.SIGTERM)
                after_term.set()
            time.sleep(0.1)
        code = process.wait(60)
        exited_at = time.monotonic()
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            process.kill()
        for client in clients:
            client.join(60)
    log.seek(0)
    drained = log.read().decode(errors='replace').count('stopping: the requests in flight finish')
    log.close()
    return {'phases': phases, 'after_term': seen, 'exit': code, 'seconds_to_ready': (ready_at or began) - began,
            'closed_before_exit_s': exited_at - (closed_at or exited_at), 'drained': drained}


def lines(result: dict) -> List[str]:
    said = []
    for name, probes in result['phases'].items():
        statuses = collections.Counter(status for status, _ in probes)
        worst = max((seconds for _, seconds in probes), default=0.0)
        said.append(f'{name}: {len(probes)} probes of /healthz, worst {worst:.2f} s, {dict(statuses)}')
    said.append(f"the clients after SIGTERM: {dict(result['after_term'])}; {result['drained']} process(es) "
                f"drained; exit {result['exit']}, "
                f"{result['closed_before_exit_s']:.2f} s after the port closed; ready after "
                f"{result['seconds_to_ready']:.1f} s")
    return said


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--clients', type=int, default=4)
    parser.add_argument('--keep-alive', action='store_true', help='the clients keep their connections open')
    parser.add_argument('--pause', type=float, default=0.0, help="up to this many seconds between a client's "
                                                                  'answer and its next request (random)')
    parser.add_argument('--ready-s', type=float, default=3.0, help='seconds probed once ready, before SIGTERM')
    parser.add_argument('--timeout-s', type=float, default=300.0)
    args = parser.parse_args(argv)
    print(report.machine_line(args.threads) + f'; tools/serve.py --workers {args.workers} --backend {args.backend}')
    print('\n'.join(lines(timeline(args))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
