"""Convert a Label Studio JSON or JSON-MIN export (polygons, brushes) into a COCO instance file and classes.txt.

    python tools/labelstudio2coco.py EXPORT.json OUT.json --images DIR [--classes classes.txt]
        [--image-key KEY] [--val VAL.json [--val-fraction 0.2]]

EXPORT.json is the project's export in Label Studio's "JSON" format (or "JSON-MIN", which keeps no link between
the parts of one object: each polygon is then an instance); DIR holds its pictures (Label Studio's
media/upload/<project> folder, or a folder of the same files by their own names): a task's picture is found by
its URL's file name, or that name without the 8-character prefix Label Studio gives uploads. The picture is the
task data field KEY (the labelling config's Image value without $), by default the one field that holds a
picture's URL or path. Each task's latest annotation that was not cancelled is one image (an empty one: a picture
with no object); a task with none is left out. Each polygon or brush region is one instance (polygons in percent
of the picture -> pixels, brushes from Label Studio's RLE), the polygons of one object (regions whose parentID
names its first part, as the service predicts an object in several parts) one instance; regions of other kinds
are left out, counted. Categories as `solov2 labelme2coco` sets them. With --val, a share of the images (the same
ones each run: chosen by their file names) goes to VAL.json instead of OUT.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
import zlib
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
from solov2.tools.cli import at_least, command, make_parser, read_json, set_status
from solov2.tools.labelme2coco import CLASSES_HELP, class_list, save

UPLOAD_PREFIX = re.compile(r'^[0-9a-f]{8}-')            # what Label Studio puts before an uploaded file's name
REGION_KINDS = ('polygonlabels', 'brushlabels')
PICTURE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif')
JSON_MIN_FIELDS = ('id', 'annotator', 'annotation_id', 'created_at', 'updated_at', 'lead_time', 'agreement')
LABEL_KINDS = ('polygonlabels', 'brushlabels', 'rectanglelabels', 'keypointlabels', 'ellipselabels', 'labels',
               'choices', 'textarea')       # a JSON-MIN region's kind: the key of its labels (Label Studio's tags)
VAL_FRACTION = 0.2


def picture_url(task: dict[str, Any], key: str | None = None) -> str:
    """The task's picture: its data's field ``key``, else its one text value, else the one value that is a
    picture's URL or path (a /data/ URL or a picture's file suffix), else its ``image``; InputError naming the
    task's fields when none or several could be."""
    data = task.get('data') if isinstance(task.get('data'), dict) else {}
    texts = {name: value for name, value in data.items() if isinstance(value, str)}
    if key is not None:
        if key not in texts:
            raise InputError(f"task {task.get('id')} has no {key!r} text in its data (--image-key): its fields are "
                             f"{', '.join(data) or 'none'}")
        return texts[key]
    pictures = [value for value in texts.values() if is_picture_address(value)]
    where = next(iter(texts.values())) if len(texts) == 1 else pictures[0] if len(pictures) == 1 \
        else texts.get('image')
    if where is None:
        raise InputError(f"task {task.get('id')}: which of its data fields ({', '.join(texts) or 'none'}) is the "
                         'picture? give --image-key, the Image value of the labelling config without $')
    return where


def is_picture_address(value: str) -> bool:
    """Whether a task's text looks like a picture's URL or path: Label Studio's /data/ URLs, a picture's suffix."""
    path = urllib.parse.urlparse(value).path
    local = urllib.parse.parse_qs(urllib.parse.urlparse(value).query).get('d')
    return path.startswith('/data/') or Path(local[0] if local else path).suffix.lower() in PICTURE_SUFFIXES


def json_min_tasks(export: list) -> list[dict[str, Any]] | None:
    """The tasks of a JSON-MIN export (a record per annotation: the task's data fields, its id, ``annotation_id``,
    and per labelling tag the list of its regions' values, each with its labels' key and the picture's size) as
    the JSON export has them; None when ``export`` is not one."""
    if not export or not all(isinstance(record, dict) and 'data' not in record and 'annotation_id' in record
                             for record in export):
        return None
    tasks: dict[Any, dict[str, Any]] = {}
    for record in export:
        task = tasks.setdefault(record.get('id'), {'id': record.get('id'), 'data': {}, 'annotations': []})
        result = []
        for name, value in record.items():
            regions = min_regions(name, value)
            if regions is not None:
                result += regions
            elif name not in JSON_MIN_FIELDS:
                task['data'][name] = value
        if record['annotation_id'] is not None:
            task['annotations'].append({'id': record['annotation_id'], 'result': result})
    return list(tasks.values())


