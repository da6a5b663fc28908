"""Segment every image in a folder (or one image) with SOLOv2 and save pictures.

    python demo.py                      # the shipped shapes model on the sample images
    python demo.py --weights weights/light448_r50.pdparams --input photos/ --output out/

The config is taken from the checkpoint's sidecar unless --config is given.

Reading/preprocessing and mask pasting/drawing/saving run in worker threads; FPS is
measured after a warm-up and covers the whole pipeline.
"""
import argparse
import sys
import time
from pathlib import Path

import cv2

from config import describe_configs, format_settings
from config.cli import add_model_args, add_runtime_args, make_parser, resolve_config
from data.pipeline import run_pipeline
from data.results import instances_to_coco, write_json
from data.transforms import read_image
from data.visualize import draw_instances
from model.checkpoint import CheckpointError
from model.predictor import Predictor
from model.runtime import setup

DEFAULT_WEIGHTS = 'weights/shapes_r18.pdparams'
IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('SOLOv2 instance segmentation on a folder of images.')
    add_model_args(parser, DEFAULT_WEIGHTS)
    parser.add_argument('--input', default='images', help='image file or folder (default: images/)')
    parser.add_argument('--output', default='output/demo', help='folder for the drawn pictures')
    parser.add_argument('--draw-threshold', type=float, default=0.3,
                        help='minimum score of a drawn instance (default 0.3)')
    parser.add_argument('--save-json', metavar='PATH',
                        help='also write COCO-style results (RLE masks) to PATH')
    add_runtime_args(parser)
    parser.add_argument('--warmup', type=int, default=2, help='untimed warm-up runs (default 2)')
    parser.add_argument('--list-configs', action='store_true', help='print the config table and exit')
    return parser.parse_args(argv)


def list_images(path: str):
    """Image files under ``path`` (a file or a folder), sorted; [] if none."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def warm_up(paths, load, model, runs: int) -> None:
    """Run the model ``runs`` times on the first readable image (untimed)."""
    for path in paths:
        try:
            loaded = load(path)
        except ValueError:
            continue
        for _ in range(runs):
            model(loaded)
        return


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print(describe_configs())
        return 0
    if not Path(args.weights).is_file():
        print(f'error: weights not found: {args.weights} (convert a checkpoint first, e.g. '
              'python convert/ppdet2paddle.py SRC.pdparams weights/model.pdparams)', file=sys.stderr)
        return 2
    try:
        number, cfg = resolve_config(args)
    except (KeyError, ValueError) as exc:
        print(f'error: {exc.args[0]}', file=sys.stderr)
        return 2
    paths = list_images(args.input)
    if not paths:
        print(f'error: no images found at {args.input}', file=sys.stderr)
        return 2
    try:
        predictor = Predictor(cfg, args.weights, setup(args.device, args.threads))
    except CheckpointError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'config {number}: {cfg.__name__}\n{format_settings(predictor.cfg)}')
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []

    def load(path):
        image = read_image(path)
        return image, predictor.prepare(image)

    def model(loaded):
        return predictor.infer([loaded[1][0]])[0]

    def finish(path, loaded, detections):
        image, (_, meta) = loaded
        result = predictor.finish(detections, meta)
        drawn = draw_instances(image, result.masks, result.labels, result.scores,
                               predictor.class_names, args.draw_threshold)
        cv2.imwrite(str(out_dir / f'{path.stem}.jpg'), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        if args.save_json:
            image_records = instances_to_coco(paths.index(path), result.masks, result.labels,
                                              result.scores, [i + 1 for i in range(len(predictor.class_names))])
            for record in image_records:
                record['file_name'] = path.name
                record['category_name'] = predictor.class_names[record['category_id'] - 1]
            records.extend(image_records)
        print(f'{path.name}: {len(result)} instances, '
              f'{int((result.scores >= args.draw_threshold).sum())} drawn')

    warm_up(paths, load, model, args.warmup)
    began = time.perf_counter()
    stats = run_pipeline(paths, load, model, finish)
    for path, message in stats.failed:
        print(f'skipped {path}: {message}', file=sys.stderr)
    if args.save_json:
        write_json(sorted(records, key=lambda r: (r['image_id'], -r['score'])), args.save_json)
        print(f'wrote {len(records)} results to {args.save_json}')
    print(f'{stats.done} images in {time.perf_counter() - began:.2f} s: '
          f'{stats.images_per_second:.2f} FPS end to end, model busy {100 * stats.busy_fraction:.0f}% '
          f'of the time; pictures in {out_dir}/')
    return 0 if stats.done else 1


if __name__ == '__main__':
    raise SystemExit(main())
