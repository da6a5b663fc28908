"""What the demo writes per image: the drawn picture, COCO-style records, and the dump of
preprocessed network inputs (shared by demo.py and tools/postprocess_raw.py)."""
import json
import os
import threading
from pathlib import Path

import numpy as np

from solov2.data.files import atomic_write
from solov2.data.results import instances_to_coco
from solov2.data.transforms import swap_red_blue
from solov2.data.visualize import draw_instances
from solov2.model.inference.export_network import OUTPUTS, input_description

MANIFEST = 'manifest.json'


def draw_bgr(image_rgb: np.ndarray, result, class_names, draw_threshold: float) -> np.ndarray:
    """The annotated picture of one image (BGR, for OpenCV writers), drawn over ``image_rgb``
    ([H, W, 3] uint8, C-contiguous) itself: no copy of a large picture, its pixels are gone."""
    drawn = draw_instances(image_rgb, result.masks, result.labels, result.scores, class_names, draw_threshold,
                           in_place=True)
    return swap_red_blue(drawn)


def coco_records(image_id: int, file_name: str, result, class_names):
    """COCO-style records of one image, with ``file_name`` and ``category_name``."""
    return instances_to_coco(image_id, result.masks, result.labels, result.scores,
                             [i + 1 for i in range(len(class_names))], file_name=file_name, class_names=class_names)


def sort_records(records):
    return sorted(records, key=lambda r: (r['image_id'], -r['score']))


class InputDumper:
    """Writes preprocessed inputs ([1, 3, H, W] float32 .npy and .bin, C order) and,
    on ``close``, a manifest.json describing them (thread-safe)."""

    def __init__(self, folder: str, backend, number: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.backend, self.number = backend, number
        self.entries, self.lock = [], threading.Lock()

    def dump(self, name: str, image_id: int, file_name: str, source: str, chw: np.ndarray, meta) -> None:
        batch = np.ascontiguousarray(chw[None], dtype=np.float32)
        np.save(self.folder / f'{name}.npy', batch)
        batch.tofile(self.folder / f'{name}.bin')
        entry = {'name': name, 'image_id': image_id, 'file_name': file_name,
                 'source': os.path.relpath(source, self.folder),      # portable: the folder can move with its images
                 'input_shape': list(batch.shape), 'npy': f'{name}.npy', 'bin': f'{name}.bin',
                 'orig_hw': list(meta.orig_hw), 'resized_hw': list(meta.resized_hw),
                 'padded_hw': list(meta.padded_hw)}
        with self.lock:
            self.entries.append(entry)

    def close(self) -> Path:
        cfg = self.backend.cfg
        manifest = {
            'config': self.number, 'config_name': cfg.__name__,
            'class_names': list(cfg.class_names),
            'input': {**input_description(), 'test_short': cfg.test_short, 'test_max': cfg.test_max},
            'outputs': [dict(output, shape=[1, *output['shape'][1:]]) for output in OUTPUTS],
            'output_files': '{name}.{output}.npy, e.g. %s.scores.npy' % (
                self.entries[0]['name'] if self.entries else 'NAME'),
            'postprocess': self.backend.params.to_json(),
            'images': sorted(self.entries, key=lambda e: e['image_id']),
        }
        path = self.folder / MANIFEST
        atomic_write(path, (json.dumps(manifest, indent=2) + '\n').encode('utf-8'))
        return path
