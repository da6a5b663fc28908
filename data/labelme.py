"""labelme 5.x files of a picture's instances: predictions a person opens in labelme, corrects and
converts back with ``tools/labelme2coco.py`` (docs/own_data.md), the loop annotation teams run.

Each instance is one shape labelled with its class name, its score in the shape's ``description``:
``polygon`` gives one polygon a part worth drawing (``data.polygons.mask_polygons``: the simplified
outline, what a person drags in labelme; an instance's polygons share a ``group_id``, so they read back as
one instance), ``mask`` labelme's own mask shape (a 1-bit PNG of the box between two corner points, corners included, as
labelme writes it), the exact pixels.
"""
from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np
from PIL import Image

from solov2.core.errors import InputError
from solov2.data.masks import CroppedMasks
from solov2.data.polygons import mask_polygons

LABELME_VERSION = '5.5.0'       # the file format written: labelme 5.x reads it, mask shapes included
SHAPE_TYPES = ('polygon', 'mask')


def mask_shape_data(crop: np.ndarray) -> str:
    """labelme's ``mask`` field of a crop ``[h, w] bool``: a base64 1-bit PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop, dtype=bool)).save(buffer, format='PNG')
    return base64.b64encode(buffer.getvalue()).decode('ascii')


def instance_shapes(crop: np.ndarray, box: Sequence[int], label: str, score: float, group: int,
                    shape_type: str) -> list[dict[str, Any]]:
    """The labelme shapes of one mask ``crop`` ``[y1 - y0, x1 - x0] bool`` in its half-open ``box``
    (none for an empty mask); ``group``: the ``group_id`` of a mask drawn as several polygons."""
    x0, y0, x1, y1 = (int(side) for side in box)
    common = {'label': label, 'description': f'score {score:.3f}', 'flags': {}}
    if crop.size == 0 or not crop.any():
        return []
    if shape_type not in SHAPE_TYPES:
        raise ValueError(f"shape_type must be one of {', '.join(SHAPE_TYPES)}, not {shape_type!r}")
    if shape_type == 'mask':
        return [{**common, 'points': [[x0, y0], [x1 - 1, y1 - 1]], 'group_id': None, 'shape_type': 'mask',
                 'mask': mask_shape_data(crop)}]
    polygons = mask_polygons(crop, box)
    return [{**common, 'points': polygon.tolist(), 'group_id': group if len(polygons) > 1 else None,
             'shape_type': 'polygon', 'mask': None} for polygon in polygons]


def labelme_document(crops: CroppedMasks, labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
                     image_path: str, shape_type: str = 'polygon') -> dict[str, Any]:
    """The labelme file of one picture's instances (``crops`` on the picture, ``labels`` [N] indices into
    ``class_names``, ``scores`` [N]): one instance's shapes after another, ``imagePath`` as given (the
    picture relative to the file's folder), no embedded picture."""
    if shape_type not in SHAPE_TYPES:
        raise InputError(f"shape_type must be one of {', '.join(SHAPE_TYPES)}, not {shape_type!r}")
    height, width = crops.image_size
    shapes = [shape for index in range(len(crops))
              for shape in instance_shapes(crops.crop(index), crops.box(index), class_names[int(labels[index])],
                                           float(scores[index]), index + 1, shape_type)]
    return {'version': LABELME_VERSION, 'flags': {}, 'shapes': shapes, 'imagePath': image_path.replace('\\', '/'),
            'imageData': None, 'imageHeight': int(height), 'imageWidth': int(width)}
