"""demo.py's outputs (tools/demo_outputs.py): the manifest of ``--dump-inputs`` in input order; the
pictures in flight bounded by their decoding peak."""
import json
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np

from solov2.config import CONFIGS
from solov2.data.masks import CroppedMasks
from solov2.data.transforms import ImageMeta
from solov2.model.inference.memory import decode_cost
from solov2.model.inference.pipeline import PipelineOptions, Predictor
from solov2.model.inference.postprocess import Detections, InferenceParams
from solov2.tools import demo_outputs
from solov2.tools.demo_outputs import DrawOptions, InputDumper, run_images


def test_the_dump_manifest_is_in_input_order_whatever_order_the_inputs_finished_in(tmp_path):
    """The finishing threads dump each input as it finishes (here the third first): the manifest lists
    them, and names its example output file, by input order, so it is the same on every run."""
    cfg = CONFIGS[9]
    dumper = InputDumper(str(tmp_path / 'dump'), SimpleNamespace(cfg=cfg, params=InferenceParams.from_config(cfg)), 9)
    for index in (2, 0, 1):
        prepared = SimpleNamespace(chw=np.full((3, 32, 32), index, np.float32),
                                   meta=ImageMeta((30, 30), (32, 32), (32, 32)))
        dumper.dump(f'{index:05d}_p{index}', index, f'p{index}.jpg', tmp_path / f'p{index}.jpg', prepared)
    manifest = json.loads(dumper.close().read_text())
    assert [entry['image_id'] for entry in manifest['images']] == [0, 1, 2]
    assert manifest['output_files'] == '{name}.{output}.npy, e.g. 00000_p0.scores.npy'
    assert [entry['name'] for entry in dumper.entries] == ['00000_p0', '00001_p1', '00002_p2']


class Drawing(Predictor):
    """A predictor as the demo sees it, with no network: every picture read (``PictureReader``) gives
    no instances."""

    def __init__(self, in_flight_bytes):
        engine = SimpleNamespace(check_batch=lambda size: None, cfg=CONFIGS[9], device_outputs=False, class_names=(),
                                 network_on_gpu=False, mixes_sizes=False, run_size=lambda hw: hw, max_batch=0)
        super().__init__(engine, pipeline=PipelineOptions(workers=1, in_flight_bytes=in_flight_bytes))  # type: ignore[arg-type]
        self.queue.network = lambda rows, params, padding: [None] * len(rows)

    def prepare(self, image):
        return np.zeros((3, 32, 32), np.float32), ImageMeta(image.shape[:2], (32, 32), (32, 32))

    def finish(self, row, meta, params=None):
        return Detections(CroppedMasks([], np.zeros((0, 4)), meta.orig_hw), np.zeros(0, np.int64),
                          np.zeros(0, np.float32))


def test_the_demo_reads_ahead_by_what_a_picture_holds_at_its_decoding_peak(tmp_path, monkeypatch):
    """The demo's pictures in flight are charged to the budget at their decoding peak, known from the
    file's header (``PictureReader.cost``), not at the bytes the last one held once decoded: with room
    for one decoding picture, the next is read only once the drawn one is written (large photos' peak
    memory: two decoding 12 MP photos beside one being drawn were 1.4x a 640x480 run's peak RSS)."""
    paths = []
    for index in range(4):
        paths.append(tmp_path / f'p{index}.jpg')
        cv2.imwrite(str(paths[-1]), np.full((600, 800, 3), 40 * index, np.uint8))
    cfg = CONFIGS[9]
    predictor = Drawing(in_flight_bytes=int(1.5 * decode_cost(b'', 800, 600, cfg.test_short, cfg.test_max)))
    lock, alive, most = threading.Lock(), [0], [0]
    read, write = predictor.read, demo_outputs.write_image

    def counted_read(image, *args):
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        return read(image, *args)

    def slow_write(path, picture):
        time.sleep(0.05)                       # the reader has time to run ahead, if the budget lets it
        write(path, picture)
        with lock:
            alive[0] -= 1

    monkeypatch.setattr(predictor, 'read', counted_read)
    monkeypatch.setattr(demo_outputs, 'write_image', slow_write)
    written = []
    run_images(predictor, {path: tmp_path / 'out' / path.name for path in paths}, DrawOptions(warmup=0), written)
    deadline = time.monotonic() + 10              # the queue's thread takes the bytes back as each work ends
    while predictor.budget.used and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written == paths and most[0] == 1 and predictor.budget.used == 0
    assert all(cv2.imread(str(tmp_path / 'out' / path.name)) is not None for path in paths)
