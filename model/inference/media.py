"""The demo's runs over a folder of images or over video frames: read and preprocess in
worker threads, the network on the calling thread, paste/draw/save in worker threads
(``run_pipeline``), after an untimed warm-up; a summary line with the end-to-end FPS.

``options`` is the demo's argument namespace: ``output``, ``draw_threshold``,
``save_json``, ``warmup``, and for video ``video``, ``camera`` and ``max_frames``.
"""
import itertools
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cv2

from config.errors import InputError
from data.files import check_folder, check_output_file, make_folder, same_file, write_image
from data.transforms import read_image
from model.inference.outputs import coco_records, draw_bgr
from model.inference.pipeline import run_pipeline

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
VIDEO_SUFFIXES = {'.mp4', '.avi', '.mov', '.mkv'}


def list_images(path: str):
    """Image files under ``path`` (a file or a folder), sorted; [] if none."""
    root = Path(path)
    if root.is_file():
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


def picture_targets(options, paths) -> dict:
    """{input path: where its drawn picture goes} under ``options.output``; a InputError
    when that folder is the input folder, is a file, cannot be written, or a picture would
    overwrite an input (nothing is created)."""
    out_dir = Path(options.output)
    if Path(options.input).is_dir() and same_file(out_dir, options.input):
        raise InputError(f'--output {out_dir} is the --input folder — the drawn pictures would mix with the '
                         'originals; pick another folder')
    check_folder(out_dir, '--output')
    inputs = {path.resolve() for path in paths}
    targets = {path: out_dir / name for path, name in picture_names(paths).items()}
    for path, target in targets.items():
        if target.resolve() in inputs:
            raise InputError(f'--output {out_dir}: the picture of {path.name} would overwrite the input '
                             f'{target} — pick another folder')
    return targets


def check_video_output(options) -> None:
    """InputError when the video output is a folder, the input video or cannot be written."""
    check_output_file(video_output_path(options), [options.video] if options.video else [], '--output')


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


def video_output_path(options) -> Path:
    out = Path(options.output)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        return out
    stem = Path(options.video).stem if options.video else f'camera{options.camera}'
    return out / f'{stem}.mp4'


class ImageStages:
    """The demo's work on each image of a folder, as ``run_pipeline`` stages: ``load``
    (read, preprocess, dump unless ``dump=False``), ``model`` (the network) and ``finish`` (instances on the
    picture, the drawn picture written to ``targets[path]``, records when
    ``options.save_json``, one printed line); ``written`` lists the pictures done."""

    def __init__(self, options, backend, dumper, records, targets):
        self.options, self.backend, self.dumper, self.records, self.targets = (
            options, backend, dumper, records, targets)
        self.ids = {path: index for index, path in enumerate(targets)}
        self.written = []

    def load(self, path, dump=True):
        image = read_image(path, self.backend.cfg.max_image_pixels)
        chw, meta = self.backend.prepare(image)
        if self.dumper is not None and dump:
            index = self.ids[path]
            self.dumper.dump(f'{index:05d}_{path.stem}', index, path.name, str(path.resolve()), chw, meta)
        return image, (chw, meta)

    def model(self, loaded):
        return self.backend.forward([loaded[1][0]])

    def finish(self, path, loaded, outputs):
        image, (_, meta) = loaded
        backend, threshold = self.backend, self.options.draw_threshold
        result = backend.finish_outputs(outputs, meta)
        write_image(self.targets[path], draw_bgr(image, result, backend.class_names, threshold))
        self.written.append(path)
        if self.options.save_json:
            self.records.extend(coco_records(self.ids[path], path.name, result, backend.class_names))
        print(f'{path.name}: {len(result)} instances, {int((result.scores >= threshold).sum())} drawn')


def run_images(options, backend, dumper, records, targets, written: list) -> int:
    """Run ``backend`` over ``targets`` ({image path: picture path}, ``picture_targets``);
    ``written`` collects the inputs whose picture is written."""
    paths = list(targets)
    make_folder(options.output, '--output')
    stages = ImageStages(options, backend, dumper, records, targets)
    stages.written = written
    warm_up(paths, lambda path: stages.load(path, dump=False), stages.model, options.warmup)
    began = time.perf_counter()
    stats = run_pipeline(paths, stages.load, stages.model, stages.finish)
    for path, message in stats.failed:
        print(f'skipped {path}: {message}', file=sys.stderr)
    summary(options, stats, began, 'images', f'pictures in {Path(options.output)}/')
    return 0 if stats.done else 1


class OrderedFrameWriter:
    """Writes drawn frames to a video in frame order whatever worker finishes first, and
    prints the running FPS about once a second (thread-safe)."""

    def __init__(self, writer):
        self.writer, self.pending, self.next = writer, {}, 0
        self.lock = threading.Lock()
        self.began = self.shown = time.perf_counter()

    def put(self, index: int, drawn) -> None:
        with self.lock:
            self.pending[index] = drawn
            while self.next in self.pending:
                self.writer.write(self.pending.pop(self.next))
                self.next += 1
            now = time.perf_counter()
            if now - self.shown >= 1.0:
                self.shown = now
                print(f'frame {self.next}: {self.next / (now - self.began):.1f} FPS', flush=True)


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


def open_video(options):
    """(capture, first frame, writer, output path), or a one-line error message."""
    source = options.video if options.video is not None else options.camera
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        return f'cannot open {"video " + options.video if options.video else f"camera {options.camera}"}'
    ok, first = capture.read()
    if not ok:
        return f'no frames in {source}'
    height, width = first.shape[:2]
    out_path = video_output_path(options)
    make_folder(out_path.parent, '--output')
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*'mp4v'),
                             capture.get(cv2.CAP_PROP_FPS) or 25.0, (width, height))
    if not writer.isOpened():
        return f'cannot write {out_path}'
    return capture, first, writer, out_path


def run_video(options, backend, dumper, records) -> int:
    opened = open_video(options)
    if isinstance(opened, str):
        print(f'error: {opened}', file=sys.stderr)
        return 2
    capture, first, writer, out_path = opened
    ordered = OrderedFrameWriter(writer)

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
        return backend.forward([loaded[1][0]])

    def finish(item, loaded, outputs):
        index = item[0]
        image, (_, meta) = loaded
        result = backend.finish_outputs(outputs, meta)
        if options.save_json:
            records.extend(coco_records(index, f'frame_{index:06d}', result, backend.class_names))
        ordered.put(index, draw_bgr(image, result, backend.class_names, options.draw_threshold))

    warm_up([(0, first)], lambda item: load(item, dump=False), model, options.warmup)
    ordered.began = began = time.perf_counter()
    try:
        stats = run_pipeline(read_frames(capture, first, options.max_frames), load, model, finish)
    except KeyboardInterrupt:
        print(f'interrupted (Ctrl-C): {ordered.next} frames written to {out_path}', file=sys.stderr)
        return 130
    finally:
        writer.release()
        capture.release()
    summary(options, stats, began, 'frames', f'video {out_path} ({ordered.next} frames)')
    return 0 if stats.done else 1


def summary(options, stats, began: float, unit: str, where: str) -> None:
    print(f'{stats.done} {unit} in {time.perf_counter() - began:.2f} s: '
          f'{stats.images_per_second:.2f} FPS end to end, model busy {100 * stats.busy_fraction:.0f}% '
          f'of the time; {where}')
