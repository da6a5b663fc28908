"""Deterministic synthetic COCO-format instance dataset of coloured shapes.

    python tools/make_shapes_dataset.py --out datasets/shapes [--train 600 --val 100 --size 256 --seed 0]

Writes OUT/{train,val}/NNNNNN.jpg, OUT/annotations/instances_{train,val}.json and OUT/classes.txt,
byte-identical for the same arguments (each image has its own random stream). Some images are empty
and some carry an `iscrowd` cluster, so even tiny runs hold negatives and crowd regions. Every 5th
instance, and any whose visible mask has holes, is compressed RLE, the others polygons that rasterise
back to exactly the visible mask; crowd regions are uncompressed RLE. OUT is written whole (a run
replaces an earlier dataset there, a stopped one leaves it as it was).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.errors import InputError
from solov2.core.paths import build_folder
from solov2.data.coco import segmentation_to_mask
from solov2.data.files import check_folder, write_image
from solov2.data.masks import mask_to_box
from solov2.data.results import coco_bbox, crop_run_lengths, encode_crop_rle, write_json
from solov2.data.transforms import swap_red_blue
from solov2.tools.cli import at_least, command, make_parser

CLASS_NAMES = ('circle', 'square', 'triangle', 'star')
CIRCLE, SQUARE, TRIANGLE, STAR = range(len(CLASS_NAMES))
SPLIT_STREAMS = {'train': 0, 'val': 1}
DATASET_ENTRIES = ('train', 'val', 'annotations', 'classes.txt')     # what OUT holds
EMPTY_EVERY = 12
CROWD_EVERY, CROWD_OFFSET = 50, 7
RLE_EVERY = 5
MAX_OBJECTS = 6
MIN_DIAMETER, MAX_DIAMETER_FRACTION = 16.0, 0.6
MIN_VISIBLE = 30
JPEG_QUALITY = 92
NOISE = 7  # uniform pixel noise amplitude
SIMPLIFY_EPS = 0.45  # polygon simplification tolerance, in pixels of the 2x-upsampled mask


def shape_vertices(label: int, center: np.ndarray, diameter: float, angle: float) -> np.ndarray:
    """`[K, 2] float64` (x, y) outline of a shape whose circumscribed circle has `diameter`."""
    if label == STAR:
        count = 10
        radii = np.where(np.arange(count) % 2 == 0, 0.5, 0.2) * diameter
    else:
        count = {CIRCLE: 64, SQUARE: 4, TRIANGLE: 3}[label]
        radii = np.full(count, 0.5 * diameter)
    theta = angle + 2.0 * np.pi * np.arange(count) / count
    return center + radii[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def polygon_mask(vertices: np.ndarray, size: int) -> np.ndarray:
    """Rasterise `[K, 2]` float vertices into a `[size, size] uint8` 0/1 mask (1/16 px precision)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(vertices * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """`[size, size, 3] float32` RGB: a random gradient with smooth blotches (made on a coarse grid), faint lines."""
    coarse = size // 8 + 1
    low, high = rng.uniform(30, 225, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    grid = np.linspace(0, 1, coarse, dtype=np.float32)
    ramp = np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    blotches = rng.normal(0, 18, (4, 4, 3)).astype(np.float32)
    smooth = low + ramp[:, :, None] * (high - low)
    smooth += cv2.resize(blotches, (coarse, coarse), interpolation=cv2.INTER_CUBIC)
    background = cv2.resize(smooth, (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(rng.integers(2, 6)):
        line = np.zeros((size, size), dtype=np.uint8)
        start, end = rng.integers(0, size, (2, 2))
        cv2.line(line, tuple(map(int, start)), tuple(map(int, end)), 1, int(rng.integers(1, 3)))
        alpha = np.float32(rng.uniform(0.1, 0.25))
        on = line > 0
        background[on] = (1 - alpha) * background[on] + alpha * rng.uniform(0, 255, 3).astype(np.float32)
    return background


def pick_colour(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`[3] float64` RGB colour that differs from `canvas` under `mask` (L1 > 120), in up to 10 draws."""
    under = canvas[mask > 0].mean(axis=0)
    for _ in range(10):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - under).sum() > 120:
            break
    return colour


def random_object(rng: np.random.Generator, size: int) -> tuple[int, np.ndarray]:
    """`(label, [K, 2] vertices)` with a log-uniform diameter, random centre and rotation."""
    label = int(rng.integers(len(CLASS_NAMES)))
    diameter = np.exp(rng.uniform(np.log(MIN_DIAMETER), np.log(MAX_DIAMETER_FRACTION * size)))
    return label, shape_vertices(label, rng.uniform(0.1 * size, 0.9 * size, 2), diameter, rng.uniform(0, 2 * np.pi))


def crowd_blobs(rng: np.random.Generator, size: int) -> np.ndarray:
    """`[size, size] uint8` union of 6-12 small discs scattered around a random centre."""
    mask = np.zeros((size, size), dtype=np.uint8)
    center = rng.uniform(0.2 * size, 0.8 * size, 2)
    max_radius = max(3, size // 64)
    for _ in range(rng.integers(6, 13)):
        x, y = np.clip(center + rng.normal(0, 0.06 * size, 2), 0, size - 1)
        cv2.circle(mask, (int(x), int(y)), int(rng.integers(2, max_radius + 1)), 1, -1)
    return mask


def paint(canvas: np.ndarray, masks: list[np.ndarray], mask: np.ndarray, colour: np.ndarray) -> None:
    """Draw `mask` in `colour` on `[S, S, 3] float32` canvas and remove it from the earlier `masks`."""
    canvas[mask > 0] = colour
    uncovered = 1 - mask
    for earlier in masks:
        earlier &= uncovered


def render_image(rng: np.random.Generator, size: int, num_objects: int,
                 with_crowd: bool) -> tuple[np.ndarray, list[tuple[int, np.ndarray]], tuple[int, np.ndarray] | None]:
    """`([S, S, 3] uint8 RGB, [(label, [S, S] uint8 visible mask)] from MIN_VISIBLE pixels, crowd
    (label, [S, S] uint8 mask) or None)` of one image."""
    canvas = render_background(rng, size)
    labels, masks = [], []
    for _ in range(num_objects):
        label, vertices = random_object(rng, size)
        mask = polygon_mask(vertices, size)
        if not mask.any():
            continue
        paint(canvas, masks, mask, pick_colour(rng, canvas, mask))
        labels.append(label)
        masks.append(mask)
    crowd = None
    if with_crowd:
        crowd_mask = crowd_blobs(rng, size)
        paint(canvas, masks, crowd_mask, pick_colour(rng, canvas, crowd_mask))
        crowd = (int(rng.integers(len(CLASS_NAMES))), crowd_mask)
    image = np.clip(canvas + rng.integers(-NOISE, NOISE + 1, canvas.shape, dtype=np.int8), 0, 255).astype(np.uint8)
    return image, [(label, mask) for label, mask in zip(labels, masks) if mask.sum() >= MIN_VISIBLE], crowd


def exact_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons of `[H, W] uint8` that rasterise back to exactly `mask`, else None (holes): traced 2x
    upsampled, a quarter pixel inside the boundary, which pycocotools rasterises to the same pixels."""
    upsampled = cv2.resize(mask, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    simplified = [cv2.approxPolyDP(c, SIMPLIFY_EPS, True) for c in contours]
    polygons = [((c.reshape(-1, 2) + 0.5) / 2).ravel().tolist() for c in simplified if len(c) >= 3]
    if not polygons:
        return None
    return polygons if np.array_equal(segmentation_to_mask(polygons, *mask.shape), mask) else None


def annotation(ann_id: int, image_id: int, label: int, mask: np.ndarray, crowd: bool) -> dict[str, Any]:
    """COCO annotation of `[H, W] uint8` visible mask (module docstring: which segmentation kind)."""
    whole = (0, 0, mask.shape[1], mask.shape[0])      # the mask as its own crop
    if crowd:
        segmentation: Any = {'size': list(mask.shape), 'counts': crop_run_lengths(mask, whole, mask.shape).tolist()}
    else:
        polygons = None if ann_id % RLE_EVERY == 0 else exact_polygons(mask)
        segmentation = polygons if polygons is not None else encode_crop_rle(mask, whole, mask.shape)
    return {'id': ann_id, 'image_id': image_id, 'category_id': label + 1, 'segmentation': segmentation,
            'area': int(mask.sum()), 'bbox': coco_bbox(mask_to_box(mask)), 'iscrowd': int(crowd)}


def generate_split(out_dir: Path, split: str, count: int, size: int, seed: int) -> dict[str, Any]:
    """Render `count` images into `out_dir/split` and return their COCO instance dict."""
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        rng = np.random.default_rng([seed, SPLIT_STREAMS[split], index])
        num_objects = 0 if index % EMPTY_EVERY == 0 else int(rng.integers(1, MAX_OBJECTS + 1))
        with_crowd = index % CROWD_EVERY == CROWD_OFFSET
        image, instances, crowd = render_image(rng, size, num_objects, with_crowd)
        image_id, file_name = index + 1, f'{index:06d}.jpg'
        write_image(image_dir / file_name, swap_red_blue(image), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        images.append({'id': image_id, 'file_name': file_name, 'height': size, 'width': size})
        regions = [(label, mask, False) for label, mask in instances]
        regions += [(crowd[0], crowd[1], True)] if crowd is not None else []
        for label, mask, is_crowd in regions:
            annotations.append(annotation(len(annotations) + 1, image_id, label, mask, is_crowd))
    categories = [{'id': i + 1, 'name': name, 'supercategory': 'shape'} for i, name in enumerate(CLASS_NAMES)]
    return {'info': {'description': f'synthetic shapes, {split} split, seed {seed}'}, 'licenses': [],
            'images': images, 'annotations': annotations, 'categories': categories}


def split_summary(split: str, coco: dict[str, Any]) -> str:
    """One-line counts of images, empty images and polygon / RLE / crowd annotations."""
    anns = coco['annotations']
    crowd = sum(a['iscrowd'] for a in anns)
    polygons = sum(isinstance(a['segmentation'], list) for a in anns)
    annotated = {a['image_id'] for a in anns if not a['iscrowd']}
    return (f"{split}: {len(coco['images'])} images ({len(coco['images']) - len(annotated)} empty), "
            f"{len(anns) - crowd} instances ({polygons} polygon, {len(anns) - crowd - polygons} rle), {crowd} crowd")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('--out', required=True, type=Path, help='output dataset directory')
    parser.add_argument('--train', type=at_least(0), default=600, help='number of training images')
    parser.add_argument('--val', type=at_least(0), default=100, help='number of validation images')
    parser.add_argument('--size', type=at_least(64), default=256, help='image side in pixels')
    parser.add_argument('--seed', type=at_least(0, most=2**32 - 1), default=0, help='random seed')
    return parser.parse_args(argv)


def check_out(out: Path) -> None:
    """InputError when ``out`` cannot be made or holds anything but a shapes dataset (it is replaced whole)."""
    check_folder(out, '--out')
    others = sorted(p.name for p in out.iterdir() if p.name not in DATASET_ENTRIES) if out.is_dir() else []
    if others:
        raise InputError(f'--out {out} holds files a shapes dataset does not ({", ".join(others[:3])}): it is '
                         "replaced whole — give a new folder or a shapes dataset's own")


@command
def main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    check_out(args.out)
    start = time.perf_counter()
    summaries = []
    with build_folder(args.out, replace=True) as out:    # whole: a stopped run leaves the folder as it was
        for split, count in (('train', args.train), ('val', args.val)):
            coco = generate_split(out, split, count, args.size, args.seed)
            write_json(coco, out / 'annotations' / f'instances_{split}.json')
            summaries.append(split_summary(split, coco))
        (out / 'classes.txt').write_text(''.join(f'{name}\n' for name in CLASS_NAMES), encoding='utf-8')
    print(f"shapes -> {args.out}: {'; '.join(summaries)}; {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
