"""The service's speed and memory against a plain threaded server around one ``Segmenter``
(the stdlib's ``ThreadingHTTPServer``: what a user writes by hand), in the same run, on 127.0.0.1.

    python tools/dev/serve_speed.py --requests 160 --rss 200 1000 --out output/serve_speed.md

Both serve the shipped model on the same backend (default: the default engine, auto) and
threads, each in a process of its own. Photos of mixed sizes (``SIZES``: 320x240 to 12 MP, the
common formats landscape and portrait, shapes drawn as tools/make_shapes_dataset.py draws) go
in turn to 1 and to 8 clients (requests per second, p50 and p95 latency, and for the service
the pictures a network run held); then 32 clients against each (the service with --queue-size
8: the p95 of the accepted requests and how many got 503); then the resident set size of each
server after ``--rss`` requests in all, and the server's CPU time per answer at 1 and 8 clients.
Writes a markdown table to ``--out`` and prints it.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from solov2.core.paths import SHIPPED_WEIGHTS  # noqa: E402
from solov2.tools.dev import report  # noqa: E402
from solov2.tools.dev.picture_speed import shapes_picture  # noqa: E402

SIZES = ((320, 240, 3), (640, 480, 6), (1024, 768, 8), (1280, 720, 8), (1080, 1080, 10), (1920, 1080, 12),
         (3024, 4032, 20), (4000, 3000, 20))          # width, height, shapes: web pictures to 12 MP photos
SERVE = str(Path(__file__).resolve().parents[1] / 'serve.py')


def pictures() -> list:
    """JPEG bytes of each of ``SIZES``."""
    return [cv2.imencode('.jpg', cv2.cvtColor(shapes_picture(w, h, n, seed), cv2.COLOR_RGB2BGR))[1].tobytes()
            for seed, (w, h, n) in enumerate(SIZES)]


def baseline_server(port: int, backend: str, threads: int) -> None:
    """The plain server: POST a picture, get ``Instances.to_dict()`` as JSON; one shared Segmenter."""
    from solov2 import InputError, Segmenter, tune_process
    tune_process(threads, helper_threads=1)
    seg = Segmenter(SHIPPED_WEIGHTS, backend=backend, threads=threads)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            data = self.rfile.read(int(self.headers.get('Content-Length', 0)))
            try:
                status, body = 200, json.dumps(seg(data).to_dict()).encode()
            except InputError as exc:
                status, body = 400, json.dumps({'error': str(exc)}).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', '0')
            self.end_headers()

        def log_message(self, *args):
            pass
    ThreadingHTTPServer(('127.0.0.1', port), Handler).serve_forever()


def start(kind: str, port: int, args, queue_size: int = 64):
    """A server process ('service' or 'plain') on ``port``, once it answers its readiness check."""
    if kind == 'service':
        command = [SERVE, '--port', str(port), '--backend', args.backend, '--threads', str(args.threads),
                   '--queue-size', str(queue_size), '--timeout-s', '120']
        command += ['--max-padding', str(args.max_padding)] if args.max_padding else []
    else:
        command = [__file__, '--plain-server', str(port), '--backend', args.backend, '--threads', str(args.threads)]
    return launch(command, port, f'the {kind} server')


def launch(command: list, port: int, what: str, seconds: float = 180) -> subprocess.Popen:
    """``python command`` started, returned once ``/readyz`` on ``port`` answers 200; RuntimeError naming ``what``,
    its exit code and its last lines of stderr when it ends or ``seconds`` pass first."""
    errors = tempfile.TemporaryFile()          # its last lines name why, should it end before it answers
    process = subprocess.Popen([sys.executable, *map(str, command)], stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    process.wait()
    errors.seek(0)
    said = ' | '.join(errors.read().decode(errors='replace').strip().splitlines()[-3:])
    raise RuntimeError(f'{what} did not start (exit {process.returncode}): {said}')


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()          # its port free before the next server binds it


def drive(port: int, bodies: list, clients: int, count: int) -> dict:
    """``count`` requests from ``clients`` threads, each sending the next picture when answered:
    requests/s of the answered ones, their p50 and p95 latency (s), how many got 503 and how many
    had their connection reset or dropped."""
    def one(index: int):
        began = time.perf_counter()
        try:
            status = client.post(f'http://127.0.0.1:{port}/v1/segment', content=bodies[index % len(bodies)],
                                 headers={'Content-Type': 'image/jpeg'}).status_code
        except httpx.TransportError:       # a connection reset or dropped: the plain server's backlog is 5
            status = 0
        return status, time.perf_counter() - began

    with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=clients)) as client, \
            ThreadPoolExecutor(clients) as pool:
        began = time.perf_counter()
        done = list(pool.map(one, range(count)))
        elapsed = time.perf_counter() - began
    answered = sorted(seconds for status, seconds in done if status == 200)
    return {'rps': len(answered) / elapsed, 'p50': float(np.percentile(answered, 50)),
            'p95': float(np.percentile(answered, 95)), 'busy': sum(status == 503 for status, _ in done),
            'reset': sum(status == 0 for status, _ in done)}


def batch_counts(port: int) -> tuple:
    """(pictures, runs) the service has put through the network so far (its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families
    text = httpx.get(f'http://127.0.0.1:{port}/metrics', timeout=30).text
    family = next(f for f in text_string_to_metric_families(text) if f.name == 'solov2_batch_size')
    values = {sample.name: sample.value for sample in family.samples}
    return values['solov2_batch_size_sum'], values['solov2_batch_size_count']


def rss_mb(process) -> float:
    """The resident set size of ``process`` now, MB (Linux)."""
    for line in Path(f'/proc/{process.pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def cpu_seconds(process) -> float:
    """CPU seconds (user and system) ``process`` has spent so far (Linux)."""
    fields = Path(f'/proc/{process.pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on when asked (``--port 0``: each server its own)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def measure(kind: str, port: int, args, bodies: list) -> dict:
    """One server's figures (module docstring); the service runs with --queue-size 8."""
    process = start(kind, port, args, queue_size=8)
    figures, sent = {}, 0
    try:
        for clients, count in ((1, args.requests // 2), (8, args.requests)):
            before, cpu = batch_counts(port) if kind == 'service' else None, cpu_seconds(process)
            figures[clients] = drive(port, bodies, clients, count)
            figures[clients]['cpu'] = (cpu_seconds(process) - cpu) / max(1, count - figures[clients]['busy'])
            if before is not None:
                after = batch_counts(port)
                figures[clients]['per_run'] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
            sent += count
        for total in args.rss:
            if total > sent:
                drive(port, bodies, 8, total - sent)
                sent = total
            figures[f'rss{total}'] = rss_mb(process)
        figures[32] = drive(port, bodies, 32, args.requests)
    finally:
        stop(process)
    return figures


def table(results: dict, args) -> str:
    """The markdown table of both servers' figures."""
    rss = ' / '.join(str(total) for total in args.rss)
    lines = [f'| server | 1 client: req/s, p50, p95 (s) | 8 clients: req/s, p50, p95 (s) | 8 / 1 '
             f'| pictures a run (8 clients) | 32 clients: accepted p95 (s), 503s, resets '
             f'| RSS after {rss} requests (MB) | CPU per answer, 1 / 8 clients (ms) |',
             '|---|---|---|---|---|---|---|---|']
    for name, figures in results.items():
        one, eight, over = figures[1], figures[8], figures[32]
        memory = ' / '.join(f'{figures[f"rss{total}"]:.0f}' for total in args.rss)
        per_run = f'{eight["per_run"]:.2f}' if 'per_run' in eight else '-'
        lines.append(f'| {name} | {one["rps"]:.2f}, {one["p50"]:.2f}, {one["p95"]:.2f} '
                     f'| {eight["rps"]:.2f}, {eight["p50"]:.2f}, {eight["p95"]:.2f} | {eight["rps"] / one["rps"]:.2f}x '
                     f'| {per_run} | {over["p95"]:.2f}, {over["busy"]}, {over["reset"]} of {args.requests} '
                     f'| {memory} | {one["cpu"] * 1000:.0f} / {eight["cpu"] * 1000:.0f} |')
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--requests', type=int, default=400, help='requests of the 8- and 32-client runs '
                                                                   '(half for 1 client; default 400)')
    parser.add_argument('--rss', type=int, nargs='+', default=[200, 2000],
                        help="read each server's memory after this many requests in all (default 200 2000)")
    parser.add_argument('--backend', default='auto', help="both servers' backend (default auto, the default engine)")
    parser.add_argument('--max-padding', type=float, default=0.0, help="the service's --max-padding (default 0)")
    parser.add_argument('--threads', type=int, default=0, help="both servers' CPU math threads (0: every core)")
    parser.add_argument('--port', type=int, default=8310,
                        help='first of the two ports (default 8310; 0: any two free ones)')
    parser.add_argument('--out', default='output/serve_speed.md', help='the markdown table (default %(default)s)')
    parser.add_argument('--plain-server', type=int, metavar='PORT', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plain_server:
        baseline_server(args.plain_server, args.backend, args.threads)
        return 0
    bodies, load = pictures(), os.getloadavg()[0]
    ports = (args.port, args.port + 1) if args.port else (free_port(), free_port())
    results = {'tools/serve.py (batching, limits)': measure('service', ports[0], args, bodies),
               'plain ThreadingHTTPServer + Segmenter': measure('plain', ports[1], args, bodies)}
    text = (f'{report.machine_line(args.threads)}; backend {args.backend}; load average {load:.1f} before '
            f'the run, {os.getloadavg()[0]:.1f} after it\n\n{table(results, args)}\n')
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
