"""Segment images, a video or a camera stream with SOLOv2 and save annotated output.

    python demo.py                      # the shipped shapes model on the sample images
    python demo.py --weights weights/light448_r50.pdparams --input photos/ --output out/
    python demo.py --backend onnx --model-dir export/light448 --input photos/ --output out/
    python demo.py --weights W --video clip.mp4 --output out/clip_seg.mp4
    python demo.py --backend inference --model-dir export/NAME --camera 0 --max-frames 300

The config is taken from the checkpoint's sidecar (dygraph) or from the export's
infer_cfg.json (inference, onnx) unless --config is given.

Backends (model/backends.py): ``dygraph`` runs the Paddle model from --weights;
``inference`` (Paddle Inference) and ``onnx`` (onnxruntime) run a folder written by
tools/export_model.py. All three share the post-processing.

Reading/preprocessing and mask pasting/drawing/saving run in worker threads; FPS is
measured after a warm-up and covers the whole pipeline.

``--dump-inputs DIR`` also writes every preprocessed network input ([1, 3, H, W]
float32, as .npy and raw .bin) with a manifest.json, for running the exported model in
another runtime; tools/postprocess_raw.py turns that runtime's outputs into the same
pictures and JSON.
"""
import argparse
import itertools
import json
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from config import describe_configs, format_settings
from config.cli import add_model_args, add_runtime_args, make_parser, resolve_config
from data.pipeline import run_pipeline
from data.results import instances_to_coco, write_json
from data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, read_image
from data.visualize import draw_instances
from model.backends import BACKENDS, BackendError, create_backend
from model.checkpoint import CheckpointError
from model.export_head import OUTPUT_NAMES
from model.runtime import setup

DEFAULT_WEIGHTS = 'weights/shapes_r18.pdparams'
IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
VIDEO_SUFFIXES = {'.mp4', '.avi', '.mov', '.mkv'}
MANIFEST = 'manifest.json'


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('SOLOv2 instance segmentation on images, a video or a camera.')
    add_model_args(parser, DEFAULT_WEIGHTS)
    parser.add_argument('--backend', choices=BACKENDS, default='dygraph',
                        help='dygraph (--weights), inference or onnx (--model-dir); default dygraph')
    parser.add_argument('--model-dir', metavar='DIR',
                        help='exported model folder (tools/export_model.py) for --backend inference|onnx')
    parser.add_argument('--mkldnn', action='store_true', help='oneDNN kernels for --backend inference')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--input', default='images', help='image file or folder (default: images/)')
    source.add_argument('--video', metavar='FILE', help='a video file instead of images')
    source.add_argument('--camera', type=int, metavar='ID', help='a camera (cv2.VideoCapture ID)')
    parser.add_argument('--max-frames', type=int, default=0,
                        help='stop a video or camera after this many frames (default: all)')
    parser.add_argument('--output', default='output/demo',
                        help='folder for the drawn pictures; for --video/--camera an .mp4 file '
                             'or a folder (default output/demo)')
    parser.add_argument('--draw-threshold', type=float, default=0.3,
                        help='minimum score of a drawn instance (default 0.3)')
    parser.add_argument('--save-json', metavar='PATH',
                        help='also write COCO-style results (RLE masks) to PATH')
    parser.add_argument('--dump-inputs', metavar='DIR',
                        help='also write every preprocessed input (.npy, .bin) and a manifest.json')
    add_runtime_args(parser)
    parser.add_argument('--warmup', type=int, default=2, help='untimed warm-up runs (default 2)')
    parser.add_argument('--list-configs', action='store_true', help='print the config table and exit')
    return parser.parse_args(argv)


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


# ---- shared with tools/postprocess_raw.py -------------------------------------------------------

def draw_bgr(image_rgb: np.ndarray, result, class_names, draw_threshold: float) -> np.ndarray:
    """The annotated picture of one image (BGR, for OpenCV writers)."""
    drawn = draw_instances(image_rgb, result.masks, result.labels, result.scores, class_names,
                           draw_threshold)
    return cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)


def coco_records(image_id: int, file_name: str, result, class_names):
    """COCO-style records of one image, with ``file_name`` and ``category_name``."""
    records = instances_to_coco(image_id, result.masks, result.labels, result.scores,
                                [i + 1 for i in range(len(class_names))])
    for record in records:
        record['file_name'] = file_name
        record['category_name'] = class_names[record['category_id'] - 1]
    return records


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
        entry = {'name': name, 'image_id': image_id, 'file_name': file_name, 'source': source,
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
            'input': {'name': 'image', 'layout': 'NCHW', 'dtype': 'float32', 'channels': 'RGB',
                      'mean': list(IMAGENET_MEAN_RGB), 'std': list(IMAGENET_STD_RGB),
                      'test_short': cfg.test_short, 'test_max': cfg.test_max, 'size_divisor': 32},
            'outputs': {'names': list(OUTPUT_NAMES),
                        'files': '{name}.{output}.npy, e.g. %s.scores.npy' % (
                            self.entries[0]['name'] if self.entries else 'NAME'),
                        'shapes': {'scores': '[1, K, C]', 'kernels': '[1, K, E]',
                                   'mask_feat': '[1, E, H/4, W/4]'}},
            'postprocess': self.backend.params.to_json(),
            'images': sorted(self.entries, key=lambda e: e['image_id']),
        }
        path = self.folder / MANIFEST
        path.write_text(json.dumps(manifest, indent=2) + '\n')
        return path


