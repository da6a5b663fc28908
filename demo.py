"""Segment images, a video or a camera stream with SOLOv2 and save annotated output.

    python demo.py                      # the shipped shapes model on the sample images
    python demo.py --weights weights/light448_r50.pdparams --input photos/ --output out/
    python demo.py --backend onnx --model-dir export/light448 --input photos/ --output out/
    python demo.py --weights W --video clip.mp4 --output out/clip_seg.mp4
    python demo.py --backend inference --model-dir export/NAME --camera 0 --max-frames 300

The config is taken from the checkpoint's sidecar (dygraph) or from the export's
infer_cfg.json (inference, onnx) unless --config is given.

Backends (model/inference/backends.py): ``dygraph`` runs the Paddle model from --weights;
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
from pathlib import Path

from config import describe_configs
from config.cli import add_model_args, add_runtime_args, announce_config, make_parser, resolve_config
from config.console import UsageError, run_command
from data.files import check_folder, check_output_file
from data.results import write_json
from model.checkpoint import CheckpointError
from model.inference.backends import BACKENDS, BackendError, create_backend
from model.inference.media import check_video_output, list_images, picture_targets, run_images, run_video
from model.inference.outputs import InputDumper, sort_records
from model.runtime import setup

DEFAULT_WEIGHTS = 'weights/shapes_r18.pdparams'


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


def make_backend(args):
    """(config number, backend) or raises with a one-line message."""
    if args.backend == 'dygraph':
        if not args.weights or not Path(args.weights).is_file():
            raise UsageError(
                f'weights not found: {args.weights} (convert a checkpoint first, e.g. '
                'python convert/ppdet2paddle.py SRC.pdparams weights/model.pdparams)')
        number, cfg = resolve_config(args)
        return number, create_backend('dygraph', cfg, args.weights, device=setup(args.device, args.threads))
    if not args.model_dir:
        raise UsageError(f'--backend {args.backend} needs --model-dir (a folder from tools/export_model.py)')
    if args.device not in (None, 'cpu'):
        raise ValueError(f'--backend {args.backend} runs on the CPU here; '
                         f'use --backend dygraph for --device {args.device}')
    setup('cpu', args.threads)
    backend = create_backend(args.backend, model_dir=args.model_dir, threads=args.threads,
                             mkldnn=args.mkldnn, overrides=args.opt)
    if args.config is not None and args.config != backend.number:
        raise ValueError(f'{args.model_dir} was exported from config {backend.number}, not --config={args.config}')
    return backend.number, backend


def check_outputs(args, paths) -> dict:
    """Refuse unusable output paths before the model is built; the picture targets
    ({image: picture path}) for an image run, {} for a video or camera."""
    if args.save_json:
        check_output_file(args.save_json, paths + ([args.video] if args.video else []), '--save-json')
    if args.dump_inputs:
        check_folder(args.dump_inputs, '--dump-inputs')
    if not paths:
        check_video_output(args)
        return {}
    return picture_targets(args, paths)


def main(argv=None) -> int:
    """The command: errors end in one line (``config.console.run_command``)."""
    return run_command(run, argv, usage_errors=(CheckpointError, BackendError))


def run(argv) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print(describe_configs())
        return 0
    video = args.video is not None or args.camera is not None
    paths = [] if video else list_images(args.input)
    if not video and not paths:
        raise UsageError(f'no images found at {args.input} — give an image file or a folder of images')
    if args.video is not None and not Path(args.video).is_file():
        raise UsageError(f'video not found: {args.video} — check the path')
    targets = check_outputs(args, paths)
    number, backend = make_backend(args)
    where = (f'{backend.name} backend, {args.model_dir}' if args.backend != 'dygraph'
             else f'dygraph, {args.weights}')
    print(announce_config(number, backend.cfg, args.opt, args.verbose, where))
    dumper = InputDumper(args.dump_inputs, backend, number) if args.dump_inputs else None
    records = []
    code = (run_video(args, backend, dumper, records) if video
            else run_images(args, backend, dumper, records, targets))
    if dumper is not None:
        print(f'wrote {len(dumper.entries)} inputs and {dumper.close()}')
    if args.save_json and code != 2:
        write_json(sort_records(records), args.save_json)
        print(f'wrote {len(records)} results to {args.save_json}')
    return code


if __name__ == '__main__':
    raise SystemExit(main())
