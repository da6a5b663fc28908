"""Convert a Label Studio JSON export (polygons, brushes) into a COCO instance file and classes.txt.

    python tools/labelstudio2coco.py EXPORT.json OUT.json --images DIR [--classes classes.txt]

EXPORT.json is the project's export in Label Studio's "JSON" format; DIR holds its pictures (Label Studio's
media/upload/<project> folder, or a folder of the same files by their own names): a task's picture is found by
its URL's file name, or that name without the 8-character prefix Label Studio gives uploads. Each task's latest
annotation that was not cancelled is one image (an empty one: a picture with no object); a task with none is left
out. Each polygon or brush region is one instance (polygons in percent of the picture -> pixels, brushes from
Label Studio's RLE); regions of other kinds are left out, counted. Categories as `solov2 labelme2coco` sets them.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Sequence

import pycocotools.mask as mask_util

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.errors import InputError
from solov2.data.coco import segmentation_to_rle
from solov2.data.files import check_output_file
from solov2.data.label_studio import decode_brush, points_polygon
from solov2.data.transforms import picture_size
from solov2.tools.cli import command, make_parser, read_json, set_status
from solov2.tools.labelme2coco import CLASSES_HELP, class_list, save

UPLOAD_PREFIX = re.compile(r'^[0-9a-f]{8}-')            # what Label Studio puts before an uploaded file's name
REGION_KINDS = ('polygonlabels', 'brushlabels')


def picture_url(task: dict[str, Any]) -> str:
    """The task's picture: its data's one text value (its ``image`` when it has several)."""
    data = task.get('data') if isinstance(task.get('data'), dict) else {}
    texts = [value for value in data.values() if isinstance(value, str)]
    where = data.get('image') if len(texts) != 1 else texts[0]
    if not isinstance(where, str):
        raise InputError(f"task {task.get('id')} has no picture in its data (one text value, or 'image')")
    return where


def picture_file(where: str, images: Path) -> Path | None:
    """The file in ``images`` of a task's picture URL or path (``d=`` of a local-files URL), None when absent."""
    url = urllib.parse.urlparse(where)
    local = urllib.parse.parse_qs(url.query).get('d')
    name = Path(urllib.parse.unquote(local[0] if local else url.path)).name
    for candidate in (name, UPLOAD_PREFIX.sub('', name)):
        if candidate and (images / candidate).is_file():
            return images / candidate
    return None


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's annotation made last (its highest id) that was not cancelled; None without one."""
    kept = [one for one in task.get('annotations') or [] if isinstance(one, dict) and not one.get('was_cancelled')]
    return max(kept, key=lambda one: one.get('id') or 0, default=None)


def region_mask(result: dict[str, Any], height: int, width: int) -> tuple[str, Any]:
    """(its label, its COCO segmentation in pixels: a polygon list or an RLE) of a polygon or brush region."""
    kind, value = result['type'].lower(), result.get('value') or {}
    labels = value.get(kind) or value.get(result['type'])
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise InputError(f'a {kind} region has {labels!r} as its labels, not one label')
    if (result.get('original_width'), result.get('original_height')) not in ((width, height), (None, None)):
        raise InputError(f"a region was drawn on a {result['original_width']}x{result['original_height']} picture, "
                         f'not the {width}x{height} one')
    if kind == 'polygonlabels':
        return labels[0], [points_polygon(value.get('points'), height, width)]
    rle = mask_util.encode(decode_brush(value.get('rle'), height, width).astype('uint8', order='F'))
    return labels[0], dict(rle, counts=rle['counts'].decode('ascii'))


def task_instances(task: dict[str, Any], images: Path, skipped: dict[str, int]) -> tuple[dict[str, Any], list]:
    """(the COCO image of a task's picture, its (label, segmentation) instances); regions of other kinds counted in
    ``skipped``. InputError naming the task for a bad region."""
    where = picture_url(task)
    path = picture_file(where, images)
    if path is None:
        raise FileNotFoundError(f"task {task.get('id')} ({where})")
    size = picture_size(path)          # as Label Studio shows it and the toolkit reads it: EXIF orientation applied
    if size is None:
        raise InputError(f"task {task.get('id')}: {path} is not a picture")
    height, width = size
    instances = []
    for result in (latest_annotation(task) or {}).get('result') or []:
        kind = str(result.get('type', '')).lower() if isinstance(result, dict) else ''
        if kind not in REGION_KINDS:
            key = f"{kind or 'unknown'} regions"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        try:
            instances.append(region_mask(result, height, width))
        except InputError as exc:
            raise InputError(f"task {task.get('id')}: {exc.args[0]}") from None
    return {'file_name': path.relative_to(images).as_posix(), 'height': height, 'width': width}, instances


