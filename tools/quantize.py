"""INT8 post-training quantization (NNCF) of an exported model, for OpenVINO.

    python tools/export_model.py --weights weights/shapes_r18.pdparams --output export/shapes --format onnx
    python tools/quantize.py --model-dir export/shapes --images datasets/shapes/train --output export/shapes_int8
    python eval.py --backend openvino --precision int8 --model-dir export/shapes_int8

    # with accuracy control: at most 0.5 mask AP points lost on 40 annotated val images
    python tools/quantize.py --model-dir export/shapes --images datasets/shapes/train --num-images 50 \\
        --annotations datasets/shapes/annotations/instances_val.json --annotated-images datasets/shapes/val \\
        --num-annotated 40 --max-drop 0.5 --output export/shapes_int8_ac

Calibrates on up to --num-images pictures of the user's own (the kind the model will see),
keeps the convolutions nearest to the outputs in f32 (--keep-depth; 0 quantizes everything)
and writes an OpenVINO IR plus infer_cfg.json to --output, a new folder (an existing one is
refused, so nothing of the user's is overwritten). Then it compiles the INT8 model for this CPU
(one progress line) and times its network against the f32 one on the calibration pictures: its
last lines give both times and say whether INT8 pays on this CPU for this model (at least 1.1x
f32's speed; a small network whose picture time goes mostly to reading and post-processing does
not gain). Measure what it costs with eval.py before using it: docs/deployment.md#int8.

With --annotations (a COCO instance file) and --annotated-images (the folder of its images),
NNCF's accuracy-controlled quantization starts from that scope and reverts to f32 the layers
that cost the most mask AP (pycocotools, as eval.py computes it, in points 0-100) until the
INT8 model is within --max-drop points (absolute, default 1.0) of the f32 one on those images;
the f32 and INT8 AP and the number of operations reverted to f32 are printed and stored in the
output's infer_cfg.json (files.openvino_int8.accuracy_control). Meanwhile each of its steps shows
on stderr with the time since the start: each validation pass with its AP, NNCF's messages, and a
progress line with an ETA for the steps of many passes (per image, ranking the quantizer groups).
"""
import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # noqa: E402  (before Paddle)

with cli.interruptible_loading():  # no Paddle: one line saying so; Ctrl-C while it loads: one line
    from solov2.core.cache import compiled_cache
    from solov2.core.durations import clock
    from solov2.core.errors import InputError
    from solov2.data.files import check_folder
    from solov2.model.cpu_math import cpu_name
    from solov2.model.inference.exported_folder import read_infer_cfg
    from solov2.model.inference.media import list_images
    from solov2.model.inference.openvino_backend import OpenVinoBackend
    from solov2.model.inference.pipeline import Predictor
    from solov2.model.inference.quantize import (
        Int8Speed,
        Pass,
        compile_here,
        int8_speed,
        load_annotated,
        prepare_images,
        quantize_model,
    )
    from solov2.model.inference.spec import ModelSpec, exported_backend
    from solov2.model.runtime import cpu_threads
    from solov2.tools.cli import DownloadProgress, Progress, at_least, command, make_parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__.split('\n')[0], configs=False, notes=__doc__)
    parser.add_argument('--model-dir', required=True,
                        help='exported folder with model.onnx (solov2 export / tools/export_model.py)')
    parser.add_argument('--images', required=True, help='folder of calibration images (yours, unlabelled)')
    parser.add_argument('--output', required=True, help='new folder for the INT8 model')
    parser.add_argument('--num-images', type=at_least(1), default=100, help='calibration images used (default 100)')
    parser.add_argument('--keep-depth', type=at_least(0), default=2,
                        help='convolutions kept in f32 along each path back from an output (default 2)')
    control = parser.add_argument_group('accuracy control (NNCF quantize_with_accuracy_control)')
    control.add_argument('--annotations', metavar='ANN.json',
                         help='COCO instance annotations of pictures to keep the mask AP on')
    control.add_argument('--annotated-images', metavar='DIR', help='folder of the annotated pictures (required '
                         'with --annotations; eval.py calls it --images)')
    control.add_argument('--num-annotated', type=at_least(0), default=0,
                         help='use the first N annotated images by id (default 0: all)')
    control.add_argument('--max-drop', type=at_least(0, whole=False), default=1.0,
                         help='largest mask AP loss allowed, in AP points (0-100), absolute (default 1.0)')
    return parser.parse_args(argv)


def check_control_args(args) -> None:
    """InputError for accuracy-control options that cannot work together."""
    given = [flag for flag, value in (('--annotated-images', args.annotated_images),
                                      ('--num-annotated', args.num_annotated)) if value]
    if given and not args.annotations:
        raise InputError(f"{', '.join(given)} needs --annotations (a COCO annotation file)")
    if args.annotations and not args.annotated_images:
        raise InputError('--annotations needs --annotated-images, the folder its pictures are in')


@command
def main(argv) -> int:
    args = parse_args(argv)
    check_control_args(args)
    out = Path(args.output)
    paths = list_images(args.images, 'a folder of calibration pictures')[:args.num_images]
    check_folder(out, '--output', new=True)
    quiet_nncf()
    annotated = None
    if args.annotations:
        names = read_infer_cfg(args.model_dir)['class_names']
        annotated = load_annotated(args.annotations, args.annotated_images, names, args.num_annotated)
    progress = QuantizeProgress(len(paths) + (len(annotated.paths) if annotated else 0),
                                'calibration + annotated images ' if annotated else 'calibration images ')
    spec = ModelSpec(backend='openvino', model_dir=args.model_dir)
    summary = quantize_model(spec, paths, out, args.keep_depth, progress, annotated, args.max_drop)
    progress.close()
    print(f'INT8 model: {out} (calibrated on {summary["images"]} images at {summary["input_shape"][2]}x'
          f'{summary["input_shape"][3]}, {len(summary["kept_f32"])} convolutions kept in f32)')
    if annotated:
        print(control_line(summary['accuracy_control']))
    speed = compile_and_time(out, args.model_dir, paths)
    print(f'run it: --backend openvino --precision int8 --model-dir {out}')
    print('\n'.join(speed_lines(speed, args.model_dir)))
    return 0


