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
from pathlib import Path

import cv2

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


def run_images(options, backend, dumper, records, paths) -> int:
    out_dir = Path(options.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = {path: index for index, path in enumerate(paths)}

    def load(path):
        image = read_image(path)
        chw, meta = backend.prepare(image)
        if dumper is not None:
            dumper.dump(f'{ids[path]:05d}_{path.stem}', ids[path], path.name, str(path.resolve()), chw, meta)
        return image, (chw, meta)

    def model(loaded):
        return backend.infer([loaded[1][0]])[0]

    def finish(path, loaded, detections):
        image, (_, meta) = loaded
        result = backend.finish(detections, meta)
        cv2.imwrite(str(out_dir / f'{path.stem}.jpg'),
                    draw_bgr(image, result, backend.class_names, options.draw_threshold))
        if options.save_json:
            records.extend(coco_records(ids[path], path.name, result, backend.class_names))
        print(f'{path.name}: {len(result)} instances, '
              f'{int((result.scores >= options.draw_threshold).sum())} drawn')

    warm_up(paths, lambda p: (None, backend.prepare(read_image(p))), model, options.warmup)
    began = time.perf_counter()
    stats = run_pipeline(paths, load, model, finish)
    for path, message in stats.failed:
        print(f'skipped {path}: {message}', file=sys.stderr)
    summary(options, stats, began, 'images', f'pictures in {out_dir}/')
    return 0 if stats.done else 1


def run_video(options, backend, dumper, records) -> int:
    source = options.video if options.video is not None else options.camera
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        print(f'error: cannot open {"video " + options.video if options.video else f"camera {options.camera}"}',
              file=sys.stderr)
        return 2
    ok, first = capture.read()
    if not ok:
        print(f'error: no frames in {source}', file=sys.stderr)
        return 2
    fps_in = capture.get(cv2.CAP_PROP_FPS) or 25.0
    height, width = first.shape[:2]
    out_path = video_output_path(options)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*'mp4v'), fps_in, (width, height))
    if not writer.isOpened():
        print(f'error: cannot write {out_path}', file=sys.stderr)
        return 2

    def frames():
        yield 0, first
        for index in itertools.count(1):
            if options.max_frames and index >= options.max_frames:
                return
            ok, frame = capture.read()
            if not ok:
                return
            yield index, frame

    pending, state = {}, {'next': 0, 'shown': time.perf_counter(), 'began': None}
    lock = threading.Lock()

    def load(item, dump=True):
        index, bgr = item
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        chw, meta = backend.prepare(image)
        if dumper is not None and dump:
            name = f'frame_{index:06d}'
            cv2.imwrite(str(dumper.folder / f'{name}.png'), bgr)
            dumper.dump(name, index, name, str((dumper.folder / f'{name}.png').resolve()), chw, meta)
        return image, (chw, meta)

    def model(loaded):
        return backend.infer([loaded[1][0]])[0]

    def finish(item, loaded, detections):
        index = item[0]
        image, (_, meta) = loaded
        result = backend.finish(detections, meta)
        drawn = draw_bgr(image, result, backend.class_names, options.draw_threshold)
        frame_records = (coco_records(index, f'frame_{index:06d}', result, backend.class_names)
                         if options.save_json else [])
        with lock:           # frames are written in order whatever thread finishes first
            pending[index] = drawn
            records.extend(frame_records)
            while state['next'] in pending:
                writer.write(pending.pop(state['next']))
                state['next'] += 1
            now = time.perf_counter()
            if now - state['shown'] >= 1.0:
                state['shown'] = now
                print(f'frame {state["next"]}: {state["next"] / (now - state["began"]):.1f} FPS',
                      flush=True)

    warm_up([(0, first)], lambda item: load(item, dump=False), model, options.warmup)
    state['began'] = began = time.perf_counter()
    try:
        stats = run_pipeline(frames(), load, model, finish)
    except KeyboardInterrupt:
        print('stopped', file=sys.stderr)
        return 1
    finally:
        writer.release()
        capture.release()
    summary(options, stats, began, 'frames', f'video {out_path} ({state["next"]} frames)')
    return 0 if stats.done else 1


def summary(options, stats, began: float, unit: str, where: str) -> None:
    print(f'{stats.done} {unit} in {time.perf_counter() - began:.2f} s: '
          f'{stats.images_per_second:.2f} FPS end to end, model busy {100 * stats.busy_fraction:.0f}% '
          f'of the time; {where}')
