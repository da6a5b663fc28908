"""Label Studio's formats (docs/label_studio.md): its labelling config's ``PolygonLabels`` and ``BrushLabels``
tags, its regions (polygons in percent of the picture, brushes in its own RLE) made from masks and read back.

Label Studio's brush RLE packs the picture's RGBA bytes (``[H, W, 4]`` uint8, the mask 255 in every channel,
read back from the alpha channel) as a bit stream, most significant bit first: a header (the byte count in 32
bits, the word size less 1 in 5 bits, then four run-length field sizes less 1 in 4 bits each: 3, 4, 8, 16),
then chunks, each a flag bit (1: one word repeated, 0: words given one by one), 2 bits choosing a field size,
the chunk's length less 1 in that many bits, and its word(s); zero bits pad the last byte.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from solov2.core.errors import InputError
from solov2.data.masks import CroppedMasks

WORD_BITS = 8
RUN_FIELD_BITS = (3, 4, 8, 16)          # the field sizes Label Studio writes in the header
CHANNELS = 4                            # RGBA
TAG_KINDS = {'polygonlabels': 'polygon', 'brushlabels': 'brush'}    # the tags, lower-cased, mapped to region kinds
TAG_NAMES = ('PolygonLabels', 'BrushLabels')                       # as Label Studio spells them
MAX_CONFIG_CHARS = 1_000_000
PROMPT_KINDS = ('rectanglelabels', 'keypointlabels')    # the smart tools' regions an interactive request holds


@dataclass(frozen=True)
class LabelTag:
    """A labelling config's ``PolygonLabels`` or ``BrushLabels`` tag: its ``kind`` ('polygon' or 'brush'), its
    ``name`` (``from_name``), the ``Image`` tag it labels (``to_name``), that tag's task data key (``$image`` ->
    'image'), its label ``values`` and, for each, the model's class names its ``predicted_values`` attribute
    names (split at commas; () without one)."""
    kind: str
    name: str
    to_name: str
    data_key: str
    values: tuple[str, ...]
    predicted: tuple[tuple[str, ...], ...] = ()

    @property
    def type(self) -> str:
        """The region ``type`` Label Studio stores: 'polygonlabels' or 'brushlabels'."""
        return f'{self.kind}labels'


@dataclass(frozen=True)
class LabelMap:
    """How a tag's labels meet the model's classes: ``labels`` {the model's class index: the label value predicted
    for it}; ``unmatched``, the labels no class stands for (left to people, not predicted)."""
    labels: dict[int, str]
    unmatched: tuple[str, ...]


def label_tags(config: Any) -> tuple[ElementTree.Element, list[LabelTag]]:
    """(the root, every ``PolygonLabels`` and ``BrushLabels`` tag) of a labelling config (XML), each checked
    (``tag_of``); InputError when the config is not XML."""
    if not isinstance(config, str) or len(config) > MAX_CONFIG_CHARS:
        raise InputError(f'the labelling config is not XML text of at most {MAX_CONFIG_CHARS} characters')
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise InputError(f'the labelling config is not XML: {exc}') from None
    images = {image.get('name'): image.get('value', '') for image in root.iter() if image.tag.lower() == 'image'}
    return root, [tag_of(tag, images) for tag in root.iter() if tag.tag.lower() in TAG_KINDS]


def tag_of(tag: ElementTree.Element, images: dict[Any, str]) -> LabelTag:
    """The ``LabelTag`` of a ``PolygonLabels`` or ``BrushLabels`` element over one of ``images`` ({name: value});
    InputError saying what it lacks."""
    name, to_name = tag.get('name'), tag.get('toName') or ''
    if not name or to_name not in images or not images[to_name].startswith('$'):
        raise InputError(f'the {tag.tag} tag needs a name and a toName naming an Image tag whose value is $key '
                         f'(name={name!r}, toName={to_name!r}, Image tags: {", ".join(map(str, images)) or "none"})')
    labels = [label for label in tag if label.tag.lower() == 'label']
    values = tuple(label.get('value', '') for label in labels)
    if not values or '' in values:
        raise InputError(f'the {tag.tag} tag {name!r} needs Label children, each with a value')
    predicted = tuple(tuple(part.strip() for part in label.get('predicted_values', '').split(',') if part.strip())
                      for label in labels)
    return LabelTag(TAG_KINDS[tag.tag.lower()], name, to_name, images[to_name][1:], values, predicted)


def label_tag(config: Any, prefer: str = 'PolygonLabels') -> LabelTag:
    """The tag of a labelling config that the model fills: its one ``PolygonLabels`` or ``BrushLabels`` tag, or,
    when it has both, its one tag of the kind ``prefer`` names ('PolygonLabels' or 'BrushLabels'; the other is
    left to people); InputError saying what is missing or ambiguous."""
    if prefer.lower() not in TAG_KINDS:
        raise ValueError(f"no labelling tag {prefer!r}: {', '.join(TAG_NAMES)}")
    _, tags = label_tags(config)
    chosen = tags if len(tags) < 2 else [tag for tag in tags if tag.type == prefer.lower()]
    if len(chosen) != 1:
        raise InputError(f'the labelling config has {len(tags)} PolygonLabels or BrushLabels tags'
                         + (f' ({len(chosen)} {prefer})' if len(tags) > 1 else '') + ': this model fills one '
                         '(polygons or brushes over one Image; with both kinds, the one label_studio_tag names)')
    return chosen[0]


def class_indices(tag: LabelTag, class_names: Sequence[str]) -> LabelMap:
    """How ``tag``'s labels meet the model's classes: a label stands for the classes its ``predicted_values``
    attribute names (the convention of Label Studio's own ML backends, label-studio-ml-backend's mmdetection-3
    and yolo examples), else the class of its own value, matched without regard to case; a label no class
    matches is left to people (``LabelMap.unmatched``). InputError when a ``predicted_values`` names a class the
    model lacks, two labels claim one class, or no label matches any class."""
    index = {name.casefold(): number for number, name in enumerate(class_names)}
    labels: dict[int, str] = {}
    unmatched = []
    for value, predicted in zip(tag.values, tag.predicted or [()] * len(tag.values)):
        names = predicted or (value,)
        missing = [name for name in names if name.casefold() not in index]
        if predicted and missing:
            raise InputError(f"the label {value!r} has predicted_values naming classes this model lacks: "
                             f"{', '.join(missing)}; the model's classes: {', '.join(class_names)}")
        if missing:
            unmatched.append(value)
            continue
        for name in names:
            if index[name.casefold()] in labels:
                raise InputError(f'the labels {labels[index[name.casefold()]]!r} and {value!r} both stand for the '
                                 f'class {class_names[index[name.casefold()]]!r}: give each class one label')
            labels[index[name.casefold()]] = value
    if not labels:
        raise InputError(f"the {tag.type} tag {tag.name!r} has no label of this model's classes "
                         f"({', '.join(class_names)}): name a Label as a class, or map it with predicted_values=")
    return LabelMap(labels, tuple(unmatched))


def encode_brush(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE (module docstring) of a mask ``[H, W]`` bool: every run of equal bytes a
    repeated-word chunk (or several, each at most 2**16 bytes)."""
    data = np.repeat(np.asarray(mask, bool).ravel(), CHANNELS).astype(np.uint8) * np.uint8(255)
    starts = np.flatnonzero(np.concatenate([[True], data[1:] != data[:-1]])) if data.size else np.zeros(0, np.int64)
    lengths = np.diff(np.append(starts, data.size))
    pieces = -(-lengths // 2 ** RUN_FIELD_BITS[-1])                 # runs split into chunks of at most 2**16
    values = np.repeat(data[starts], pieces).astype(np.int64)
    sizes = np.full(values.size, 2 ** RUN_FIELD_BITS[-1], np.int64)
    ends = np.cumsum(pieces) - 1                                     # the last chunk of each run holds the rest
    sizes[ends] = lengths - (pieces - 1) * 2 ** RUN_FIELD_BITS[-1]
    choice = np.searchsorted(2 ** np.asarray(RUN_FIELD_BITS), sizes)    # the least field that holds size - 1
    fields = [(np.full(1, data.size), 32), (np.full(1, WORD_BITS - 1), 5)] + \
        [(np.full(1, bits - 1), 4) for bits in RUN_FIELD_BITS]
    chunks = np.stack([np.ones_like(choice), choice, sizes - 1, values], 1).ravel()
    widths = np.stack([np.ones_like(choice), np.full_like(choice, 2), np.asarray(RUN_FIELD_BITS)[choice],
                       np.full_like(choice, WORD_BITS)], 1).ravel()
    numbers = np.concatenate([value for value, _ in fields] + [chunks]).astype(np.int64)
    bits = np.concatenate([np.full(1, width) for _, width in fields] + [widths]).astype(np.int64)
    return np.packbits(field_bits(numbers, bits)).tolist()


def field_bits(numbers: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The bits ``[sum(widths)]`` uint8 of ``numbers`` ``[K]``, each in its ``widths`` ``[K]`` bits, most
    significant first."""
    ends = np.cumsum(widths)
    place = np.repeat(ends, widths) - np.arange(int(ends[-1])) - 1          # each bit's power of two
    return ((np.repeat(numbers, widths) >> place) & 1).astype(np.uint8)


class BitReader:
    """Reads unsigned numbers of given widths off a bit array, most significant bit first."""

    def __init__(self, data: Sequence[int]):
        self.bits, self.at = np.unpackbits(np.asarray(data, np.uint8)), 0

    def read(self, width: int, count: int = 1) -> np.ndarray:
        """``count`` numbers of ``width`` bits each, ``[count]`` int64; ValueError past the end."""
        end = self.at + width * count
        if end > self.bits.size:
            raise ValueError('it ends before its data does')
        rows = self.bits[self.at:end].reshape(count, width).astype(np.int64)
        self.at = end
        return rows @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def decode_brush(rle: Any, height: int, width: int) -> np.ndarray:
    """The mask ``[height, width]`` bool of a Label Studio brush RLE (a pixel is in when its alpha byte is not 0);
    InputError when it is not one of a picture of that size."""
    if not isinstance(rle, list) or not all(isinstance(byte, int) and 0 <= byte < 256 for byte in rle):
        raise InputError('a brush RLE is a list of bytes (0 to 255)')
    try:
        reader = BitReader(rle)
        total, word = int(reader.read(32)[0]), int(reader.read(5)[0]) + 1
        fields = reader.read(4, len(RUN_FIELD_BITS)) + 1
        if total != height * width * CHANNELS:
            raise ValueError(f'it holds {total} bytes, not the {height}x{width}x{CHANNELS} of its picture')
        data, at = np.zeros(total, np.uint8), 0
        while at < total:
            repeated, field = reader.read(1)[0], reader.read(2)[0]
            size = int(reader.read(int(fields[field]))[0]) + 1
            if at + size > total:
                raise ValueError('a run goes past its picture')
            data[at:at + size] = reader.read(word, 1 if repeated else size)
            at += size
    except ValueError as exc:
        raise InputError(f'a brush RLE does not decode: {exc}') from None
    return data.reshape(height, width, CHANNELS)[:, :, CHANNELS - 1] > 0


def polygon_points(polygon: np.ndarray, height: int, width: int) -> list[list[float]]:
    """``[[x %, y %], ...]`` of a polygon ``[K, 2]`` (x, y) in picture coordinates, as Label Studio stores it."""
    return (np.asarray(polygon, np.float64) / [width, height] * 100).round(4).tolist()


def points_polygon(points: Any, height: int, width: int) -> list[float]:
    """The flat COCO polygon ``[x0, y0, x1, y1, ...]`` in pixels of Label Studio's points in percent; InputError
    when they are not at least 3 pairs of numbers."""
    try:
        array = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        array = np.zeros((0, 0))
    if array.ndim != 2 or array.shape[1] != 2 or len(array) < 3 or not np.isfinite(array).all():
        raise InputError('a polygon is at least 3 [x %, y %] points')
    return (array / 100 * [width, height]).ravel().tolist()


def region(tag: LabelTag, label: str, score: float, height: int, width: int, value: dict[str, Any]) -> dict[str, Any]:
    """One region of a prediction's ``result``: the tag's names and type, the picture's size, ``value`` (points
    or the RLE) with its label, and ``score``."""
    return {'from_name': tag.name, 'to_name': tag.to_name, 'type': tag.type, 'original_width': width,
            'original_height': height, 'image_rotation': 0, 'score': round(float(score), 4),
            'value': {**value, tag.type: [label]}}


@dataclass(frozen=True)
class Prompt:
    """What an annotator drew with Label Studio's smart tools on an ``Image`` (an interactive request's context):
    a box ``(x0, y0, x1, y1)`` and points ``((x, y, positive), ...)`` in percent of the picture, and the label
    chosen on the tool (None without one)."""
    box: tuple[float, float, float, float] | None
    points: tuple[tuple[float, float, bool], ...]
    label: str | None


def prompt_of(context: Any, tag: LabelTag) -> Prompt | None:
    """The prompt in an interactive request's ``context`` (Label Studio's ``params.context``: its ``result``, the
    regions drawn with smart ``RectangleLabels`` and ``KeyPointLabels`` tools) on ``tag``'s Image (the last box,
    every point; a point's ``is_positive`` false: the object is not there); None when it holds none. InputError
    for a region whose coordinates are not numbers."""
    results = context.get('result') if isinstance(context, dict) else None
    box, points, label = None, [], None
    for one in results if isinstance(results, list) else []:
        if not isinstance(one, dict) or one.get('to_name') != tag.to_name or one.get('type') not in PROMPT_KINDS:
            continue
        value = one.get('value') if isinstance(one.get('value'), dict) else {}
        keys = ('x', 'y', 'width', 'height') if one['type'] == 'rectanglelabels' else ('x', 'y')
        numbers = [value.get(key) for key in keys]
        if not all(isinstance(number, (int, float)) and np.isfinite(number) for number in numbers):
            raise InputError(f"a {one['type']} region of the interactive context has no numbers {', '.join(keys)}")
        labels = value.get(one['type'])
        label = labels[0] if isinstance(labels, list) and labels and isinstance(labels[0], str) else label
        if one['type'] == 'rectanglelabels':
            x, y, width, height = (float(number) for number in numbers)
            box = (x, y, x + width, y + height)
        else:
            points.append((float(numbers[0]), float(numbers[1]), one.get('is_positive', True) is not False))
    return Prompt(box, tuple(points), label) if box is not None or points else None


def prompted_instance(crops: CroppedMasks, scores: np.ndarray, prompt: Prompt) -> int | None:
    """The index of the instance ``prompt`` holds among candidates ``crops`` (their masks) and ``scores`` [N],
    any class score: of those whose mask holds every positive point and no negative one, the one whose tight box
    best matches the drawn box weighted by its score (the box IoU times the score: a faint duplicate or a
    neighbour half in the box loses to the object drawn around), without a box the best scoring; None when none
    does."""
    height, width = crops.image_size
    drawn = None if prompt.box is None else pixel_box(prompt.box, height, width)
    best, best_key = None, 0.0
    for index in range(len(crops)):
        crop, box = crops.crop(index), crops.box(index)
        if not all(mask_holds(crop, box, x * width / 100, y * height / 100) == positive
                   for x, y, positive in prompt.points):
            continue
        key = (1.0 if drawn is None else box_iou(box, drawn)) * max(float(scores[index]), 1e-6)
        if key > best_key:
            best, best_key = index, key
    return best


def pixel_box(box: tuple[float, float, float, float], height: int, width: int) -> tuple[int, int, int, int]:
    """A box (x0, y0, x1, y1) in percent of a ``height`` x ``width`` picture as the pixels it covers (rounded
    outwards, within the picture)."""
    return (max(0, int(np.floor(box[0] * width / 100))), max(0, int(np.floor(box[1] * height / 100))),
            min(width, int(np.ceil(box[2] * width / 100))), min(height, int(np.ceil(box[3] * height / 100))))


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """The IoU of two half-open boxes (x0, y0, x1, y1) in pixels."""
    common = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - common
    return common / union if union > 0 else 0.0


def mask_holds(crop: np.ndarray, box: Sequence[int], x: float, y: float) -> bool:
    """Whether the mask ``crop`` ``[y1 - y0, x1 - x0]`` bool in its ``box`` (x0, y0, x1, y1) holds the pixel under
    the point (x, y) in picture pixels."""
    column, row = int(np.floor(x)) - box[0], int(np.floor(y)) - box[1]
    return 0 <= row < crop.shape[0] and 0 <= column < crop.shape[1] and bool(crop[row, column])
