"""Convert a folder of labelme JSON files into a COCO instance file and classes.txt.

    python tools/labelme2coco.py LABELME_DIR OUT.json [--classes classes.txt] [--copy-images DIR] [--images DIR]

Each `LABELME_DIR/*.json` (sorted by name) is one image; polygons, rectangles and circles become polygons, labelme's
masks (a PNG over a box) an RLE, shapes sharing a `group_id` one instance. Categories (ids 1..) are the classes of
`--classes`, else those of the classes.txt already next to OUT.json (so every split gets the same ids), else the
sorted labels, written there. With `--copy-images` the images (or their `imageData`) are copied to DIR. A file
moved away from its picture finds it again: where `imagePath` does not reach, a picture of that name or named
as the file, beside it (or in `--images`), said in one line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.errors import InputError
from solov2.data.coco import read_class_names, segmentation_to_rle
from solov2.data.files import IMAGE_SUFFIXES, atomic_write, check_output_file, make_folder
from solov2.data.results import encode_crop_rle, write_json
from solov2.data.transforms import picture_size
from solov2.tools.cli import command, make_parser, read_json, set_status

CIRCLE_VERTICES = 64

CLASSES_HELP = ('class list (category ids 1..): a classes.txt, one name per line, or a COCO file '
                "(e.g. the training split's); default: the classes.txt next to OUT, else the labels")

def read_labelme(path: Path) -> dict[str, Any]:
    """Parse one labelme file; `InputError` naming `path` if it is not valid labelme JSON."""
    doc = read_json(path, 'give a labelme file')
    if not isinstance(doc, dict):
        raise InputError(f'{path}: not a labelme file (top level is not an object)')
    missing = [key for key in ('shapes', 'imagePath', 'imageHeight', 'imageWidth') if key not in doc]
    if missing:
        raise InputError(f"{path}: not a labelme file (missing {', '.join(missing)})")
    for index, shape in enumerate(doc['shapes']):
        if not isinstance(shape, dict) or 'label' not in shape or 'points' not in shape:
            raise InputError(f'{path}: shape {index} lacks a label or points')
    return doc


def shape_polygon(shape: dict[str, Any]) -> list[float]:
    """Flat `[x0, y0, x1, y1, ...]` polygon of a labelme polygon, rectangle or circle shape."""
    kind = shape.get('shape_type') or 'polygon'
    points = np.asarray(shape['points'], dtype=np.float64).reshape(-1, 2)
    if kind == 'polygon':
        if len(points) < 3:
            raise InputError(f"polygon {shape['label']!r} has {len(points)} points, needs 3")
        return points.ravel().tolist()
    if len(points) != 2:
        raise InputError(f"{kind} {shape['label']!r} has {len(points)} points, needs 2")
    if kind == 'rectangle':
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    if kind == 'circle':
        center = points[0]
        radius = float(np.hypot(*(points[1] - center)))
        theta = 2 * math.pi * np.arange(CIRCLE_VERTICES) / CIRCLE_VERTICES
        return (center + radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)).ravel().tolist()
    raise InputError(f"unsupported shape_type {kind!r} (label {shape['label']!r})")


def mask_rle(shape: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Compressed RLE at `height` x `width` of a labelme mask shape: its `mask` (a base64 PNG of the box
    between its two `points`, corners included) placed at the box, clipped to the image."""
    (x0, y0), (x1, y1) = np.asarray(shape['points'], dtype=np.float64).round().astype(int).reshape(2, 2)
    part = cv2.imdecode(np.frombuffer(base64.b64decode(shape['mask'], validate=True), np.uint8), cv2.IMREAD_GRAYSCALE)
    if part is None or part.shape != (y1 - y0 + 1, x1 - x0 + 1) or min(x0, y0) < 0:
        raise ValueError(f"mask {shape['label']!r} is not a PNG of its box {x1 - x0 + 1}x{y1 - y0 + 1} at ({x0}, {y0})")
    crop = part[:max(0, height - y0), :max(0, width - x0)] > 0         # clipped to the image
    return encode_crop_rle(crop, (x0, y0, x0 + crop.shape[1], y0 + crop.shape[0]), (height, width))


def group_instances(shapes: Sequence[dict[str, Any]], height: int, width: int) -> list[tuple[str, list[Any]]]:
    """`(label, parts: flat polygons, masks' RLE)` per instance in the order of its first shape (a `group_id`'s)."""
    instances: dict[tuple[str, Any], tuple[str, list[Any]]] = {}
    for index, shape in enumerate(shapes):
        group = shape.get('group_id')
        part = mask_rle(shape, height, width) if shape.get('shape_type') == 'mask' else shape_polygon(shape)
        key = ('shape', index) if group is None else ('group', group)      # a shape without a group: its own
        label, parts = instances.setdefault(key, (shape['label'], []))
        if label != shape['label']:
            raise InputError(f"group_id {group} mixes labels {label!r} and {shape['label']!r}")
        parts.append(part)
    return list(instances.values())


