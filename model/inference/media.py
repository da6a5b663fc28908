"""The demo's runs over a folder of images or over video frames: read and preprocess in
worker threads, the network on the calling thread, paste/draw/save in worker threads
(``run_pipeline``), after an untimed warm-up; ``summary_line`` gives the end-to-end FPS.
Per-picture lines and the running video FPS go to this module's logger (INFO).
"""
import itertools
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import cv2

from solov2.core.errors import InputError, param
from solov2.data.files import check_folder, check_output_file, make_folder, same_file, write_image
from solov2.data.results import instances_to_coco
from solov2.data.transforms import read_image
from solov2.data.visualize import draw_bgr
from solov2.model.distributed import SINGLE, Processes
from solov2.model.inference.outputs import InputDumper
from solov2.model.inference.pipeline import PipelineStats, run_pipeline
from solov2.model.inference.postprocess import InferenceParams

LOG = logging.getLogger(__name__)
IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
VIDEO_SUFFIXES = {'.mp4', '.avi', '.mov', '.mkv'}


def list_images(path: str):
    """Image files under ``path`` (an image file or a folder), sorted; [] if none. A file
    that is not named as an image raises InputError."""
    root = Path(path)
    if root.is_file():
        if root.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f'{path} is not an image (expected {" ".join(sorted(IMAGE_SUFFIXES))}) '
                             '— give an image file or a folder of images')
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def picture_names(paths) -> dict:
    """File name of each input's drawn picture: ``stem.jpg``; inputs sharing a stem
    (``a.jpg``, ``a.png``) get their suffix in it (``a_jpg.jpg``, ``a_png.jpg``), and a
    name still taken gets ``_2``, ``_3``, ... so no picture overwrites another."""
    stems = Counter(path.stem for path in paths)
    names, taken = {}, set()
    for path in paths:
        base = path.stem if stems[path.stem] == 1 else f'{path.stem}_{path.suffix[1:].lower()}'
        name, count = f'{base}.jpg', 1
        while name in taken:
            count += 1
            name = f'{base}_{count}.jpg'
        taken.add(name)
        names[path] = name
    return names


def picture_targets(paths, output: str, source: str) -> dict:
    """{input path: where its drawn picture goes} under the folder ``output`` for the images
    ``paths`` found at ``source`` (a file or folder); an InputError when that folder is the
    input folder, is a file, cannot be written, or a picture would overwrite an input
    (nothing is created)."""
    out_dir = Path(output)
    if Path(source).is_dir() and same_file(out_dir, source):
        raise InputError(param('output', out_dir), ' is the input folder — the drawn pictures would mix with the '
                         'originals; pick another folder')
    check_folder(out_dir, param('output'))
    inputs = {path.resolve() for path in paths}
    targets = {path: out_dir / name for path, name in picture_names(paths).items()}
    for path, target in targets.items():
        if target.resolve() in inputs:
            raise InputError(param('output', out_dir), f': the picture of {path.name} would overwrite the input '
                             f'{target} — pick another folder')
    return targets


def check_video_output(output: str, video: Optional[str], camera: Optional[int]) -> None:
    """InputError when the video output is a folder, the input video or cannot be written."""
    check_output_file(video_output_path(output, video, camera), [video] if video else [], param('output'))


def warm_up(items, load, model, runs: int) -> None:
    """Run the model ``runs`` times on the first readable item (untimed)."""
    if runs <= 0:
        return
    for item in items:
        try:
            loaded = load(item)
        except ValueError:
            continue
        for _ in range(runs):
            model(loaded)
        return


def video_output_path(output: str, video: Optional[str], camera: Optional[int]) -> Path:
    """The .mp4 written for a video or camera: ``output`` itself when it names a video file,
    else ``<output>/<video stem>.mp4`` (``camera<ID>.mp4``)."""
    out = Path(output)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        return out
    stem = Path(video).stem if video else f'camera{camera}'
    return out / f'{stem}.mp4'


