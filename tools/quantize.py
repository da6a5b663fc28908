"""INT8 post-training quantization (NNCF) of an exported model, for OpenVINO.

    python tools/export_model.py --weights weights/shapes_r18.pdparams --output export/shapes --format onnx
    python tools/quantize.py --model-dir export/shapes --images datasets/shapes/train --output export/shapes_int8
    python eval.py --backend openvino --precision int8 --model-dir export/shapes_int8

Calibrates on up to --num-images pictures of the user's own (the kind the model will see),
keeps the convolutions nearest to the outputs in f32 (--keep-depth; 0 quantizes everything)
and writes an OpenVINO IR plus infer_cfg.json to --output, a new folder (an existing one is
refused, so nothing of the user's is overwritten). Measure what it costs with eval.py before
using it: see README "Deployment" for the shapes model's figures.
"""
import argparse
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from config.console import Progress, UsageError, run_command  # noqa: E402
from model.inference.backend import BackendError  # noqa: E402
from model.inference.media import list_images  # noqa: E402
from model.inference.quantize import quantize_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--model-dir', required=True, help='exported folder with model.onnx (tools/export_model.py)')
    parser.add_argument('--images', required=True, help='folder of calibration images (yours, unlabelled)')
    parser.add_argument('--output', required=True, help='new folder for the INT8 model')
    parser.add_argument('--num-images', type=int, default=100, help='calibration images used (default 100)')
    parser.add_argument('--keep-depth', type=int, default=2,
                        help='convolutions kept in f32 along each path back from an output (default 2)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """The command: errors end in one line (``config.console.run_command``)."""
    return run_command(run, argv, usage_errors=(BackendError,))


def run(argv) -> int:
    args = parse_args(argv)
    out = Path(args.output)
    paths = list_images(args.images)[:max(args.num_images, 0)]
    if not paths:
        raise UsageError(f'no images found at {args.images} — give a folder of calibration pictures')
    if out.exists():
        raise UsageError(f'{out} already exists — pass a new --output folder')
    bar = Progress(len(paths), 'calibration images ')
    summary = quantize_model(args.model_dir, paths, out, args.keep_depth, bar.update)
    bar.close()
    print(f'INT8 model: {out} (calibrated on {summary["images"]} images at '
          f'{summary["input_shape"][2]}x{summary["input_shape"][3]}, {len(summary["kept_f32"])} '
          f'convolutions kept in f32)\nrun it: --backend openvino --precision int8 --model-dir {out}')
    return 0

if __name__ == '__main__':
    raise SystemExit(main())