def convert(export: Any, images: str | Path, class_names: Sequence[str] | None = None,
            origin: str = '') -> tuple[dict[str, Any], dict[str, int]]:
    """(the COCO instance dict of a Label Studio JSON export's annotated tasks, their pictures in ``images``;
    {what was left out: how many}: tasks without an annotation, regions of other kinds). Categories
    ``class_names`` (``origin``: where they come from) or the sorted labels; InputError listing the tasks
    whose picture is not in ``images``."""
    images = Path(images)
    if not isinstance(export, list) or not all(isinstance(task, dict) for task in export):
        raise InputError('not a Label Studio JSON export (a list of tasks): export the project as "JSON"')
    flat = next((task for task in export if 'data' not in task and 'annotations' not in task), None)
    if flat is not None:        # JSON-MIN's tasks: each region flattened into the task, no annotations to read
        raise InputError(f"task {flat.get('id')} has no data or annotations: a JSON-MIN (or CSV) export, which "
                         'flattens the regions — export the project as "JSON"')
    skipped: dict[str, int] = {'tasks without an annotation': 0}
    found, missing = [], []
    for task in export:
        if latest_annotation(task) is None:
            skipped['tasks without an annotation'] += 1
            continue
        try:
            found.append(task_instances(task, images, skipped))
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        raise InputError(f'{len(missing)} tasks have no picture in {images}: {", ".join(missing[:5])}'
                         + (' ...' if len(missing) > 5 else '') + " — give the folder of the project's pictures")
    used = sorted({label for _, instances in found for label, _ in instances})
    unknown = [label for label in used if class_names is not None and label not in class_names]
    if unknown:
        raise InputError(f'labels not in the class list{origin}: {", ".join(unknown)}')
    category_of = {name: index + 1 for index, name in enumerate(used if class_names is None else class_names)}
    return coco_of(found, category_of), skipped


def coco_of(found: list, category_of: dict[str, int]) -> dict[str, Any]:
    """The COCO dict of ``(image, instances)`` pairs (image ids 1.. in order), zero-area instances left out."""
    images, annotations = [], []
    for image_id, (image, instances) in enumerate(found, start=1):
        images.append({'id': image_id, **image})
        for label, segmentation in instances:
            rle = segmentation_to_rle(segmentation, image['height'], image['width'])
            if not mask_util.area(rle):
                print(f"warning: {image['file_name']}: a {label!r} region covers no pixel, left out", file=sys.stderr)
                continue
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id, 'category_id': category_of[label],
                                'segmentation': segmentation, 'area': int(mask_util.area(rle)),
                                'bbox': [float(v) for v in mask_util.toBbox(rle)], 'iscrowd': 0})
    categories = [{'id': cid, 'name': name, 'supercategory': ''} for name, cid in category_of.items()]
    return {'images': images, 'annotations': annotations, 'categories': categories}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__.split('\n\n')[0], configs=False, notes=__doc__.split('\n\n', 2)[2])
    parser.add_argument('export', type=Path, help="the project's export in Label Studio's JSON format")
    parser.add_argument('out', type=Path, help='COCO instance file to write')
    parser.add_argument('--images', type=Path, required=True, metavar='DIR', help="the project's pictures")
    parser.add_argument('--classes', type=Path, help=CLASSES_HELP)
    return parser.parse_args(argv)


@command
def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    check_output_file(args.out, [args.export] + ([args.classes] if args.classes else []), 'output')
    if not args.images.is_dir():
        raise InputError(f'--images {args.images} is not a folder')
    class_names, origin = class_list(args.classes, args.out.parent / 'classes.txt')
    set_status(lambda: f'nothing was written to {args.out}')
    coco, skipped = convert(read_json(args.export, 'give a Label Studio JSON export'), args.images, class_names,
                            origin)
    left_out = ', '.join(f'{count} {what}' for what, count in skipped.items() if count)
    print(save(coco, args.out) + (f'; left out: {left_out}' if left_out else ''))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