@dataclass
class DrawOptions:
    """What the demo does with each result: pictures drawn with instances scoring at least
    ``threshold``, COCO records collected when ``records`` is a list, network inputs written
    by ``dumper`` (``outputs.InputDumper``) when given, ``warmup`` untimed runs first."""
    threshold: float = 0.3
    records: Optional[list] = None
    dumper: Optional[InputDumper] = None
    warmup: int = 2


class ImageStages:
    """The demo's work on each image of a folder, as ``run_pipeline`` stages: ``load``
    (read, preprocess, dump unless ``dump=False``), ``model`` (the network) and ``finish``
    (instances on the picture, the drawn picture written to ``targets[path]``, records when
    asked, one logged line); ``written`` lists the inputs whose picture is done."""

    def __init__(self, backend, targets: dict, draw: DrawOptions, written: list):
        self.backend, self.targets, self.draw, self.written = backend, targets, draw, written
        self.ids = {path: index for index, path in enumerate(targets)}

    def load(self, path, dump=True):
        image = read_image(path, self.backend.cfg.max_image_pixels, warn_colour=True)
        chw, meta = self.backend.prepare(image)
        if self.draw.dumper is not None and dump:
            index = self.ids[path]
            self.draw.dumper.dump(f'{index:05d}_{path.stem}', index, path.name, str(path.resolve()), chw, meta)
        return image, (chw, meta)

    def model(self, loaded):
        return self.backend.model_stage([loaded[1][0]], [loaded[1][1]])

    def finish(self, path, loaded, outputs):
        image, (_, meta) = loaded
        backend, threshold = self.backend, self.draw.threshold
        result = backend.finish_stage(outputs, meta)
        write_image(self.targets[path], draw_bgr(image, result.masks, result.labels, result.scores,
                                                 backend.class_names, threshold))
        self.written.append(path)
        if self.draw.records is not None:
            self.draw.records.extend(instances_to_coco(self.ids[path], result.masks, result.labels, result.scores,
                                                       file_name=path.name, class_names=backend.class_names))
        LOG.info(f'{path.name}: {len(result)} instances, {int((result.scores >= threshold).sum())} drawn')


def run_images(backend, targets: dict, draw: DrawOptions, written: list,
               processes: Processes = SINGLE) -> Tuple[PipelineStats, float]:
    """Run ``backend`` over ``targets`` ({image path: picture path}, ``picture_targets``),
    after ``draw.warmup`` untimed runs; ``written`` collects the inputs whose picture is written.
    Under the launcher only this process's share of them (``processes.share``; records and
    dumps keep the image's index among all ``targets``). Returns the pipeline's stats and the
    time the timed part began (for ``summary_line``); unreadable images are in ``stats.failed``."""
    paths = processes.share(list(targets))
    for folder in {target.parent for target in targets.values()}:
        make_folder(folder, param('output'))
    stages = ImageStages(backend, targets, draw, written)
    warm_up(paths, lambda path: stages.load(path, dump=False), stages.model, draw.warmup)
    began = time.perf_counter()
    return run_pipeline(paths, stages.load, stages.model, stages.finish, finish_workers=backend.finish_workers()), began


class OrderedFrameWriter:
    """Writes drawn frames to a video in frame order whatever worker finishes first, logs
    the running FPS about once a second and appends each written index to ``written``
    (thread-safe)."""

    def __init__(self, writer, written: list):
        self.writer, self.written, self.pending, self.next = writer, written, {}, 0
        self.lock = threading.Lock()
        self.began = self.shown = time.perf_counter()

    def put(self, index: int, drawn) -> None:
        with self.lock:
            self.pending[index] = drawn
            while self.next in self.pending:
                self.writer.write(self.pending.pop(self.next))
                self.written.append(self.next)
                self.next += 1
            now = time.perf_counter()
            if now - self.shown >= 1.0:
                self.shown = now
                LOG.info(f'frame {self.next}: {self.next / (now - self.began):.1f} FPS')


