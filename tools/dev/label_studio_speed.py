"""The Label Studio ML backend's /predict against another checkout's, in the same run, on 127.0.0.1: one task of
a picture with about 100 shapes (polygons, as a Label Studio polygon project asks), ``--requests`` times each,
the two servers asked in turn (both running: the machine's load falls on both alike), while a prober asks the
server at work ``/healthz`` every 10 ms (how long its event loop is held: the worst and the 99th percentile of
its answers).

    python tools/dev/label_studio_speed.py --against /tmp/old-checkout --requests 10

Each server is ``solov2 serve`` of its checkout (its tools/serve.py), the shipped model on the dygraph engine,
reading the picture from --label-studio-files. Prints a markdown table.
"""
import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import httpx  # noqa: E402

from solov2.tools.dev.picture_speed import shapes_picture  # noqa: E402
from solov2.tools.dev.serve_speed import free_port, launch, stop  # noqa: E402

HERE = Path(__file__).resolve().parents[2]
CONFIG = ('<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
          + ''.join(f'<Label value="{name}"/>' for name in ('circle', 'square', 'triangle', 'star'))
          + '</PolygonLabels></View>')


def probe(port: int, stop_at: threading.Event, seconds: list) -> None:
    """``/healthz`` every 10 ms until ``stop_at`` is set, each answer's seconds appended to ``seconds``."""
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=30) as client:
        while not stop_at.is_set():
            began = time.perf_counter()
            client.get('/healthz')
            seconds.append(time.perf_counter() - began)
            time.sleep(0.01)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) the process ``pid`` has used, from /proc (Linux)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def predict_once(client: httpx.Client, port: int, pid: int, row: dict) -> None:
    """One /predict of the picture, its seconds, the server's CPU seconds and the /healthz answers meanwhile
    added to ``row``."""
    stop_at, healthz = threading.Event(), []
    prober = threading.Thread(target=probe, args=(port, stop_at, healthz))
    prober.start()
    began, cpu = time.perf_counter(), cpu_seconds(pid)
    answer = client.post('/label-studio/predict', json={'tasks': [{'id': 1, 'data': {'image': 'many.jpg'}}],
                                                         'label_config': CONFIG}).raise_for_status()
    row['predict'].append(time.perf_counter() - began)
    row['cpu'].append(cpu_seconds(pid) - cpu)
    stop_at.set()
    prober.join()
    row['healthz'] += healthz
    row['regions'] = len(answer.json()['results'][0]['result'])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--against', type=Path, required=True, help='the other checkout (its tools/serve.py)')
    parser.add_argument('--requests', type=int, default=10, help='/predict calls per server (default 10)')
    args = parser.parse_args(argv)
    checkouts = {'this checkout': HERE, str(args.against): args.against}
    with tempfile.TemporaryDirectory() as folder:
        picture = shapes_picture(1600, 1200, 100, 0)
        cv2.imwrite(str(Path(folder) / 'many.jpg'), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        ports = {name: free_port() for name in checkouts}
        servers = [launch([checkout / 'tools' / 'serve.py', '--port', ports[name], '--backend', 'dygraph',
                           '--label-studio-files', folder], ports[name], f'the service of {checkout}', seconds=300)
                   for name, checkout in checkouts.items()]
        rows = {name: {'predict': [], 'cpu': [], 'healthz': [], 'regions': 0} for name in checkouts}
        try:
            clients = {name: httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=120)
                       for name, port in ports.items()}
            for turn in range(args.requests + 1):           # in turn, the first of each a warm-up
                for server, name in zip(servers, checkouts):
                    predict_once(clients[name], ports[name], server.pid, rows[name] if turn else
                                 {'predict': [], 'cpu': [], 'healthz': [], 'regions': 0})
        finally:
            for server in servers:
                stop(server)
    print('| server | /predict median ms | server CPU ms per /predict (median) | regions | /healthz worst ms | '
          '/healthz p99 ms |\n|---|---|---|---|---|---|')
    for name, row in rows.items():
        healthz = sorted(row['healthz'])
        took, cpu = statistics.median(row['predict']), statistics.median(row['cpu'])
        print(f"| {name} | {took * 1000:.0f} | {cpu * 1000:.0f} | {row['regions']} | "
              f"{healthz[-1] * 1000:.1f} | {healthz[int(0.99 * (len(healthz) - 1))] * 1000:.1f} |")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
