"""One ``Segmenter`` shared by threads, as people embed it in their own servers:

    python tools/dev/thread_sharing.py --threads 8 --calls 20 --backend dygraph

Each of ``--threads`` threads calls the one ``Segmenter`` ``--calls`` times on 640x480 pictures
(the sample pictures enlarged: one padded size), first all at once as they come (the predictor's
queue batches the pictures that arrive while a batch runs), then taking turns through a lock (one
network run a call), ``--rounds`` times, which way goes first alternating (a loaded machine drifts).
Prints pictures/s of both in each round, pictures per network run of the shared way, one caller alone
(one thread, ``--calls`` calls: its latency a call), and whether every answer equals the picture's alone.
"""
import argparse
import os
import sys
import threading
import time

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402

from solov2 import Segmenter  # noqa: E402
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS  # noqa: E402
from solov2.tools.dev import report  # noqa: E402

NAMES = ('shapes_000023.jpg', 'shapes_000042.jpg', 'shapes_000057.jpg', 'shapes_000083.jpg')


def pictures() -> list:
    """The sample pictures at 640x480, BGR."""
    return [cv2.resize(cv2.imread(os.path.join(SAMPLE_IMAGES, name)), (640, 480)) for name in NAMES]


def timed(threads: int, calls: int, call) -> float:
    """Pictures/s of ``threads`` threads each making ``calls`` calls ``call(index)``."""
    began = time.perf_counter()
    workers = [threading.Thread(target=lambda: [call(index) for index in range(calls)]) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * calls / (time.perf_counter() - began)


def run(args) -> str:
    seg, images, lock, runs, wrong = Segmenter(SHIPPED_WEIGHTS, backend=args.backend), pictures(), threading.Lock(), \
        [], []
    alone = [seg(image).to_dict() for image in images]
    network = seg.predictor.queue.network
    seg.predictor.queue.network = lambda rows, *rest: runs.append(len(rows)) or network(rows, *rest)

    def shared(index):
        if seg(images[index % len(images)]).to_dict() != alone[index % len(images)]:
            wrong.append(index)

    def turns(index):
        with lock:
            seg(images[index % len(images)])
    timed(args.threads, 2, shared)                          # warm-up: each batch size compiled once
    lines = []

    def measured(way) -> tuple:         # (pictures/s, pictures a network run) of ``way``
        runs.clear()
        return timed(args.threads, args.calls, way), sum(runs) / len(runs)
    for round_ in range(args.rounds):       # the two ways in turn, the first alternating: a loaded machine's drift
        order = [shared, turns] if round_ % 2 == 0 else [turns, shared]
        speed = {way: measured(way) for way in order}
        (together, per_run), (taking_turns, _) = speed[shared], speed[turns]
        one = timed(1, args.calls, shared)
        lines.append(f"round {round_ + 1} ({'shared' if order[0] is shared else 'taking turns'} first): "
                     f'{together:.1f} pictures/s shared, {taking_turns:.1f} taking turns through a lock '
                     f'({together / taking_turns:.2f}x), one caller alone {one:.1f} ({1000 / one:.1f} ms a call; '
                     f'shared {together / one:.2f}x alone); {per_run:.1f} pictures a network run shared')
    return '\n'.join([
        report.machine_line(0) + f'; {seg!r}',
        f'{args.threads} threads x {args.calls} calls, 640x480; answers equal to the picture alone: {not wrong}',
        *lines])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=8)
    parser.add_argument('--calls', type=int, default=20)
    parser.add_argument('--backend', default='dygraph')
    parser.add_argument('--rounds', type=int, default=1, help='rounds of both ways, the first of them alternating')
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
