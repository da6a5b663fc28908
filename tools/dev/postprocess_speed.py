"""Speed of everything after the network, on one core: raw outputs -> instances ->
masks on the picture -> COCO RLE + JSON -> drawn picture (what ``demo.py`` does per image),
for ``python tools/dev/benchmark.py --postprocess``.

The raw outputs are synthetic but shaped like a real image's: ``instances`` blobs on the
mask-feature map, each a logit channel (+ a constant channel for the bias), and
``candidates`` (cell, class) pairs above the score threshold, each cell's kernel selecting
one blob (slightly perturbed), one high-scoring cell per blob and the rest weaker
duplicates, so Matrix NMS keeps one instance per blob.
"""
import json
import os
import statistics
import time

import cv2
import numpy as np
import threadpoolctl

from solov2.data.results import instances_to_coco
from solov2.data.transforms import ImageMeta, padded_size, resized_hw
from solov2.data.visualize import draw_instances
from solov2.model.inference.postprocess import InferenceParams, paste_detections, postprocess_flat
from solov2.tools.dev import report


def _blob_features(rng, count: int, channels: int, feat_hw) -> np.ndarray:
    """[E, Hf, Wf] float32: channel b < count is 1 inside ellipse b, 0 outside (plus a
    little noise); the last channel is 1 everywhere (the kernels' bias)."""
    height, width = feat_hw
    feat = rng.normal(0, 0.03, (channels, height, width)).astype(np.float32)
    for b in range(count):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(3, 16)), int(rng.integers(3, 16)))
        blob = np.zeros((height, width), np.uint8)
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        feat[b] += blob
    feat[-1] = 1.0
    return feat


def synthetic_outputs(params: InferenceParams, num_classes: int, channels: int, feat_hw,
                      instances: int = 100, candidates: int = 2700, seed: int = 0):
    """(scores [1, K, C], kernels [1, K, E], mask_feat [1, E, Hf, Wf]) float32 that give
    ``instances`` detections from ``candidates`` candidates (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cells = sum(s * s for s in params.num_grids)
    assert instances < channels and candidates <= cells
    feat = _blob_features(rng, instances, channels, feat_hw)
    picked = rng.choice(cells, candidates, replace=False)
    blob_of = np.concatenate([np.arange(instances), rng.integers(0, instances, candidates - instances)])
    class_of_blob = rng.integers(0, num_classes, instances)
    scores = np.zeros((cells, num_classes), np.float32)
    scores[picked, class_of_blob[blob_of]] = np.concatenate(
        [rng.uniform(0.6, 0.95, instances), rng.uniform(0.11, 0.5, candidates - instances)])
    kernels = rng.normal(0, 0.2, (cells, channels)).astype(np.float32)
    kernels[picked, blob_of] += 12.0
    kernels[:, -1] = -6.0
    return scores[None], kernels[None], feat[None]


def finish_picture(image, soft, meta: ImageMeta, params: InferenceParams, class_names):
    """What the demo does after post-processing, in stages: paste, RLE + JSON, drawing.
    Returns the seconds of each stage."""
    times = [time.process_time()]
    result = paste_detections(soft, meta, params.mask_threshold)
    result.masks.crops       # every mask pasted now (each is made when first read), as --save-json needs
    times.append(time.process_time())
    json.dumps(instances_to_coco(0, result.masks, result.labels, result.scores,
                                 list(range(1, len(class_names) + 1))))
    times.append(time.process_time())
    draw_instances(image, result.masks, result.labels, result.scores, class_names)
    times.append(time.process_time())
    return np.diff(times)


def postprocess_seconds(cfg, size: int = 640, runs: int = 5, instances: int = 100) -> dict:
    """Median CPU seconds per stage (postprocess, paste, encode, draw, total) for one
    ``size`` x ``size`` picture with ``instances`` detections; the instance and candidate
    counts and the mask-feature size."""
    params = InferenceParams.from_config(cfg)
    (height, width), _ = resized_hw(size, size, cfg.test_short, cfg.test_max)
    padded = (padded_size(height, 32), padded_size(width, 32))
    meta = ImageMeta((size, size), (height, width), padded)
    outputs = synthetic_outputs(params, cfg.num_classes, cfg.kernel_channels,
                                (padded[0] // 4, padded[1] // 4), instances)
    image = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rows = []
    for _ in range(runs + 1):                    # the first run warms up
        began = time.process_time()
        soft = postprocess_flat(*outputs, params)[0]
        rows.append([time.process_time() - began, *finish_picture(image, soft, meta, params, cfg.class_names)])
    stages = [statistics.median(column) for column in zip(*rows[1:])]
    return dict(zip(('postprocess', 'paste', 'encode', 'draw'), stages), total=sum(stages),
                instances=len(soft), candidates=int((outputs[0] > params.score_threshold).sum()),
                feat=f'{padded[0] // 4}x{padded[1] // 4}')


def one_core() -> None:
    """Pin this process to one core, with one thread in every BLAS / OpenMP pool and OpenCV."""
    if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    threadpoolctl.threadpool_limits(1)
    cv2.setNumThreads(1)


MARKERS = ('<!-- postprocess: begin -->', '<!-- postprocess: end -->')


def report_section(rows, machine: str, command: str) -> str:
    """The markdown section of ``postprocess_seconds`` results (``rows``: (config, size,
    result) tuples), between ``MARKERS`` so that a later run replaces it."""
    table = ['| config | picture | mask features | candidates | instances | post-process | paste | '
             'RLE + JSON | drawing | total ms |', '|---|---|---|---|---|---|---|---|---|---|']
    for number, size, result in rows:
        table.append(f"| {number} | {size}x{size} | {result['feat']} | {result['candidates']} | "
                     f"{result['instances']} | " + ' | '.join(
                         f'{1e3 * result[k]:.1f}' for k in ('postprocess', 'paste', 'encode', 'draw', 'total'))
                     + ' |')
    return report.section(
        MARKERS, 'Post-processing on one core',
        'Everything after the network for one picture, as `demo.py` does it: raw outputs -> instances '
        '(`postprocess_flat`) -> masks on the picture (paste) -> COCO RLE + JSON -> drawn picture; synthetic '
        f'outputs, median CPU ms on one pinned core. Machine: {machine}; command: `{command}`.', '\n'.join(table))