def copy_image(source: Path | bytes, target: Path) -> None:
    """Copy an image file or embedded bytes to `target`; `InputError` rather than overwrite another file."""
    data = source if isinstance(source, bytes) else source.read_bytes()
    if target.exists():
        if target.is_file() and target.read_bytes() == data:
            return
        raise InputError(f'--copy-images would overwrite {target}, a different file — pick an empty folder')
    atomic_write(target, data)


def find_picture(image_path: str, json_path: Path, images_dir: Path | None) -> Path | None:
    """The picture of a labelme file: its `imagePath` from the file's folder, else (the file moved) a picture
    of that name, or named as the file (any picture suffix), beside it or in `images_dir`; None if none is."""
    stated = json_path.parent / image_path
    if stated.is_file():
        return stated
    names = [Path(image_path).name] + [json_path.stem + suffix for suffix in sorted(IMAGE_SUFFIXES)
                                       for suffix in (suffix, suffix.upper())]
    folders = [json_path.parent] + ([images_dir] if images_dir is not None else [])
    return next((folder / name for folder in folders for name in names if (folder / name).is_file()), None)


def image_file_name(doc: dict[str, Any], json_path: Path, copy_dir: Path | None, images_dir: Path | None = None,
                    notes: list[str] | None = None) -> str:
    """COCO `file_name`: the bare name of the image (or `imageData`) copied to `copy_dir`, else `imagePath` (or,
    where that no longer resolves, the name of the picture `find_picture` found, said in `notes`)."""
    image_path = doc['imagePath'].replace('\\', '/')
    found = find_picture(image_path, json_path, images_dir)
    source: Path | bytes
    if found is None:        # else the embedded imageData's bytes
        if not doc.get('imageData'):
            where = 'beside it (--images DIR: there too)' if images_dir is None else f'beside it or in {images_dir}'
            raise InputError(f'{json_path}: image file {json_path.parent / image_path} not found, nor a picture named '
                             f'{Path(image_path).name} or {json_path.stem}.* {where}, and no imageData embedded')
        try:
            source = base64.b64decode(doc['imageData'], validate=True)
        except binascii.Error as err:
            raise InputError(f'{json_path}: bad embedded imageData: {err}') from err
        if copy_dir is None:
            raise InputError(f'{json_path}: image file {image_path} not found; '
                             'pass --copy-images DIR to extract the embedded imageData')
    else:
        source = found
        if found != json_path.parent / image_path:
            image_path = found.name
            if notes is not None:
                notes.append(f'{json_path.name}: imagePath {doc["imagePath"]} not found, used {found}')
    if copy_dir is None:
        return image_path
    copy_image(source, copy_dir / Path(image_path).name)
    return Path(image_path).name


def check_size(path: Path, doc: dict[str, Any], picture: Path | None) -> None:
    """InputError when the `picture` of the labelme file `path` is not, as read (EXIF orientation applied, as labelme
    and the toolkit show it), the `imageWidth` x `imageHeight` its shapes were drawn on."""
    size = None if picture is None else picture_size(picture)
    if size is not None and size != (int(doc['imageHeight']), int(doc['imageWidth'])):
        raise InputError(f"{path}: its picture {picture} is {size[1]}x{size[0]} as read (EXIF orientation applied), "
                         f"but its shapes were drawn on a {doc['imageWidth']}x{doc['imageHeight']} one — label the "
                         'picture again, or give the one it was labelled on')


def check_labels(docs: dict[Path, dict[str, Any]], class_names: Sequence[str], origin: str = '') -> None:
    """`InputError` listing every shape label missing from `class_names` (from `origin`), with a file using it."""
    first_use: dict[str, Path] = {}
    for path, doc in docs.items():
        for shape in doc['shapes']:
            first_use.setdefault(shape['label'], path)
    unknown = sorted(set(first_use) - set(class_names))
    if unknown:
        listed = ', '.join(f'{label!r} (e.g. {first_use[label].name})' for label in unknown)
        raise InputError(f'labels not in the class list{origin}: {listed}')


