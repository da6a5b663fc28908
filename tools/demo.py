"""Segment images, a video or a camera stream with SOLOv2 and save annotated output.

    python demo.py                      # the shipped shapes model on the sample images
    python demo.py --backend dygraph    # the Paddle model itself, no export
    python demo.py --weights weights/light448_r50.pdparams --input photos/ --output out/
    python demo.py --backend onnx --model-dir export/light448 --input photos/ --output out/
    python demo.py --backend openvino --precision bf16 --model-dir export/light448 --input photos/
    python demo.py --weights W --video clip.mp4 --output out/clip_seg.mp4
    python demo.py --backend inference --model-dir export/NAME --camera 0 --max-frames 300

Every picture or frame goes through the one runner (``Predictor.run_pictures``); what the demo
does with each result is tools/demo_outputs.py's. Backends and flags: docs/demo.md and ``--help``.
"""
import argparse
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # before Paddle

with cli.interruptible_loading():  # Ctrl-C or SIGTERM while Paddle and the library load: one line
    from solov2.config import announce_config, describe_configs
    from solov2.core.errors import InputError
    from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
    from solov2.data.files import check_folder, check_output_file, looked_up
    from solov2.data.results import SHOWN_MIN_SCORE
    from solov2.model.distributed import Processes, gather, launched_processes, start_processes
    from solov2.model.inference.backend_factory import open_backend
    from solov2.model.inference.media import list_images
    from solov2.model.inference.pipeline import Predictor
    from solov2.model.runtime import default_device
    from solov2.tools import demo_outputs as outputs

def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser('SOLOv2 instance segmentation on images, a video or a camera.')
    cli.add_inference_args(parser, SHIPPED_WEIGHTS)
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--input', default=SAMPLE_IMAGES,
                        help='image file or folder (default: the sample pictures, images/)')
    source.add_argument('--video', metavar='FILE', help='a video file instead of images')
    source.add_argument('--camera', type=cli.at_least(0), metavar='ID', help='a camera (cv2.VideoCapture ID)')
    parser.add_argument('--max-frames', type=cli.at_least(0), default=0,
                        help='stop a video or camera after this many frames (default: all)')
    parser.add_argument('--output', default='output/demo',
                        help='folder for the drawn pictures; for --video/--camera an .mp4 file '
                             'or a folder (default output/demo)')
    parser.add_argument('--draw-threshold', type=cli.at_least(0, whole=False, most=1), default=SHOWN_MIN_SCORE,
                        help=f'minimum score of a drawn instance (default {SHOWN_MIN_SCORE}; --save-json keeps every '
                             'instance, for COCO scoring)')
    parser.add_argument('--save-json', metavar='PATH', help='also write COCO-style results (RLE masks) to PATH')
    parser.add_argument('--save-labelme', metavar='DIR',
                        help="also write a labelme file of each picture's drawn instances to DIR, to correct in "
                             'labelme and convert back with tools/labelme2coco.py (docs/own_data.md)')
    parser.add_argument('--labelme-shapes', choices=('polygon', 'mask'), default='polygon',
                        help="--save-labelme's shapes: polygons to drag (default), or labelme's mask shapes, "
                             'the exact pixels')
    parser.add_argument('--labelme-copy-images', action='store_true',
                        help='copy each picture beside its labelme file (imagePath its bare name), so that the '
                             'folder can move as one (default: imagePath the picture relative to the file)')
    parser.add_argument('--dump-inputs', metavar='DIR',
                        help='also write every preprocessed input (.npy, .bin) and a manifest.json')
    parser.add_argument('--warmup', type=cli.at_least(0), default=2, help='untimed warm-up runs (default 2)')
    parser.add_argument('--list-configs', action='store_true', help='print the config table and exit')
    return parser.parse_args(argv)


def check_outputs(args, paths) -> dict:
    """Refuse unusable output paths before the model is built; the picture targets ({} for a video)."""
    if args.save_json:
        check_output_file(args.save_json, paths + ([args.video] if args.video else []), '--save-json')
    if args.dump_inputs:
        check_folder(args.dump_inputs, '--dump-inputs')
    if args.labelme_copy_images and not args.save_labelme:
        raise InputError('--labelme-copy-images copies the pictures beside the labelme files: give --save-labelme DIR')
    if not paths:
        if args.save_labelme:
            raise InputError('--save-labelme writes one file a picture: give --input pictures, not a video')
        check_output_file(outputs.video_output_path(args.output, args.video, args.camera),
                          [args.video] if args.video else [], '--output')
        return {}
    return outputs.picture_targets(paths, args.output, args.input)


