"""Turn raw network outputs from another runtime into masks, pictures and COCO JSON.

For runtimes other than Paddle and onnxruntime (a vendor NPU SDK, TensorRT, ...):

    python demo.py --backend onnx --model-dir export/NAME --input photos/ --dump-inputs dump/
    # run export/NAME/model.onnx on every dump/NAME.npy (or .bin: float32 [1, 3, H, W])
    # and save its three outputs as RAW/NAME.scores.npy, RAW/NAME.kernels.npy,
    # RAW/NAME.mask_feat.npy
    python tools/postprocess_raw.py --manifest dump/manifest.json --raw RAW --output out/ --save-json out/results.json

The post-processing is the one of demo.py (``model.inference.postprocess.finish_outputs``), with the
thresholds, classes and image sizes stored in the manifest, so the pictures and JSON equal the demo's
for the same outputs. Pictures are drawn on
the manifest's ``source`` images (video frames are saved beside the dumped inputs).
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # noqa: E402  (before Paddle)

with cli.interruptible_loading():  # no Paddle: one line saying so; Ctrl-C while it loads: one line
    import numpy as np

    from solov2.core.errors import InputError
    from solov2.data.files import check_output_file, make_folder, write_image
    from solov2.data.results import instances_to_coco
    from solov2.data.transforms import DEFAULT_MAX_PIXELS, ImageMeta
    from solov2.data.visualize import draw_bgr
    from solov2.model.inference.export_network import OUTPUT_NAMES, outputs_text
    from solov2.model.inference.postprocess import InferenceParams, finish_outputs
    from solov2.model.inference.reading import PictureReader
    from solov2.tools.cli import at_least, command, make_parser, one_line, read_json, set_status
    from solov2.tools.demo_outputs import picture_targets, write_records

ENTRY_KEYS = ('name', 'image_id', 'file_name', 'source', 'orig_hw', 'resized_hw', 'padded_hw')


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__.split('\n')[0], configs=False, notes=__doc__.split('\n', 2)[2])
    parser.add_argument('--manifest', required=True, help='manifest.json written by demo.py --dump-inputs')
    parser.add_argument('--raw', required=True,
                        help='folder with NAME.scores.npy, NAME.kernels.npy, NAME.mask_feat.npy per input')
    parser.add_argument('--output', default='output/raw', help='folder for the drawn pictures')
    parser.add_argument('--no-pictures', action='store_true', help='only masks/JSON, no pictures')
    parser.add_argument('--draw-threshold', type=at_least(0, whole=False, most=1), default=0.3,
                        help='minimum score of a drawn instance (default 0.3)')
    parser.add_argument('--save-json', metavar='PATH', help='write COCO-style results to PATH')
    return parser.parse_args(argv)


def read_outputs(raw: Path, name: str, num_classes: int):
    """The outputs of one input: scores [1, K, C], kernels [1, K, E], mask_feat [1, E, H, W]; InputError
    naming the file whose shape does not fit."""
    arrays = []
    for output, ndim in zip(OUTPUT_NAMES, (3, 3, 4)):
        path = raw / f'{name}.{output}.npy'
        if not path.is_file():
            raise InputError(f'missing {path}')
        try:
            array = np.load(path, allow_pickle=False).astype(np.float32, copy=False)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f'cannot read {path}: {exc}') from exc
        if array.ndim == ndim - 1:
            array = array[None]
        if array.ndim != ndim or array.shape[0] != 1:
            raise InputError(f'{path} has shape {array.shape}, expected {ndim} dims with batch 1')
        arrays.append(array)
    scores, kernels, mask_feat = arrays
    expected = {'scores': (1, kernels.shape[1], num_classes), 'kernels': (1, scores.shape[1], mask_feat.shape[1])}
    for output, array in zip(OUTPUT_NAMES, arrays):
        if output in expected and array.shape != expected[output]:
            raise InputError(f'{raw / f"{name}.{output}.npy"} has shape {array.shape}, expected {expected[output]} '
                             f'({outputs_text()}, B = 1)')
    return arrays


def process(entry: dict, raw: Path, params, class_names, args, picture=None) -> list:
    """Post-process one manifest entry (and draw its ``picture`` when given); its COCO records."""
    meta = ImageMeta(tuple(entry['orig_hw']), tuple(entry['resized_hw']), tuple(entry['padded_hw']))
    result = finish_outputs(read_outputs(raw, entry['name'], len(class_names)), meta, params)
    if picture is not None:
        source = PictureReader(DEFAULT_MAX_PIXELS).read(entry['source'])
        write_image(picture, draw_bgr(source, result.masks, result.labels, result.scores, class_names,
                                      args.draw_threshold))
    print(f'{entry["file_name"]}: {len(result)} instances')
    return instances_to_coco(entry['image_id'], result.masks, result.labels, result.scores,
                             file_name=entry['file_name'], class_names=class_names) if args.save_json else []


def read_manifest(path: str) -> dict:
    """The manifest of demo.py --dump-inputs; InputError when it cannot be read or lacks keys."""
    manifest = read_json(path, 'give the manifest.json of demo.py --dump-inputs')
    missing = [key for key in ('postprocess', 'class_names', 'images')
               if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)} — give the manifest.json of demo.py --dump-inputs")
    for index, entry in enumerate(manifest['images']):
        lacking = [key for key in ENTRY_KEYS if not isinstance(entry, dict) or key not in entry]
        if lacking:
            raise InputError(f"{path}: image {index} lacks {', '.join(lacking)} — write the manifest again "
                             'with demo.py --dump-inputs')
        entry['source'] = str(Path(path).parent / entry['source'])     # recorded relative to the manifest
    return manifest


@command
def main(argv) -> int:
    args = parse_args(argv)
    manifest = read_manifest(args.manifest)
    raw = Path(args.raw)
    if not raw.is_dir():
        raise InputError(f'raw output folder not found: {raw} — give the folder with NAME.scores.npy files')
    if args.save_json:
        check_output_file(args.save_json, [args.manifest], '--save-json')
    sources = [Path(entry['source']) for entry in manifest['images']]       # named as the demo names them
    pictures = {} if args.no_pictures else picture_targets(sources, args.output, None, 'source image')
    if pictures:
        make_folder(args.output, '--output')
    params = InferenceParams.from_json(manifest['postprocess'])
    records, done = [], 0
    set_status(lambda: f'{done} inputs post-processed' + ('' if args.no_pictures else f', pictures in {args.output}/'))
    for entry in manifest['images']:
        try:
            picture = pictures.get(Path(entry['source']))
            records.extend(process(entry, raw, params, manifest['class_names'], args, picture))
            done += 1
        except (ValueError, KeyError) as exc:
            print(f'skipped {entry["name"]}: {one_line(exc)}', file=sys.stderr)
    if args.save_json:
        write_records(records, args.save_json)
    failed = len(manifest['images']) - done
    print(f'{done} inputs post-processed, {failed} skipped')
    return 0 if done and not failed else 1


if __name__ == '__main__':
    raise SystemExit(main())