# ---- setup --------------------------------------------------------------------------------------

def make_backend(args):
    """(config number, backend) or raises with a one-line message."""
    if args.backend == 'dygraph':
        if not args.weights or not Path(args.weights).is_file():
            raise FileNotFoundError(
                f'weights not found: {args.weights} (convert a checkpoint first, e.g. '
                'python convert/ppdet2paddle.py SRC.pdparams weights/model.pdparams)')
        number, cfg = resolve_config(args)
        return number, create_backend('dygraph', cfg, args.weights, device=setup(args.device, args.threads))
    if not args.model_dir:
        raise ValueError(f'--backend {args.backend} needs --model-dir (a folder from tools/export_model.py)')
    if args.device not in (None, 'cpu'):
        raise ValueError(f'--backend {args.backend} runs on the CPU here; use --backend dygraph for --device {args.device}')
    setup('cpu', args.threads)
    backend = create_backend(args.backend, model_dir=args.model_dir, threads=args.threads,
                             mkldnn=args.mkldnn, overrides=args.opt)
    if args.config is not None and args.config != backend.number:
        raise ValueError(f'{args.model_dir} was exported from config {backend.number}, not --config={args.config}')
    return backend.number, backend


def video_output_path(args) -> Path:
    out = Path(args.output)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        return out
    stem = Path(args.video).stem if args.video else f'camera{args.camera}'
    return out / f'{stem}.mp4'


# ---- runs ---------------------------------------------------------------------------------------

def run_images(args, backend, dumper, records, paths) -> int:
    out_dir = Path(args.output)
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
                    draw_bgr(image, result, backend.class_names, args.draw_threshold))
        if args.save_json:
            records.extend(coco_records(ids[path], path.name, result, backend.class_names))
        print(f'{path.name}: {len(result)} instances, '
              f'{int((result.scores >= args.draw_threshold).sum())} drawn')

    warm_up(paths, lambda p: (None, backend.prepare(read_image(p))), model, args.warmup)
    began = time.perf_counter()
    stats = run_pipeline(paths, load, model, finish)
    for path, message in stats.failed:
        print(f'skipped {path}: {message}', file=sys.stderr)
    summary(args, stats, began, 'images', f'pictures in {out_dir}/')
    return 0 if stats.done else 1


def run_video(args, backend, dumper, records) -> int:
    source = args.video if args.video is not None else args.camera
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        print(f'error: cannot open {"video " + args.video if args.video else f"camera {args.camera}"}',
              file=sys.stderr)
        return 2
    ok, first = capture.read()
    if not ok:
        print(f'error: no frames in {source}', file=sys.stderr)
        return 2
    fps_in = capture.get(cv2.CAP_PROP_FPS) or 25.0
    height, width = first.shape[:2]
    out_path = video_output_path(args)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*'mp4v'), fps_in, (width, height))
    if not writer.isOpened():
        print(f'error: cannot write {out_path}', file=sys.stderr)
        return 2

    def frames():
        yield 0, first
        for index in itertools.count(1):
            if args.max_frames and index >= args.max_frames:
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
        drawn = draw_bgr(image, result, backend.class_names, args.draw_threshold)
        frame_records = (coco_records(index, f'frame_{index:06d}', result, backend.class_names)
                         if args.save_json else [])
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

    warm_up([(0, first)], lambda item: load(item, dump=False), model, args.warmup)
    state['began'] = began = time.perf_counter()
    try:
        stats = run_pipeline(frames(), load, model, finish)
    except KeyboardInterrupt:
        print('stopped', file=sys.stderr)
        return 1
    finally:
        writer.release()
        capture.release()
    summary(args, stats, began, 'frames', f'video {out_path} ({state["next"]} frames)')
    return 0 if stats.done else 1


def summary(args, stats, began: float, unit: str, where: str) -> None:
    print(f'{stats.done} {unit} in {time.perf_counter() - began:.2f} s: '
          f'{stats.images_per_second:.2f} FPS end to end, model busy {100 * stats.busy_fraction:.0f}% '
          f'of the time; {where}')


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print(describe_configs())
        return 0
    video = args.video is not None or args.camera is not None
    paths = [] if video else list_images(args.input)
    if not video and not paths:
        print(f'error: no images found at {args.input}', file=sys.stderr)
        return 2
    if args.video is not None and not Path(args.video).is_file():
        print(f'error: video not found: {args.video}', file=sys.stderr)
        return 2
    try:
        number, backend = make_backend(args)
    except (FileNotFoundError, CheckpointError, BackendError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except (KeyError, ValueError) as exc:
        print(f'error: {exc.args[0]}', file=sys.stderr)
        return 2
    where = f' ({backend.name} backend, {args.model_dir})' if args.backend != 'dygraph' else ''
    print(f'config {number}: {backend.cfg.__name__}{where}\n{format_settings(backend.cfg)}')
    dumper = InputDumper(args.dump_inputs, backend, number) if args.dump_inputs else None
    records = []
    code = (run_video(args, backend, dumper, records) if video
            else run_images(args, backend, dumper, records, paths))
    if dumper is not None:
        print(f'wrote {len(dumper.entries)} inputs and {dumper.close()}')
    if args.save_json and code != 2:
        write_json(sort_records(records), args.save_json)
        print(f'wrote {len(records)} results to {args.save_json}')
    return code


if __name__ == '__main__':
    raise SystemExit(main())