def convert(labelme_dir: str | Path, class_names: Sequence[str] | None = None, copy_dir: str | Path | None = None,
            origin: str = '', images_dir: str | Path | None = None) -> dict[str, Any]:
    """COCO instance dict of all `labelme_dir/*.json` (sorted; image ids 1..), categories `class_names` (`origin`:
    where they come from, for the error) or the sorted labels; zero-area instances skipped with a warning; a
    picture its `imagePath` does not reach looked for beside the file and in `images_dir`, in one line each."""
    labelme_dir = Path(labelme_dir)
    if not labelme_dir.is_dir():
        raise InputError(f'labelme directory not found: {labelme_dir}')
    docs = {path: read_labelme(path) for path in sorted(labelme_dir.glob('*.json'))}
    if not docs:
        raise InputError(f'no labelme .json files in {labelme_dir}')
    if class_names is None:
        class_names = sorted({shape['label'] for doc in docs.values() for shape in doc['shapes']})
    check_labels(docs, class_names, origin)
    category_of = {name: index + 1 for index, name in enumerate(class_names)}
    copy_dir = None if copy_dir is None else make_folder(copy_dir, '--copy-images')
    images, annotations, owner_of, notes = [], [], {}, []
    images_dir = None if images_dir is None else Path(images_dir)
    for image_id, (path, doc) in enumerate(docs.items(), start=1):
        file_name = image_file_name(doc, path, copy_dir, images_dir, notes)
        if file_name in owner_of:
            raise InputError(f'{path} and {owner_of[file_name]} both use image {file_name}')
        owner_of[file_name] = path
        height, width = int(doc['imageHeight']), int(doc['imageWidth'])
        check_size(path, doc, copy_dir / file_name if copy_dir else find_picture(file_name, path, images_dir))
        images.append({'id': image_id, 'file_name': file_name, 'height': height, 'width': width})
        try:
            instances = group_instances(doc['shapes'], height, width)
        except (KeyError, TypeError, ValueError) as err:         # binascii.Error (a bad mask's base64) among them
            raise InputError(f'{path}: bad shape: {err}') from err
        for label, parts in instances:         # area and bbox of the mask the parts rasterise to
            rle = mask_util.merge([part if isinstance(part, dict) else segmentation_to_rle([part], height, width)
                                   for part in parts])
            if not mask_util.area(rle):
                print(f'warning: {path}: {label!r} covers no pixel, skipped', file=sys.stderr)
                continue
            only_polygons = all(isinstance(part, list) for part in parts)
            segmentation = parts if only_polygons else dict(rle, counts=rle['counts'].decode('ascii'))
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id, 'category_id': category_of[label],
                                'segmentation': segmentation, 'area': int(mask_util.area(rle)),
                                'bbox': [float(v) for v in mask_util.toBbox(rle)], 'iscrowd': 0})
    for note in notes:
        print(note, file=sys.stderr)
    categories = [{'id': cid, 'name': name, 'supercategory': ''} for name, cid in category_of.items()]
    return {'images': images, 'annotations': annotations, 'categories': categories}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('labelme_dir', type=Path, help='folder of labelme .json files')
    parser.add_argument('out', type=Path, help='COCO instance file to write')
    parser.add_argument('--classes', type=Path, help=CLASSES_HELP)
    parser.add_argument('--copy-images', type=Path, metavar='DIR', help='copy the images into DIR')
    parser.add_argument('--images', type=Path, metavar='DIR',
                        help="where to look for a file's picture when its imagePath does not reach it (the files "
                             'moved): a picture of that name, or named as the file; beside the file is always tried')
    return parser.parse_args(argv)


@command
def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    inputs = sorted(args.labelme_dir.glob('*')) if args.labelme_dir.is_dir() else []    # OUT is none of them
    check_output_file(args.out, inputs + ([args.classes] if args.classes else []), 'output')
    classes_path = args.out.parent / 'classes.txt'
    class_names, origin = class_list(args.classes, classes_path)
    set_status(lambda: f'nothing was written to {args.out}' + (
        f'; images copied so far are in {args.copy_images}' if args.copy_images else ''))
    print(save(convert(args.labelme_dir, class_names, args.copy_images, origin, args.images), args.out))
    return 0


def save(coco: dict[str, Any], out: Path) -> str:
    """Write `coco` to `out` and its class list to the classes.txt beside it (one kept); the line that says so."""
    names, classes_path = [c['name'] for c in coco['categories']], out.parent / 'classes.txt'
    write_json(coco, out)
    if classes_path.is_file():
        note = f'{classes_path} (kept)'
    else:
        atomic_write(classes_path, ''.join(f'{name}\n' for name in names).encode('utf-8'))
        note = str(classes_path)
    present = {a['category_id'] for a in coco['annotations']}
    absent = [c['name'] for c in coco['categories'] if c['id'] not in present]
    return (f"{len(coco['images'])} images, {len(coco['annotations'])} instances, {len(names)} classes -> {out}, "
            f"{note}" + (f'; no instance of {", ".join(absent)}' if absent else ''))


def class_list(classes: Path | None, classes_path: Path) -> tuple[list[str] | None, str]:
    """(the class names of `classes`, else of `classes_path`, else None; where they come from, for an error)."""
    existing = read_class_names(classes_path) if classes_path.is_file() else None
    if classes is None:
        return existing, '' if existing is None else (
            f' {classes_path} (the classes of the split converted there first; pass --classes with every class, '
            'or delete it to start a new list)')
    names = read_class_names(classes)
    if existing is not None and existing != names:
        raise InputError(f'{classes_path} lists other classes ({", ".join(existing)}) than --classes {classes} '
                         f'({", ".join(names)}) — write OUT into another folder, or delete {classes_path}')
    return names, f' --classes {classes}'


if __name__ == '__main__':
    raise SystemExit(main())
