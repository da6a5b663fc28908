"""The service's door under a flood of legal, costly pictures, on 127.0.0.1:

    python tools/dev/serve_flood.py --seconds 25 --flood 16

Starts ``tools/serve.py`` at its defaults (the shipped model, ``--backend``), then for ``--seconds``
``--flood`` clients re-post a legal 99.8 MP JPEG (9990x9990, one colour, about 1.5 MB) each on its
own connection as soon as answered (``--honour-retry``: after the answer's Retry-After), while one
client posts a 640x480 JPEG every 0.5 s. Prints the small client's statuses and worst latency, the
flood's statuses, the 503s by reason that ``/metrics`` counts, and the server's peak resident
memory above what it held once ready (Linux: VmHWM after ``clear_refs``).
"""
import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from solov2.tools.dev import report  # noqa: E402
from solov2.tools.dev.picture_speed import shapes_picture  # noqa: E402
from solov2.tools.dev.serve_speed import start, stop  # noqa: E402

LARGE_SIDE = 9990            # 99.8 MP: under the shipped model's 100 MP limit
SMALL_EVERY_S = 0.5


def memory_kb(pid: int, field: str) -> int:
    """``field`` (VmHWM, VmRSS) of process ``pid`` in kB (Linux)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    return 0


def refused_by_reason(port: int) -> dict:
    """{reason: 503s} from the service's /metrics (``solov2_refused_total``), {} where it has none."""
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f'http://127.0.0.1:{port}/metrics', timeout=30).text
    family = next((f for f in text_string_to_metric_families(text) if f.name == 'solov2_refused'), None)
    return {} if family is None else {s.labels['reason']: int(s.value) for s in family.samples
                                      if s.name.endswith('_total')}


def flood(port: int, body: bytes, stop_at: float, honour: bool, statuses: collections.Counter) -> None:
    """Re-post ``body`` until ``stop_at``, counting the statuses (0: the connection failed)."""
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=120) as client:
        while time.monotonic() < stop_at:
            try:
                answer = client.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'})
                statuses[answer.status_code] += 1
                if honour and answer.status_code == 503:
                    time.sleep(float(answer.headers.get('Retry-After', 1)))
            except httpx.TransportError:
                statuses[0] += 1


def small_client(port: int, body: bytes, stop_at: float) -> list:
    """(status, seconds) of a 640x480 JPEG posted every ``SMALL_EVERY_S`` until ``stop_at``."""
    done = []
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=120) as client:
        while time.monotonic() < stop_at:
            began = time.monotonic()
            try:
                status = client.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'}).status_code
            except httpx.TransportError:
                status = 0
            done.append((status, time.monotonic() - began))
            time.sleep(max(0.0, SMALL_EVERY_S - (time.monotonic() - began)))
    return done


def run(args) -> str:
    """One flood against a fresh server: the lines to print."""
    large = cv2.imencode('.jpg', np.full((LARGE_SIDE, LARGE_SIDE, 3), (40, 90, 160), np.uint8))[1].tobytes()
    small = cv2.imencode('.jpg', cv2.cvtColor(shapes_picture(640, 480, 6, 0), cv2.COLOR_RGB2BGR))[1].tobytes()
    process = start('service', args.port, argparse.Namespace(backend=args.backend, threads=0, max_padding=0),
                    queue_size=args.queue_size)
    try:
        Path(f'/proc/{process.pid}/clear_refs').write_text('5')
        ready_kb = memory_kb(process.pid, 'VmRSS')
        stop_at, statuses = time.monotonic() + args.seconds, collections.Counter()
        threads = [threading.Thread(target=flood, args=(args.port, large, stop_at, args.honour_retry, statuses))
                   for _ in range(args.flood)]
        for thread in threads:
            thread.start()
        small_done = small_client(args.port, small, stop_at)
        for thread in threads:
            thread.join()
        peak = (memory_kb(process.pid, 'VmHWM') - ready_kb) / 1024
        reasons = refused_by_reason(args.port)
    finally:
        stop(process)
    small_statuses = collections.Counter(status for status, _ in small_done)
    return '\n'.join([
        f'{report.machine_line(0)}; backend {args.backend}; {args.flood} clients re-posting a {len(large) / 2**20:.1f} '
        f'MB {LARGE_SIDE}x{LARGE_SIDE} JPEG{" (honouring Retry-After)" if args.honour_retry else ""} for '
        f'{args.seconds:g} s; load average {os.getloadavg()[0]:.1f}',
        f'small client (640x480 every {SMALL_EVERY_S} s): {dict(sorted(small_statuses.items()))}, worst '
        f'{max(seconds for _, seconds in small_done):.2f} s, median {np.median([s for _, s in small_done]):.2f} s',
        f'flood: {dict(sorted(statuses.items()))}; 503s by reason: {reasons}',
        f'server peak resident memory: +{peak:.0f} MB over its {ready_kb / 1024:.0f} MB once ready'])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=25.0, help='how long the flood lasts (default 25)')
    parser.add_argument('--flood', type=int, default=16, help='clients re-posting the large picture (default 16)')
    parser.add_argument('--honour-retry', action='store_true', help="the flood waits a 503's Retry-After")
    parser.add_argument('--backend', default='auto', help="the service's backend (default auto)")
    parser.add_argument('--queue-size', type=int, default=16, help="the service's --queue-size (default 16)")
    parser.add_argument('--port', type=int, default=8330, help='the port (default 8330)')
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
