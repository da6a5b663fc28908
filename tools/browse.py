"""Draw a dataset's own annotations as predictions are drawn, to check converted labels before training.

    python tools/browse.py datasets/mine/annotations/instances_train.json datasets/mine/train --output output/browse
    python tools/browse.py labelme/train --output output/browse_labelme       # a labelme folder as converted

SOURCE is a COCO instance file (with IMAGES, the folder of its pictures) or a folder of labelme files (read as
tools/labelme2coco.py reads them). Each picture is written to --output with its annotations drawn as demo.py
draws a model's instances (fill, outline, a caption with the class name; crowd regions left out); one line a
picture, then the instances per class. Nothing is written over a picture of the dataset.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.errors import InputError
from solov2.data.coco import check_picture_sizes, load_coco, segmentation_to_mask
from solov2.data.files import make_folder, same_file, write_image
from solov2.data.transforms import read_image
from solov2.data.visualize import draw_bgr
from solov2.tools import labelme2coco
from solov2.tools.cli import at_least, command, make_parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('source', type=Path, help='a COCO instance file, or a folder of labelme files')
    parser.add_argument('images', type=Path, nargs='?', help="the COCO file's pictures (not for a labelme folder)")
    parser.add_argument('--output', type=Path, default=Path('output/browse'),
                        help='folder for the drawn pictures (default output/browse)')
    parser.add_argument('--limit', type=at_least(1), metavar='N', help='draw only the first N pictures')
    return parser.parse_args(argv)


def dataset_of(source: Path, images: Path | None) -> tuple[dict[str, Any], Path]:
    """(the COCO dict of ``source``, the folder its ``file_name``s are relative to)."""
    if source.is_dir():
        if images is not None:
            raise InputError(f'{source} is a labelme folder: its pictures are found from its files, give no IMAGES')
        return labelme2coco.convert(source), source
    if images is None:
        raise InputError(f'give the folder of the pictures of {source} after it: browse.py {source} IMAGES')
    if not images.is_dir():
        raise InputError(f'images folder not found: {images}')
    coco = load_coco(source)
    check_picture_sizes(coco, images, source)        # before any is drawn
    return coco.dataset, images


def drawn_picture(image: dict[str, Any], annotations: list[dict[str, Any]], folder: Path,
                  label_of: dict[int, int], names: list[str]) -> np.ndarray:
    """The BGR picture of ``image`` (a COCO image record in ``folder``) with ``annotations`` drawn."""
    rgb = np.ascontiguousarray(read_image(folder / image['file_name']))
    height, width = rgb.shape[:2]
    if (height, width) != (int(image['height']), int(image['width'])):
        raise InputError(f"{folder / image['file_name']} is {width}x{height}, its annotations say "
                         f"{image['width']}x{image['height']} — the annotation file is not this picture's")
    masks = np.stack([segmentation_to_mask(a['segmentation'], height, width) for a in annotations]) \
        if annotations else np.zeros((0, height, width), bool)
    labels = np.array([label_of[a['category_id']] for a in annotations], np.int64)
    return draw_bgr(rgb, masks.astype(bool), labels, np.ones(len(annotations), np.float32), names, 0.0,
                    show_scores=False)


@command
def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    coco, folder = dataset_of(args.source, args.images)
    make_folder(args.output, '--output')
    if same_file(args.output, folder):
        raise InputError(f"--output {args.output} is the pictures' folder — pick another folder")
    categories = sorted(coco['categories'], key=lambda c: int(c['id']))
    names = [c['name'] for c in categories]
    label_of = {int(c['id']): index for index, c in enumerate(categories)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in coco['annotations']:
        if not annotation.get('iscrowd'):
            by_image.setdefault(annotation['image_id'], []).append(annotation)
    counts: Counter = Counter()
    written = set()
    for image in coco['images'][:args.limit]:
        annotations = by_image.get(image['id'], [])
        target = args.output / (Path(image['file_name']).stem + '.jpg')
        if target in written:
            raise InputError(f'two pictures are named {target.stem}: draw their folders one at a time')
        written.add(target)
        write_image(target, drawn_picture(image, annotations, folder, label_of, names))
        counts.update(names[label_of[a['category_id']]] for a in annotations)
        print(f"{image['file_name']}: {len(annotations)} instances -> {target}")
    shown = ', '.join(f'{name} {counts[name]}' for name in names)
    print(f"{min(len(coco['images']), args.limit or len(coco['images']))} pictures drawn in {args.output}; "
          f'instances per class: {shown}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
