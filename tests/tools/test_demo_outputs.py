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

    def __init__(self, in_flight_bytes=None, pipeline=None):
        engine = SimpleNamespace(check_batch=lambda size: None, cfg=CONFIGS[9], device_outputs=False, class_names=(),
                                 network_on_gpu=False, mixes_sizes=False, run_size=lambda hw: hw, max_batch=0)
        pipeline = pipeline or PipelineOptions(workers=1, in_flight_bytes=in_flight_bytes)
        super().__init__(engine, pipeline=pipeline)  # type: ignore[arg-type]
        self.queue.network = lambda rows, params, padding: [None] * len(rows)

    def prepare(self, image):
        return np.zeros((3, 32, 32), np.float32), ImageMeta(image.shape[:2], (32, 32), (32, 32))

    def finish(self, row, meta, params=None):
        return Detections(CroppedMasks([], np.zeros((0, 4)), meta.orig_hw), np.zeros(0, np.int64),
                          np.zeros(0, np.float32))


def counted_run(predictor, tmp_path, monkeypatch, pictures: int) -> list:
    """``run_images`` of ``pictures`` 800x600 JPEGs on ``predictor``, each written slowly (the reader has
    time to run ahead, if the budget lets it); [most pictures read and not yet written at once, most being
    read at once]; checks every picture was written, in order, and the budget given back."""
    paths = []
    for index in range(pictures):
        paths.append(tmp_path / f'p{index}.jpg')
        cv2.imwrite(str(paths[-1]), np.full((600, 800, 3), 40 * index, np.uint8))
    lock, alive, reading, most = threading.Lock(), [0], [0], [0, 0]
    read, write = predictor.read, demo_outputs.write_image

    def counted_read(image, *args):
        with lock:
            alive[0], reading[0] = alive[0] + 1, reading[0] + 1
            most[:] = max(most[0], alive[0]), max(most[1], reading[0])
        time.sleep(0.03)                       # another reader, if there were one, would start meanwhile
        try:
            return read(image, *args)
        finally:
            with lock:
                reading[0] -= 1

    def slow_write(path, picture):
        time.sleep(0.05)
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
    assert written == paths and predictor.budget.used == 0
    assert all(cv2.imread(str(tmp_path / 'out' / path.name)) is not None for path in paths)
    return most


def test_the_demo_reads_ahead_by_what_a_picture_holds_at_its_decoding_peak(tmp_path, monkeypatch):
    """The demo's pictures in flight are charged to the budget at their decoding peak, known from the
    file's header (``PictureReader.cost``), not at the bytes the last one held once decoded: with room
    for one decoding picture, the next is read only once the drawn one is written (large photos' peak
    memory: two decoding 12 MP photos beside one being drawn were 1.4x a 640x480 run's peak RSS)."""
    cfg = CONFIGS[9]
    predictor = Drawing(in_flight_bytes=int(1.5 * decode_cost(b'', 800, 600, cfg.test_short, cfg.test_max)))
    assert counted_run(predictor, tmp_path, monkeypatch, 4)[0] == 1


def test_the_demo_decodes_a_12_mp_photo_while_the_one_before_is_drawn_and_never_two_at_once(tmp_path, monkeypatch):
    """The demo's pipeline (``demo_pipeline``): one reading thread and room for two pictures at a 12 MP
    photo's decoding peak, so the next photo is read while the one before is drawn and written (the
    predictor's default room held one such photo alone: 0.12x the 640x480 rate where 0.18x had been), and
    two are never read at once (two decoding beside one drawn was 1.4-1.5x a 640x480 run's peak RSS)."""
    cfg = CONFIGS[9]
    predictor = Drawing(pipeline=demo_outputs.demo_pipeline())
    monkeypatch.setattr(type(predictor.reader), 'cost',
                        lambda self, image: decode_cost(b'', 4000, 3000, cfg.test_short, cfg.test_max))
    most_alive, most_reading = counted_run(predictor, tmp_path, monkeypatch, 5)
    assert most_alive >= 2 and most_reading == 1          # the predictor's default pipeline: 1 and 1