def min_regions(name: str, value: Any) -> list[dict[str, Any]] | None:
    """The JSON regions of a JSON-MIN tag's field ``name`` (a list of region values, each with its kind's labels),
    None when ``value`` is not one (a data field)."""
    if not isinstance(value, list) or not value or not all(isinstance(one, dict) for one in value):
        return None
    regions = []
    for one in value:
        kinds = [key for key in LABEL_KINDS if key in one]
        if len(kinds) != 1:
            return None
        size = {key: one[key] for key in ('original_width', 'original_height') if key in one}
        regions.append({'type': kinds[0], 'from_name': name, **size,
                        'value': {key: item for key, item in one.items() if key not in size}})
    return regions


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


def task_instances(task: dict[str, Any], images: Path, skipped: dict[str, int],
                   key: str | None = None) -> tuple[dict[str, Any], list]:
    """(the COCO image of a task's picture (its data field ``key``, ``picture_url``), its (label, segmentation)
    instances, the parts of one object joined, ``joined_parts``); regions of other kinds counted in ``skipped``.
    InputError naming the task for a bad region."""
    where = picture_url(task, key)
    path = picture_file(where, images)
    if path is None:
        raise FileNotFoundError(f"task {task.get('id')} ({where})")
    size = picture_size(path)          # as Label Studio shows it and the toolkit reads it: EXIF orientation applied
    if size is None:
        raise InputError(f"task {task.get('id')}: {path} is not a picture")
    height, width = size
    regions = []
    for result in (latest_annotation(task) or {}).get('result') or []:
        kind = str(result.get('type', '')).lower() if isinstance(result, dict) else ''
        if kind not in REGION_KINDS:
            skipped[f"{kind or 'unknown'} regions"] = skipped.get(f"{kind or 'unknown'} regions", 0) + 1
            continue
        try:
            regions.append((result, region_mask(result, height, width)))
        except InputError as exc:
            raise InputError(f"task {task.get('id')}: {exc.args[0]}") from None
    return {'file_name': path.relative_to(images).as_posix(), 'height': height, 'width': width}, \
        joined_parts(regions)


def joined_parts(regions: list[tuple[dict[str, Any], tuple[str, Any]]]) -> list[tuple[str, Any]]:
    """The (label, segmentation) instances of a task's ``(region, (label, segmentation))``: a polygon whose
    ``parentID`` names a polygon region of its label is a part of that region's instance (the polygons joined,
    a COCO multi-polygon); every other region is an instance of its own."""
    instances: list[tuple[str, Any]] = []
    first: dict[Any, int] = {}            # a polygon region's id -> its instance's place
    for result, (label, segmentation) in regions:
        parent = first.get(result.get('parentID')) if isinstance(segmentation, list) else None
        if parent is not None and instances[parent][0] == label:
            instances[parent][1].extend(segmentation)
            continue
        if isinstance(segmentation, list) and result.get('id') is not None:
            first[result['id']] = len(instances)
        instances.append((label, list(segmentation) if isinstance(segmentation, list) else segmentation))
    return instances


