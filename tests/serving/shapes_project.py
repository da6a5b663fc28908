"""A Label Studio project made of a synthetic shapes set for the training tests: its tasks' annotations (brushes
of each instance, the stars labelled 'blob', a label the shipped model does not know) and a stand-in Label Studio
that answers the API calls a training round makes (the project, its JSON export, the pictures)."""
import json
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pycocotools.mask as mask_util

from solov2.data.coco import segmentation_to_rle
from solov2.data.label_studio import encode_brush
from tests.helpers import REPO_DIR

NEW_LABEL = 'blob'           # the shapes set's stars, a label the shipped model does not know
LABELS = {'circle': 'circle', 'square': 'square', 'triangle': 'triangle', 'star': NEW_LABEL}
CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="label" toName="image">'
          + ''.join(f'<Label value="{label}"/>' for label in LABELS.values()) + '</BrushLabels></View>')
TOKEN = 'stand-in-legacy-token'


def shapes_set(root: Path, count: int, seed: int = 3) -> Path:
    """``count`` 128 px shapes pictures with their COCO file under ``root`` (tools/make_shapes_dataset.py)."""
    subprocess.run([sys.executable, str(REPO_DIR / 'tools' / 'make_shapes_dataset.py'), '--out', str(root),
                    '--train', str(count), '--val', '0', '--size', '128', '--seed', str(seed)], check=True,
                   capture_output=True)
    return root


def annotation_results(coco: dict, image: dict) -> list:
    """Label Studio brush results of ``image``'s instances (crowd ones left out), labelled as ``LABELS`` says."""
    names = {category['id']: category['name'] for category in coco['categories']}
    height, width = image['height'], image['width']
    results = []
    for one in coco['annotations']:
        if one['image_id'] != image['id'] or one.get('iscrowd'):
            continue
        mask = mask_util.decode(segmentation_to_rle(one['segmentation'], height, width)).astype(bool)
        results.append({'id': f"a{one['id']}", 'type': 'brushlabels', 'from_name': 'label', 'to_name': 'image',
                        'original_width': width, 'original_height': height,
                        'value': {'format': 'rle', 'rle': encode_brush(mask),
                                  'brushlabels': [LABELS[names[one['category_id']]]]}})
    return results


def export_of(root: Path, project: int = 1) -> list:
    """The JSON export of a project whose task ``i`` (from 1) is the set's ``i``-th picture, uploaded, annotated."""
    coco = json.loads((root / 'annotations' / 'instances_train.json').read_text())
    return [{'id': index, 'data': {'image': f"/data/upload/{project}/{image['file_name']}"},
             'annotations': [{'id': 100 + index, 'was_cancelled': False, 'result': annotation_results(coco, image)}]}
            for index, image in enumerate(coco['images'], start=1)]


class StandIn(BaseHTTPRequestHandler):
    """Label Studio's API as a round calls it, for the project 1 of ``server.root``, with a legacy token."""

    def do_GET(self):
        root, path = self.server.root, urllib.parse.urlparse(self.path).path      # type: ignore[attr-defined]
        self.server.calls.append(self.path)     # type: ignore[attr-defined]
        if self.headers.get('Authorization') != f'Token {TOKEN}':
            return self.answer(401, b'{"detail": "no token"}')
        if path == '/api/projects/1':
            return self.answer(200, json.dumps({'id': 1, 'label_config': CONFIG}).encode())
        if path == '/api/projects/1/export':
            return self.answer(200, json.dumps(export_of(root)).encode())
        picture = root / 'train' / Path(path).name
        if path.startswith('/data/upload/1/') and picture.is_file():
            return self.answer(200, picture.read_bytes(), 'image/jpeg')
        return self.answer(404, b'{}')

    def answer(self, status: int, body: bytes, kind: str = 'application/json') -> None:
        self.send_response(status)
        self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def stand_in(root: Path) -> ThreadingHTTPServer:
    """A stand-in Label Studio serving the shapes set at ``root`` on 127.0.0.1, running in a thread."""
    server = ThreadingHTTPServer(('127.0.0.1', 0), StandIn)
    server.root, server.calls = root, []        # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
