"""A small client beside clients posting 12 MP photos for polygon answers, on 127.0.0.1:

    python tools/dev/serve_mixed.py --seconds 20 --large 4

Starts ``tools/serve.py`` at its defaults (``--backend``, the shipped model). A client posts a 640x480
JPEG every 0.25 s, first alone for ``--seconds``, then beside ``--large`` clients that re-post a 12 MP
JPEG (4000x3000, shapes drawn) with ``masks=polygons`` and ``min_score`` ``--min-score`` (default 0: every
instance the model keeps, up to its 100) as soon as answered; meanwhile a probe in a process of its own
asks ``/healthz`` every 50 ms (in this one it would also time the clients' own Python work, reading 0.5 MB
answers: its worst was 85 ms with the small client alone, against 6 ms from a process of its own). Prints
the small client's p50 and p95 latency alone and beside them, their ratio, the large answers and their
size, and the worst ``/healthz`` time of each phase.
"""
import argparse
import gc
import multiprocessing
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from solov2.tools.dev.picture_speed import shapes_picture  # noqa: E402
from solov2.tools.dev.serve_speed import free_port, launch, stop  # noqa: E402

SERVE = Path(__file__).resolve().parents[1] / 'serve.py'
SMALL_EVERY_S, PROBE_EVERY_S = 0.25, 0.05


def jpeg(width: int, height: int, count: int) -> bytes:
    """A JPEG of ``width`` x ``height`` with ``count`` shapes drawn."""
    return cv2.imencode('.jpg', cv2.cvtColor(shapes_picture(width, height, count, 0), cv2.COLOR_RGB2BGR))[1].tobytes()


def start(port: int, backend: str) -> subprocess.Popen:
    """``tools/serve.py`` at its defaults on ``port``, once ``/readyz`` answers 200."""
    return launch([SERVE, '--port', port, '--backend', backend], port, 'the service', seconds=300)


def every(period: float, stop_at: float, call) -> list:
    """``call()``'s durations, one call every ``period`` seconds until ``stop_at`` (at least one)."""
    times = []
    while not times or time.monotonic() < stop_at:
        began = time.monotonic()
        call()
        times.append(time.monotonic() - began)
        time.sleep(max(0.0, period - (time.monotonic() - began)))
    return times


def probe(port: int, stop_at: float) -> list:
    """``/healthz``'s durations (s) on ``port``, asked every ``PROBE_EVERY_S`` until ``stop_at``
    (``time.monotonic``, the machine's clock on Linux: the same in every process). Its process's own objects
    (this module's imports) are frozen first (``gc.freeze``): a full collection of them stalled the probe itself
    75 ms."""
    gc.freeze()
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=120) as client:
        return every(PROBE_EVERY_S, stop_at, lambda: client.get('/healthz'))


def phase(port: int, seconds: float, large: int, small: bytes, big: bytes, min_score: float) -> dict:
    """One phase: the small client and the probe (``probe``, in a process of its own) for ``seconds``, beside
    ``large`` clients of ``big`` (polygon answers of the instances scoring ``min_score`` or more)."""
    stop_at, answers, results = time.monotonic() + seconds, [], {}
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=120) as client, \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as prober:
        probed = prober.submit(probe, port, stop_at)
        def post(body: bytes, params: dict):
            answer = client.post('/v1/segment', content=body, params=params, headers={'Content-Type': 'image/jpeg'})
            return answer

        def flood():
            while time.monotonic() < stop_at:
                answer = post(big, {'masks': 'polygons', 'min_score': min_score})
                answers.append((answer.status_code, len(answer.content)))
        threads = [threading.Thread(target=flood) for _ in range(large)]
        for thread in threads:
            thread.start()
        results['small'] = every(SMALL_EVERY_S, stop_at, lambda: post(small, {}))
        for thread in threads:
            thread.join()
        results['probe'] = probed.result()
    small_ms = np.array(results['small']) * 1000
    return {'p50': np.percentile(small_ms, 50), 'p95': np.percentile(small_ms, 95), 'small': len(small_ms),
            'healthz': max(results['probe']) * 1000, 'large': answers}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--large', type=int, default=4)
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--min-score', type=float, default=0.0,
                        help="the large clients' min_score (default 0: every instance kept, the costliest answer)")
    args = parser.parse_args(argv)
    small, big = jpeg(640, 480, 6), jpeg(4000, 3000, 40)
    port = free_port()
    process = start(port, args.backend)
    try:
        alone = phase(port, args.seconds, 0, small, big, args.min_score)
        beside = phase(port, args.seconds, args.large, small, big, args.min_score)
    finally:
        stop(process)
    sizes = [size for status, size in beside['large'] if status == 200]
    print(f'small client alone: p50 {alone["p50"]:.0f} ms, p95 {alone["p95"]:.0f} ms ({alone["small"]} answers); '
          f'worst /healthz {alone["healthz"]:.1f} ms')
    print(f'beside {args.large} clients of 12 MP polygons (min_score {args.min_score:g}): p50 {beside["p50"]:.0f} ms, '
          f'p95 {beside["p95"]:.0f} ms '
          f'({beside["small"]} answers; p95 {beside["p95"] / alone["p95"]:.2f}x alone); worst /healthz '
          f'{beside["healthz"]:.1f} ms; large answers {len(sizes)} of {len(beside["large"])} '
          f'({np.mean(sizes) / 2**20 if sizes else 0:.1f} MB each)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
