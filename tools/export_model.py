"""Export a SOLOv2 checkpoint for deployment: Paddle Inference and/or ONNX.

    python tools/export_model.py --config 1 --weights weights/light448_r50.pdparams --output export/light448
    python tools/export_model.py --weights W --output export/NAME --format onnx --opset 17
    python demo.py --backend onnx --model-dir export/NAME --input images/

Writes ``model.json`` (Paddle >= 3) or ``model.pdmodel`` + ``model.pdiparams`` (Paddle Inference, input
``image`` [B, 3, H, W]), ``model.onnx`` and ``model_regions.onnx`` (with the ``regions`` input [B, 2]:
OpenVINO's size buckets), and ``infer_cfg.json`` (config, classes, sizes, post-processing thresholds).

After writing, each format is run once on a random input and compared with the dygraph model
(``--no-verify`` skips this); README "Deployment" says what runs where. The folder is written whole
(``core.paths.build_folder``): a failed or stopped export leaves it as it was; a finished one replaces it.
"""
import argparse
import dataclasses
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # noqa: E402  (before Paddle)

with cli.interruptible_loading():  # no Paddle: one line saying so; Ctrl-C while it loads: one line
    import paddle

    from solov2.config.sidecar import sidecar_path
    from solov2.core.errors import InputError
    from solov2.core.paths import build_folder
    from solov2.data.files import check_output_file
    from solov2.model.inference.backend_factory import checked_weights
    from solov2.model.inference.export import DCN_OPSET, DEFAULT_MAX_SIZE, export
    from solov2.model.inference.export_network import MIN_SIZE, SIZE_DIVISOR
    from solov2.model.inference.exported_folder import INFER_CFG, ONNX_FILE, PADDLE_PREFIX, REGIONS_ONNX_FILE
    from solov2.model.inference.spec import dygraph_backend
    from solov2.tools.cli import add_model_args, at_least, command, fetched, make_parser, model_spec, set_status


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('Export SOLOv2 to Paddle Inference and/or ONNX.')
    add_model_args(parser)
    parser.add_argument('--output', required=True, help='folder to write, e.g. export/NAME')
    parser.add_argument('--format', choices=('paddle', 'onnx', 'both'), default='both',
                        help='what to write (default both)')
    parser.add_argument('--opset', type=at_least(7), default=17,
                        help=f'ONNX opset (default 17; models with deformable conv need {DCN_OPSET} and get it)')
    parser.add_argument('--min-size', type=at_least(MIN_SIZE, step=SIZE_DIVISOR), default=MIN_SIZE,
                        help=f'smallest input side, a multiple of 32 >= {MIN_SIZE} (default {MIN_SIZE})')
    parser.add_argument('--max-size', type=at_least(MIN_SIZE, step=SIZE_DIVISOR), default=DEFAULT_MAX_SIZE,
                        help=f'largest input side, a multiple of 32 (default {DEFAULT_MAX_SIZE})')
    parser.add_argument('--no-verify', action='store_true',
                        help='do not run the exported model(s) against the dygraph model')
    return parser.parse_args(argv)


EXPORT_FILES = (f'{PADDLE_PREFIX}.json', f'{PADDLE_PREFIX}.pdmodel', f'{PADDLE_PREFIX}.pdiparams', ONNX_FILE,
                REGIONS_ONNX_FILE, INFER_CFG)


def check_output(output: str, weights: str) -> None:
    """InputError when --output cannot be written, an exported file would overwrite the weights or sidecar,
    or the folder holds files an export does not write (it is replaced whole)."""
    for name in EXPORT_FILES:
        check_output_file(Path(output) / name, [weights, sidecar_path(weights)], '--output')
    others = sorted(p.name for p in Path(output).iterdir() if p.name not in EXPORT_FILES) \
        if Path(output).is_dir() else []
    if others:
        raise InputError(f'--output {output} holds files an export does not write ({", ".join(others[:3])}): '
                         "the export replaces its folder whole — give a new folder or an export's own")


@command
def main(argv) -> int:
    args = parse_args(argv)
    if not args.weights:
        raise InputError('pass --weights, the .pdparams checkpoint to export')
    spec = model_spec(args)     # checked before a published name is fetched
    check_output(args.output, args.weights)
    spec = fetched(spec)
    number, cfg = checked_weights(spec)
    check_output(args.output, spec.weights)
    paddle.set_device('cpu')
    set_status(lambda: f'stopped while exporting to {args.output}; it was left as it was, export again')
    dygraph = dygraph_backend(dataclasses.replace(spec, device='cpu'), cfg)        # exported on the CPU
    with build_folder(args.output, replace=True) as tmp:     # whole, verified, or not at all
        lines = export(dygraph, number, tmp, args.format, args.opset, args.min_size, args.max_size,
                       not args.no_verify)
    print(f'config {number}: {cfg.__name__}')
    print('\n'.join(line.replace(str(tmp), str(Path(args.output))) for line in lines))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
