"""End-to-end speed and peak memory of ``demo.py``'s work on folders of small and large pictures
with few and many objects, for ``python tools/dev/benchmark.py --pictures`` (and its full runs).

Each folder holds ``count`` pictures drawn as tools/make_shapes_dataset.py draws (its background,
shapes and colours), one shape per cell of a grid, for the shipped model
(weights/shapes_r18.pdparams), which returns up to ``max_per_image`` (100) instances for them,
every one pasted, the confident ones drawn. Each folder runs in a fresh process of its own
(``train_speed.in_own_process``): the demo's backend (``--backend auto`` from an export cache
filled beforehand), one untimed picture, then ``demo.py``'s stages in its pipeline (read,
preprocess, network, post-process, paste, draw, write the picture); the process's peak resident
set size is the row's memory.
"""
import math
from pathlib import Path

import cv2
import numpy as np

from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.model.inference.backend_factory import open_backend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.spec import ModelSpec
from solov2.tools.cli import tune_for
from solov2.tools.demo_outputs import DrawOptions, run_images
from solov2.tools.dev import report
from solov2.tools.dev.train_speed import in_own_process
from solov2.tools.make_shapes_dataset import (
    CLASS_NAMES,
    JPEG_QUALITY,
    NOISE,
    pick_colour,
    render_background,
    shape_vertices,
)

DRAW_THRESHOLD = 0.3                        # demo.py --draw-threshold default
FOLDERS = ((640, 640, 10), (640, 640, 100), (4000, 3000, 10), (4000, 3000, 100))   # width, height, shapes
MARKERS = ('<!-- pictures: begin -->', '<!-- pictures: end -->')


def grid(width: int, height: int, count: int) -> tuple:
    """(columns, rows) of the most square cells that hold ``count`` shapes on a width x height picture."""
    columns = max(1, round(math.sqrt(count * width / height)))
    return columns, math.ceil(count / columns)


