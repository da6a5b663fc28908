"""Turn raw network outputs from another runtime into masks, pictures and COCO JSON.

For runtimes other than Paddle and onnxruntime (a vendor NPU SDK, TensorRT, ...):

    python demo.py --backend onnx --model-dir export/NAME --input photos/ --dump-inputs dump/
    # run export/NAME/model.onnx on every dump/NAME.npy (or .bin: float32 [1, 3, H, W])
    # and save its three outputs as RAW/NAME.scores.npy, RAW/NAME.kernels.npy,
    # RAW/NAME.mask_feat.npy
    python tools/postprocess_raw.py --manifest dump/manifest.json --raw RAW --output out/ --save-json out/results.json

The post-processing is the one of demo.py (``model.inference.postprocess.postprocess_flat``, then
``paste_masks``), with the thresholds, classes and image sizes stored in the manifest,
so the pictures and JSON equal the demo's for the same outputs. Pictures are drawn on
the manifest's ``source`` images (video frames are saved beside the dumped inputs).
"""
import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from data.results import write_json  # noqa: E402
from data.transforms import ImageMeta, read_image  # noqa: E402
from model.inference.exportable import OUTPUT_NAMES  # noqa: E402
from model.inference.outputs import coco_records, draw_bgr, sort_records  # noqa: E402
from model.inference.postprocess import InferenceParams, paste_detections, postprocess_flat  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n', 2)[2])
    parser.add_argument('--manifest', required=True, help='manifest.json written by demo.py --dump-inputs')
    parser.add_argument('--raw', required=True,
                        help='folder with NAME.scores.npy, NAME.kernels.npy, NAME.mask_feat.npy per input')
    parser.add_argument('--output', default='output/raw', help='folder for the drawn pictures')
    parser.add_argument('--no-pictures', action='store_true', help='only masks/JSON, no pictures')
    parser.add_argument('--draw-threshold', type=float, default=0.3,
                        help='minimum score of a drawn instance (default 0.3)')
    parser.add_argument('--save-json', metavar='PATH', help='write COCO-style results to PATH')
    return parser.parse_args(argv)


def read_outputs(raw: Path, name: str):
    """The three outputs of one input, each with a leading batch dimension of 1."""
    arrays = []
    for output, ndim in zip(OUTPUT_NAMES, (3, 3, 4)):
        path = raw / f'{name}.{output}.npy'
        if not path.is_file():
            raise ValueError(f'missing {path}')
        array = np.load(path).astype(np.float32, copy=False)
        if array.ndim == ndim - 1:
            array = array[None]
        if array.ndim != ndim or array.shape[0] != 1:
            raise ValueError(f'{path} has shape {array.shape}, expected {ndim} dims with batch 1')
        arrays.append(array)
    return arrays


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        manifest = json.loads(Path(args.manifest).read_text())
    except (OSError, ValueError) as exc:
        print(f'error: cannot read {args.manifest}: {exc}', file=sys.stderr)
        return 2
    raw = Path(args.raw)
    if not raw.is_dir():
        print(f'error: raw output folder not found: {raw}', file=sys.stderr)
        return 2
    paddle.set_device('cpu')
    params = InferenceParams.from_json(manifest['postprocess'])
    class_names = manifest['class_names']
    out_dir = Path(args.output)
    if not args.no_pictures:
        out_dir.mkdir(parents=True, exist_ok=True)
    records, done, failed = [], 0, 0
    for entry in manifest['images']:
        try:
            scores, kernels, mask_feat = read_outputs(raw, entry['name'])
        except ValueError as exc:
            print(f'skipped {entry["name"]}: {exc}', file=sys.stderr)
            failed += 1
            continue
        meta = ImageMeta(tuple(entry['orig_hw']), tuple(entry['resized_hw']), tuple(entry['padded_hw']))
        with paddle.no_grad():
            soft = postprocess_flat(scores, kernels, mask_feat, params)[0]
        result = paste_detections(soft, meta, params.mask_threshold)
        if not args.no_pictures:
            image = read_image(entry['source'])
            cv2.imwrite(str(out_dir / f'{Path(entry["file_name"]).stem}.jpg'),
                        draw_bgr(image, result, class_names, args.draw_threshold))
        if args.save_json:
            records.extend(coco_records(entry['image_id'], entry['file_name'], result, class_names))
        print(f'{entry["file_name"]}: {len(result)} instances')
        done += 1
    if args.save_json:
        write_json(sort_records(records), args.save_json)
        print(f'wrote {len(records)} results to {args.save_json}')
    print(f'{done} inputs post-processed, {failed} skipped')
    return 0 if done and not failed else 1


if __name__ == '__main__':
    raise SystemExit(main())