def segment(args, predictor, draw: outputs.DrawOptions, targets: dict, processes: Processes) -> int:
    """Run the images (this process's share) or the video, say how it went; the number done."""
    written = []
    if targets:
        count = processes.counts(len(targets))[processes.rank]
        cli.set_status(lambda: f'{len(written)} of {count} pictures written to {args.output}/'
                       + kept_records(args, processes))
        stats = outputs.run_images(predictor, targets, draw, written, processes)
        where = f'pictures in {Path(args.output)}/'
    else:
        out_path = outputs.video_output_path(args.output, args.video, args.camera)
        cli.set_status(lambda: f'{len(written)} frames written to {out_path}' + kept_records(args, processes))
        source = args.video if args.video is not None else args.camera
        stats = outputs.run_video(predictor, source, out_path, draw, written, args.max_frames)
        where = f'video {out_path} ({len(written)} frames)'
    who = f'process {processes.rank} of {processes.world}: ' if processes.world > 1 else ''
    print(f"{who}{stats.done} {'images' if targets else 'frames'} in {stats.wall:.2f} s: {stats.images_per_second:.2f}"
          f' FPS end to end, model busy {100 * stats.busy_fraction:.0f}% of the time; {where}')
    return stats.done


def kept_records(args, processes: Processes) -> str:
    """What an interruption keeps of --save-json: the results of what was written (one process's run)."""
    if not args.save_json:
        return ''
    return f', their results in {args.save_json}' if processes.world == 1 else ', no --save-json results'


def gather_outputs(draw: outputs.DrawOptions, done: int, processes: Processes) -> int:
    """Every process's records and dumped inputs into ``draw``; the images done by all (process 0 says each's)."""
    parts = gather((done, draw.records, draw.dumper.entries if draw.dumper else None), processes)
    if draw.records is not None:
        draw.records = [record for part in parts for record in part[1]]
    if draw.dumper is not None:
        draw.dumper.entries = [entry for part in parts for entry in part[2]]
    if processes.world > 1 and processes.main:
        print(cli.shares_line([part[0] for part in parts]))
    return sum(part[0] for part in parts)


@cli.command
def main(argv) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print(describe_configs())
        return 0
    spec = cli.model_spec(args)       # checked before a published name is fetched
    video = args.video is not None or args.camera is not None
    paths = [] if video else list_images(args.input)
    if args.video is not None and not Path(args.video).is_file():
        raise InputError(f'video not found: {looked_up(args.video)} — check the path')
    targets = check_outputs(args, paths)
    labelme = outputs.labelme_targets(targets, args.save_labelme, args.labelme_copy_images) if args.save_labelme \
        else None
    spec = cli.fetched(spec)
    cli.tune_for(spec.device, spec.threads, launched_processes().local_size)
    processes = start_processes(spec.device or default_device())
    if video and processes.world > 1:
        raise InputError('--video and --camera run in one process — start demo.py without '
                         'paddle.distributed.launch (images and folders are shared out among its processes)')
    number, backend = open_backend(spec, processes=processes, checked=True, progress=cli.ExportStages())
    where = f'{backend.label} backend, {spec.model_dir or spec.weights}'
    announce_config(number, backend.cfg, spec.overrides, args.verbose, where)
    with Predictor(backend, pipeline=outputs.demo_pipeline(backend.network_on_gpu)) as predictor:
        dumper = outputs.InputDumper(args.dump_inputs, predictor, number) if args.dump_inputs else None
        draw = outputs.DrawOptions(args.draw_threshold, [] if args.save_json else None, dumper, args.warmup,
                                   args.batch_size, labelme, args.labelme_shapes, args.labelme_copy_images)
        try:
            done = gather_outputs(draw, segment(args, predictor, draw, targets, processes), processes)
        except KeyboardInterrupt:       # Ctrl-C, SIGTERM: the results of the pictures written so far are kept
            if processes.world == 1 and args.save_json:
                outputs.write_records(draw.records, args.save_json)
            raise
    if processes.main and draw.dumper is not None:
        print(f'wrote {len(draw.dumper.entries)} inputs and {draw.dumper.close()}')
    if processes.main and args.save_json:
        outputs.write_records(draw.records, args.save_json)
    return 0 if done else 1


if __name__ == '__main__':
    raise SystemExit(main())
