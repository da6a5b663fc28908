"""The Label Studio ML backend's /predict against another checkout's, in the same run, on 127.0.0.1: one task of
a picture with about 100 shapes (polygons, as a Label Studio polygon project asks), ``--requests`` times in
turn, while a prober asks ``/healthz`` every 10 ms (how long the event loop is held: the worst and the 99th
percentile of its answers during the run).

    python tools/dev/label_studio_speed.py --against /tmp/old-checkout --requests 10

Each server is ``solov2 serve`` of its checkout (its tools/serve.py), the shipped model on the dygraph engine,
reading the picture from --label-studio-files. Prints a markdown table.
"""
import argparse
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


def measure(checkout: Path, folder: Path, requests: int) -> dict:
    """/predict's median seconds, the regions answered, /healthz's worst and 99th-percentile seconds meanwhile,
    for the server of ``checkout``."""
    port = free_port()
    server = launch([checkout / 'tools' / 'serve.py', '--port', port, '--backend', 'dygraph',
                     '--label-studio-files', folder], port, f'the service of {checkout}', seconds=300)
    try:
        with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=120) as client:
            body = {'tasks': [{'id': 1, 'data': {'image': 'many.jpg'}}], 'label_config': CONFIG}
            regions = len(client.post('/label-studio/predict', json=body).json()['results'][0]['result'])  # warm
            stop_at, healthz, took = threading.Event(), [], []
            prober = threading.Thread(target=probe, args=(port, stop_at, healthz))
            prober.start()
            for _ in range(requests):
                began = time.perf_counter()
                client.post('/label-studio/predict', json=body).raise_for_status()
                took.append(time.perf_counter() - began)
            stop_at.set()
            prober.join()
    finally:
        stop(server)
    healthz.sort()
    return {'predict': statistics.median(took), 'regions': regions, 'healthz_worst': healthz[-1],
            'healthz_p99': healthz[int(0.99 * (len(healthz) - 1))]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--against', type=Path, required=True, help='the other checkout (its tools/serve.py)')
    parser.add_argument('--requests', type=int, default=10, help='/predict calls per server (default 10)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        picture = shapes_picture(1600, 1200, 100, 0)
        cv2.imwrite(str(Path(folder) / 'many.jpg'), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        rows = {name: measure(checkout, Path(folder), args.requests)
                for name, checkout in (('this checkout', HERE), (str(args.against), args.against))}
    print('| server | /predict median ms | regions | /healthz worst ms | /healthz p99 ms |\n|---|---|---|---|---|')
    for name, row in rows.items():
        print(f"| {name} | {row['predict'] * 1000:.0f} | {row['regions']} | {row['healthz_worst'] * 1000:.1f} | "
              f"{row['healthz_p99'] * 1000:.1f} |")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