def shapes_picture(width: int, height: int, count: int, seed: int) -> np.ndarray:
    """[H, W, 3] uint8 RGB: make_shapes_dataset's background with ``count`` of its shapes, one per grid
    cell (a random class, 55-85% of the cell, random rotation, a colour that stands out), and its noise."""
    rng = np.random.default_rng(seed)
    canvas = cv2.resize(render_background(rng, 512), (width, height), interpolation=cv2.INTER_LINEAR)
    columns, rows = grid(width, height, count)
    cell_w, cell_h = width / columns, height / rows
    for index in range(count):
        x0, y0 = int(index % columns * cell_w), int(index // columns * cell_h)
        cell = canvas[y0:int(y0 + cell_h), x0:int(x0 + cell_w)]
        side = min(cell.shape[:2])
        label = int(rng.integers(len(CLASS_NAMES)))
        centre = np.array([cell.shape[1], cell.shape[0]]) / 2 + rng.uniform(-0.1, 0.1, 2) * side
        vertices = shape_vertices(label, centre, rng.uniform(0.55, 0.85) * side, rng.uniform(0, 2 * np.pi))
        mask = np.zeros(cell.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(vertices * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        cell[mask > 0] = pick_colour(rng, cell, mask)
    noise = rng.integers(-NOISE, NOISE + 1, canvas.shape, dtype=np.int8)
    return np.clip(canvas + noise, 0, 255).astype(np.uint8)


def make_folder(folder: Path, width: int, height: int, count: int, pictures: int) -> list:
    """``pictures`` JPEGs of ``shapes_picture`` (seeds 0, 1, ...) in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(pictures):
        paths.append(folder / f'shapes_{width}x{height}_{count}_{seed:02d}.jpg')
        picture = cv2.cvtColor(shapes_picture(width, height, count, seed), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(paths[-1]), picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return paths


class Counting(Predictor):
    """A predictor that notes how many instances each picture gave and how many of them the demo draws
    (``counts``: (kept, drawn) per picture), otherwise the same."""

    def __init__(self, engine):
        super().__init__(engine)
        self.counts = []

    def finish(self, row, meta, params=None):
        result = super().finish(row, meta, params)
        self.counts.append((len(result), int((result.scores >= DRAW_THRESHOLD).sum())))
        return result


def demo_folder(paths, out: str, threads: int, cache_dir: str, batch_size: int = 1) -> dict:
    """{'fps', 'instances', 'drawn' (means per picture), 'engine'} of ``demo.py``'s default backend and work
    (``run_images``) on ``paths``, ``batch_size`` pictures a network run, pictures written to ``out``, after
    one untimed network run (run in a process of its own, tuned as ``demo.py`` tunes its process: its peak RSS
    is the demo's)."""
    tune_for('cpu', threads)
    _, opened = open_backend(ModelSpec(SHIPPED_WEIGHTS, threads=threads), cache_dir=cache_dir)
    backend = Counting(opened)
    targets = {path: Path(out) / path.name for path in paths}
    stats = run_images(backend, targets, DrawOptions(DRAW_THRESHOLD, warmup=1, batch_size=batch_size), [])
    kept, drawn = np.mean(backend.counts, axis=0)
    return {'fps': stats.images_per_second, 'instances': float(kept), 'drawn': float(drawn),
            'engine': opened.label}


def measure(folder: Path, pictures: int, threads: int, cache_dir: str, folders=FOLDERS) -> list:
    """A row per (width, height, shapes) of ``folders``: its ``demo_folder`` result and peak RSS."""
    rows = []
    for width, height, count in folders:
        paths = make_folder(folder / f'{width}x{height}_{count}', width, height, count, pictures)
        out = folder / f'drawn_{width}x{height}_{count}'
        out.mkdir(exist_ok=True)
        result, rss = in_own_process(demo_folder, paths, str(out), threads, cache_dir)
        rows.append({'width': width, 'height': height, 'shapes': count, 'pictures': pictures, 'rss': rss, **result})
        print(format_row(rows[-1], rows), flush=True)
    return rows


HEADER = ('| picture | shapes on it | instances found / drawn (mean) | pictures | end-to-end pictures/s | peak RSS | '
          'vs 640x640 with as many shapes: pictures/s, peak RSS |\n|---|---|---|---|---|---|---|')


def format_row(row: dict, rows) -> str:
    """One table row; the last column compares it with the 640x640 row of as many shapes in ``rows``."""
    small = next((r for r in rows if (r['width'], r['height'], r['shapes']) == (640, 640, row['shapes'])), None)
    versus = (f"{row['fps'] / small['fps']:.2f}x, {row['rss'] / small['rss']:.2f}x"
              if small is not None and small is not row else '-')
    return (f"| {row['width']}x{row['height']} | {row['shapes']} | {row['instances']:.0f} / {row['drawn']:.0f} | "
            f"{row['pictures']} | "
            f"{row['fps']:.2f} | {row['rss'] / 2 ** 20:.0f} MiB | {versus} |")


def report_section(rows, machine: str, command: str) -> str:
    """The markdown section of ``measure``'s rows, between ``MARKERS``."""
    engine = ', '.join(sorted({row['engine'] for row in rows}))
    return report.section(
        MARKERS, 'Small and large pictures, few and many objects',
        f"`demo.py`'s default run (`--backend auto`: here {engine}; the shipped model, "
        "weights/shapes_r18.pdparams) on folders of synthetic pictures: make_shapes_dataset's background and "
        'shapes, one shape per cell of a grid; "found" counts the instances the model returns (each one '
        "pasted; at most max_per_image, 100), \"drawn\" those at or above the demo's draw threshold "
        f"{DRAW_THRESHOLD}. Each folder in a fresh process: one untimed picture, then the demo's "
        'stages in its pipeline (read, preprocess, network, post-process, paste, draw, write the picture); '
        "\"peak RSS\" is that process's peak resident set size (`VmHWM`, the model included). "
        f'Machine: {machine}; command: `{command}`.',
        '\n'.join([HEADER, *(format_row(row, rows) for row in rows)]))
