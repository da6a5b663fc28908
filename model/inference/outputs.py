"""What the demo writes beside its pictures: its COCO-style records in order, and the dump of
preprocessed network inputs (shared by demo.py and tools/postprocess_raw.py)."""
import json
import os
import threading
from pathlib import Path

import numpy as np

from solov2.data.files import atomic_write
from solov2.model.inference.export_network import OUTPUTS, input_description

MANIFEST = 'manifest.json'


def sort_records(records):
    """COCO records by image id, best first within an image."""
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