def compile_and_time(out: Path, f32_dir: str, paths: list) -> Int8Speed:
    """The INT8 folder ``out`` compiled for this CPU into the cache (said in a line), then its network timed
    against the f32 one of ``f32_dir`` on the calibration pictures ``paths``: a progress line each, not
    the engines' line per size compiled."""
    bar, engines = Bars(), logging.getLogger(OpenVinoBackend.__module__)
    level = engines.level
    engines.setLevel(logging.WARNING)
    try:
        int8, seconds = compile_here(out, progress=bar('compiling INT8 for this CPU ', 'model'))
        bar.close()
        print(f'compiled its {len(int8.compiled)} size-bucket models for this CPU into the cache in {seconds:.1f} s: '
              'a run here loads them')
        f32 = exported_backend(ModelSpec(backend='openvino', model_dir=f32_dir), compiled_cache())
        with Predictor(f32) as predictor:
            inputs = [p.chw for p in prepare_images(predictor, paths, lambda: None)]
        return int8_speed(f32, int8, inputs, progress=bar('timing f32 and INT8 '))
    finally:
        engines.setLevel(level)
        bar.close()


class Bars:
    """``Progress`` lines on stderr one after another: ``bars(label, unit)`` is a ``progress(done, total)``
    that starts its line at its first call (closing the one before)."""

    def __init__(self):
        self.bar = None

    def __call__(self, label: str, unit: str = 'img'):
        def progress(done: int, total: int) -> None:
            if done == 1:
                self.close()
                self.bar = Progress(total, label, unit=unit)
            if self.bar is not None:
                self.bar.total = total
                self.bar.update()
        return progress

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def speed_lines(speed: Int8Speed, f32_dir: str) -> list:
    """The last lines: both engines' network time here and whether INT8 pays on this CPU for this model."""
    here = f'{cpu_name()}, {cpu_threads(0)} threads'
    lines = [f'the network on this CPU ({here}), {speed.pictures} calibration pictures: INT8 {speed.int8_ms:.1f} ms, '
             f"f32 {speed.f32_ms:.1f} ms a picture (INT8 at {speed.speedup:.2f}x f32's speed)"]
    if speed.pays:
        return lines + [f"INT8 pays here: {speed.speedup:.2f}x f32's speed; check its mask AP with eval.py "
                        '(or quantize with --annotations)']
    return lines + [f"INT8 does not pay on this CPU for this model ({speed.int8_ms:.1f} ms against f32's "
                    f'{speed.f32_ms:.1f} ms): run f32 instead (--backend openvino --model-dir {f32_dir}, or auto); '
                    'INT8 gains where the network is most of the time (docs/deployment.md#int8)']


class QuantizeProgress(DownloadProgress):
    """``quantize_model``'s ``progress`` on stderr: a ``Progress`` line for the images read and for a step
    of several passes, else a line per message and per validation pass (its AP); ``close`` ends the line."""

    def __init__(self, images: int, label: str):
        self.start = time.perf_counter()
        self.bar = Progress(images, label, since=self.start)

    def __call__(self, event=None) -> None:
        if event is None or isinstance(event, Pass) and event.steps > 1:
            if event is not None and event.step == 1:
                self.close()
                self.bar = Progress(event.steps, event.purpose + ' ', unit='pass', since=self.start)
            if self.bar is not None:
                self.bar.update()
            return
        self.close()
        text = ' '.join(event.split()) if isinstance(event, str) else (
            f'{event.purpose}: mask AP {event.ap:.2f} on {event.images} image{"s" * (event.images != 1)} '
            f'({event.seconds:.1f} s)')
        print(f'[{clock(time.perf_counter() - self.start)}]', text, file=sys.stderr, flush=True)


def quiet_nncf() -> None:
    """NNCF's INFO lines on stdout (one per convolution kept in f32) are noise: its handlers keep its
    warnings, its logger still hands its INFO messages on (accuracy control reads its report)."""
    try:
        from nncf.common.logging import nncf_logger
    except ImportError:
        return
    for handler in nncf_logger.handlers:
        handler.setLevel(logging.WARNING)


def control_line(control: dict) -> str:
    """The accuracy-control summary in one line."""
    drop, count = control['f32_ap'] - control['int8_ap'], control['reverted']
    verdict = ('<=' if drop <= control['max_drop'] else '>') + f" --max-drop {control['max_drop']:g}"
    verdict += '' if drop <= control['max_drop'] else ': NNCF could not restore it'
    reverted = 'an unknown number of operations' if count is None else f"{count} operation{'s' * (count != 1)}"
    return (f"accuracy control: mask AP on {control['annotated_images']} annotated images f32 "
            f"{control['f32_ap']:.2f}, int8 {control['int8_ap']:.2f} (drop {drop:.2f} {verdict}); "
            f'{reverted} reverted to f32 by NNCF beyond the kept convolutions')


if __name__ == '__main__':
    raise SystemExit(main())
