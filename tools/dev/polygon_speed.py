"""Polygons against RLE for one picture's instances, as ``Instances.to_dict`` gives them:

    python tools/dev/polygon_speed.py [--size 4000x3000] [--min-scores 0.3 0] [--rounds 3]

The sample pictures tiled to ``--size`` (a 12 MP photo's by default) are segmented once by the shipped model
(dygraph) at each of ``--min-scores`` (13 and 100 instances on the default picture), every mask made; then,
``--rounds`` times, the same instances' records with RLE masks (``to_dict(masks='rle')``), with polygons
(``to_dict(masks='polygons')``, ``data.polygons.mask_polygons``) and OpenCV's bare trace of each mask
(``cv2.findContours``, ``CHAIN_APPROX_SIMPLE``, nothing more). Figures are CPU seconds of this process, the
least of the rounds (the machine is shared: wall time counts other people's work), and polygons / RLE. As a
command its process is tuned as ``solov2 serve`` and ``demo.py`` tune theirs (``cli.tune_for``: OpenCV on one thread,
freed memory kept): untuned, OpenCV's idle workers wait busily beside each call and their waiting counted as
much again as the trace itself.

Then the sample pictures' own table (as issue 78 gave it): the instances shown (score >= 0.3) as polygons,
shapes, vertices a shape, shapes of 10 points or fewer, and how the polygons fill back to each mask as COCO
fills them (``pycocotools``), IoU least / median / mean.
"""
import argparse
import sys
import time

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pycocotools.mask as mask_util  # noqa: E402

from solov2 import Segmenter  # noqa: E402
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS  # noqa: E402
from solov2.tools.cli import tune_for  # noqa: E402
from solov2.tools.dev import report  # noqa: E402

TILES = ('shapes_000023.jpg', 'shapes_000042.jpg', 'shapes_000057.jpg', 'shapes_000083.jpg')
SAMPLES = (*TILES, 'shapes_wide.jpg')


def tiled(width: int, height: int) -> np.ndarray:
    """``[height, width, 3]`` BGR: the 256-px sample pictures tiled, each row starting one picture later."""
    tiles = [cv2.imread(f'{SAMPLE_IMAGES}/{name}') for name in TILES]
    side = tiles[0].shape[0]
    rows = [np.concatenate([tiles[(row + column) % len(tiles)] for column in range(-(-width // side))], axis=1)
            for row in range(-(-height // side))]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


def cpu_seconds(work, rounds: int) -> float:
    """The least CPU time (this process) of ``rounds`` runs of ``work()``."""
    best = float('inf')
    for _ in range(rounds):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best


def speed_line(result, rounds: int) -> str:
    """One line: instances, RLE, polygons and bare-trace CPU seconds of ``result``'s instances."""
    crops = result.crops.crops                                     # every mask made before the clocks run
    rle = cpu_seconds(lambda: result.to_dict(masks='rle'), rounds)
    polygons = cpu_seconds(lambda: result.to_dict(masks='polygons'), rounds)
    bare = cpu_seconds(lambda: [cv2.findContours(crop.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
                                for crop in crops], rounds)
    pixels = sum(crop.size for crop in crops) / 1e6
    return (f'{len(result)} instances ({pixels:.0f} Mpx of masks in their boxes): RLE {rle:.3f} s, polygons '
            f'{polygons:.3f} s ({polygons / max(rle, 1e-9):.2f}x RLE), bare trace {bare:.3f} s')


def fill_back_table(segmenter) -> str:
    """The sample pictures' shown instances as polygons: the issue-78 table's row, as markdown."""
    shapes, ious = [], []
    for name in SAMPLES:
        result = segmenter(f'{SAMPLE_IMAGES}/{name}')
        shown = result[result.scores >= 0.3]
        height, width = shown.image_size
        for instance, polygons in zip(shown, shown.polygons()):
            shapes += [len(polygon) for polygon in polygons]
            rles = mask_util.frPyObjects([polygon.ravel().tolist() for polygon in polygons], height, width)
            back = mask_util.decode(mask_util.merge(rles)).astype(bool)
            ious.append((back & instance.mask).sum() / max(1, (back | instance.mask).sum()))
    vertices = np.array(shapes)
    return '\n'.join([
        '| instances | shapes | vertices a shape, median / mean / max | vertices | shapes of <= 10 points | '
        'mask IoU min / median / mean |', '|---|---|---|---|---|---|',
        f'| {len(ious)} | {len(shapes)} | {np.median(vertices):.0f} / {vertices.mean():.1f} / {vertices.max()} | '
        f'{vertices.sum()} | {(vertices <= 10).sum()} | {min(ious):.3f} / {np.median(ious):.3f} / '
        f'{np.mean(ious):.3f} |'])


def run(args) -> str:
    width, height = (int(side) for side in args.size.split('x'))
    segmenter = Segmenter(SHIPPED_WEIGHTS, backend='dygraph')
    picture = tiled(width, height)
    lines = [f'min_score {score:g}: ' + speed_line(segmenter(picture, min_score=score), args.rounds)
             for score in args.min_scores]
    return '\n'.join([report.machine_line(0), f'{width}x{height} tiled sample pictures, CPU seconds, least of '
                      f'{args.rounds} rounds', *lines, '', fill_back_table(segmenter)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', default='4000x3000', help='WIDTHxHEIGHT of the tiled picture (default 4000x3000)')
    parser.add_argument('--min-scores', type=float, nargs='+', default=[0.3, 0.0],
                        help='the least score of the instances timed, one line each (default 0.3 0)')
    parser.add_argument('--rounds', type=int, default=3, help='runs of each way; the least CPU time counts')
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == '__main__':
    tune_for('cpu', 0)          # the command's process, as the service's and the demo's where polygons are made
    sys.exit(main())