def convert(export: Any, images: str | Path, class_names: Sequence[str] | None = None,
            origin: str = '', key: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """(the COCO instance dict of a Label Studio JSON or JSON-MIN export's annotated tasks, their pictures in
    ``images`` (each task's data field ``key``, ``picture_url``); {what was left out: how many}: tasks without an
    annotation, regions of other kinds). Categories ``class_names`` (``origin``: where they come from) or the
    sorted labels; InputError listing the tasks whose picture is not in ``images``, or when no task has an
    annotation or no region a label (nothing to train on)."""
    images = Path(images)
    if not isinstance(export, list) or not all(isinstance(task, dict) for task in export):
        raise InputError('not a Label Studio JSON export (a list of tasks): export the project as "JSON"')
    minimal = json_min_tasks(export)
    if minimal is not None and any(result['type'] == 'polygonlabels' for task in minimal
                                   for one in task['annotations'] for result in one['result']):
        print('warning: a JSON-MIN export keeps no link between the parts of one object: each polygon is an instance '
              '(export "JSON" to join them)', file=sys.stderr)
    export = export if minimal is None else minimal
    skipped: dict[str, int] = {'tasks without an annotation': 0}
    found, missing = [], []
    for task in export:
        if latest_annotation(task) is None:
            skipped['tasks without an annotation'] += 1
            continue
        try:
            found.append(task_instances(task, images, skipped, key))
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        raise InputError(f'{len(missing)} tasks have no picture in {images}: {", ".join(missing[:5])}'
                         + (' ...' if len(missing) > 5 else '') + " — give the folder of the project's pictures")
    used = sorted({label for _, instances in found for label, _ in instances})
    check_not_empty(found, used, class_names, skipped)
    unknown = [label for label in used if class_names is not None and label not in class_names]
    if unknown:
        raise InputError(f'labels not in the class list{origin}: {", ".join(unknown)}')
    category_of = {name: index + 1 for index, name in enumerate(used if class_names is None else class_names)}
    return coco_of(found, category_of), skipped


def check_not_empty(found: list, used: list, class_names: Sequence[str] | None, skipped: dict[str, int]) -> None:
    """InputError when the export gives no image, or no class (no region with a label and no class list): an
    empty COCO file or classes.txt would only fail the next step."""
    if not found:
        raise InputError(f"none of the export's {skipped['tasks without an annotation']} tasks has an annotation: "
                         'nothing to convert (submit or accept annotations in Label Studio, then export again)')
    if not used and class_names is None:
        raise InputError(f'the {len(found)} annotated tasks have no polygon or brush region with a label, and no '
                         'class list was given (--classes): no class to write')


def split_val(coco: dict[str, Any], fraction: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the training, the validation COCO dicts) of ``coco``: ``fraction`` of its images (at least one, and one
    left to train on) in the validation set, the same ones each run (ordered by the CRC-32 of their file names),
    each image with its annotations; both with every category."""
    images = coco['images']
    count = min(len(images) - 1, max(1, round(fraction * len(images))))
    if count < 1:
        raise InputError(f'{len(images)} annotated image: no validation set can be split off (--val needs 2 or more)')
    chosen = {image['id'] for image in sorted(images, key=lambda image: zlib.crc32(image['file_name'].encode()))
              [:count]}

    def part(val: bool) -> dict[str, Any]:
        return {'images': [image for image in images if (image['id'] in chosen) == val],
                'annotations': [one for one in coco['annotations'] if (one['image_id'] in chosen) == val],
                'categories': coco['categories']}
    return part(False), part(True)


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
    parser.add_argument('--image-key', metavar='KEY', help="the task data field of the picture: the labelling "
                        "config's Image value without $ (default: the one field holding a picture's URL or path)")
    parser.add_argument('--val', type=Path, metavar='VAL.json', help='also write a validation set here, a share of '
                        'the images (--val-fraction) kept out of OUT')
    parser.add_argument('--val-fraction', type=at_least(0, whole=False, above=True), default=VAL_FRACTION,
                        metavar='F', help=f'the share of images --val takes, below 1 (default {VAL_FRACTION})')
    args = parser.parse_args(argv)
    if args.val_fraction >= 1:
        parser.error(f'--val-fraction takes a share below 1, not {args.val_fraction:g}')
    return args


@command
def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    check_output_file(args.out, [args.export] + ([args.classes] if args.classes else []), 'output')
    if args.val is not None:
        check_output_file(args.val, [args.export, args.out] + ([args.classes] if args.classes else []), 'output')
    if not args.images.is_dir():
        raise InputError(f'--images {args.images} is not a folder')
    class_names, origin = class_list(args.classes, args.out.parent / 'classes.txt')
    set_status(lambda: f'nothing was written to {args.out}')
    coco, skipped = convert(read_json(args.export, 'give a Label Studio JSON export'), args.images, class_names,
                            origin, args.image_key)
    left_out = ', '.join(f'{count} {what}' for what, count in skipped.items() if count)
    train, val = split_val(coco, args.val_fraction) if args.val is not None else (coco, None)
    print(save(train, args.out) + (f'; left out: {left_out}' if left_out else ''))
    if val is not None and args.val is not None:
        print(save(val, args.val) + ' (validation)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