def read_frames(capture, first, max_frames: int):
    """(index, BGR frame) from ``first`` on until the stream ends or ``max_frames`` (0: all)."""
    yield 0, first
    for index in itertools.count(1):
        if max_frames and index >= max_frames:
            return
        ok, frame = capture.read()
        if not ok:
            return
        yield index, frame


def open_capture(source: Union[str, int]):
    """(capture, first BGR frame) of a video file or camera ID; InputError when it cannot be
    opened or has no frame."""
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise InputError(f'cannot open {"camera " if isinstance(source, int) else "video "}{source}'
                         + (' — check the ID (0 is the first camera) and that no other program holds it'
                            if isinstance(source, int) else ' — is it a video file OpenCV can read?'))
    ok, first = capture.read()
    if not ok:
        capture.release()
        raise InputError(f'no frames in {source}')
    return capture, first


def open_writer(out_path: Path, capture, first):
    """An mp4v ``cv2.VideoWriter`` at ``out_path`` with the capture's frame rate and size."""
    height, width = first.shape[:2]
    make_folder(out_path.parent, param('output'))
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*'mp4v'),
                             capture.get(cv2.CAP_PROP_FPS) or 25.0, (width, height))
    if not writer.isOpened():
        raise InputError(f'cannot write {out_path}')
    return writer


def video_stages(backend, dumper: Optional[InputDumper], params: Optional[InferenceParams] = None):
    """(load, model) pipeline stages for (index, BGR frame) items: RGB, preprocessed,
    dumped as ``frame_NNNNNN`` (picture and input) unless ``dump=False``; the model stage is
    ``backend.model_stage`` with ``params`` (default the backend's; finish with
    ``finish_stage`` and the same ``params``)."""
    def load(item, dump=True):
        index, bgr = item
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        chw, meta = backend.prepare(image)
        if dumper is not None and dump:
            name = f'frame_{index:06d}'
            write_image(dumper.folder / f'{name}.png', bgr)
            dumper.dump(name, index, name, str((dumper.folder / f'{name}.png').resolve()), chw, meta)
        return image, (chw, meta)

    def model(loaded):
        return backend.model_stage([loaded[1][0]], [loaded[1][1]], params)
    return load, model


def run_video(backend, source: Union[str, int], out_path: Path, draw: DrawOptions, written: list,
              max_frames: int = 0) -> Tuple[PipelineStats, float]:
    """Segment a video file or camera (``source``) into an annotated mp4 at ``out_path``,
    frames in order, until it ends or ``max_frames`` (0: all); ``written`` collects the
    indices of the frames written. Returns the stats and the time the timed part began."""
    capture, first = open_capture(source)
    try:
        writer = open_writer(out_path, capture, first)
    except InputError:
        capture.release()
        raise
    ordered = OrderedFrameWriter(writer, written)
    load, model = video_stages(backend, draw.dumper)

    def finish(item, loaded, outputs):
        index = item[0]
        image, (_, meta) = loaded
        result = backend.finish_stage(outputs, meta)
        if draw.records is not None:
            draw.records.extend(instances_to_coco(index, result.masks, result.labels, result.scores,
                                                  file_name=f'frame_{index:06d}', class_names=backend.class_names))
        ordered.put(index, draw_bgr(image, result.masks, result.labels, result.scores, backend.class_names,
                                    draw.threshold))

    warm_up([(0, first)], lambda item: load(item, dump=False), model, draw.warmup)
    ordered.began = began = time.perf_counter()
    try:
        return run_pipeline(read_frames(capture, first, max_frames), load, model, finish,
                            finish_workers=backend.finish_workers()), began
    finally:
        writer.release()
        capture.release()


def summary_line(stats: PipelineStats, began: float, unit: str, where: str) -> str:
    """'N images in T s: F FPS end to end, model busy P% of the time; <where>'."""
    return (f'{stats.done} {unit} in {time.perf_counter() - began:.2f} s: '
            f'{stats.images_per_second:.2f} FPS end to end, model busy {100 * stats.busy_fraction:.0f}% '
            f'of the time; {where}')
