"""COCO mask AP (and box AP from the masks' extents) of a SOLOv2 checkpoint.

    python eval.py --weights output/ShapesR18/best/model.pdparams          # config 9's val set
    python eval.py --config=3 --weights weights/enhance.pdparams --classwise --save-json out/segm.json
    python eval.py --config=3 --json-only out/segm.json                     # re-score saved results
    python eval.py --weights W --ann image_info_test-dev2017.json --images test2017 --predict-only out/test-dev.json

The config is taken from the weights' sidecar unless --config is given; the val set is the
config's (``dataset_dir``/``val_ann``/``val_images``) unless --ann/--images are given.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

from config.cli import add_model_args, add_runtime_args, make_parser, resolve_config
from data.coco import CocoDataset, load_coco
from data.coco_eval import STAT_NAMES, per_class_ap, run_cocoeval
from data.results import write_json
from model.checkpoint import CheckpointError
from model.inference.evaluation import predict_coco
from model.inference.predictor import Predictor
from model.runtime import setup


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('COCO mask AP of a SOLOv2 checkpoint.')
    add_model_args(parser)
    parser.add_argument('--ann', help='COCO annotation file (default: the config val set)')
    parser.add_argument('--images', help='image folder (default: the config val images)')
    parser.add_argument('--classwise', action='store_true',
                        help='per-class mask AP table and bar chart (classwise_ap.png beside --save-json or in .)')
    parser.add_argument('--save-json', metavar='PATH', help='write the COCO results to PATH')
    parser.add_argument('--json-only', metavar='PATH', help='score an existing results file, no model')
    parser.add_argument('--predict-only', metavar='PATH',
                        help='write results to PATH without scoring (test-dev: --ann is an image-info file)')
    add_runtime_args(parser)
    return parser.parse_args(argv)


def format_stats(title: str, stats: dict) -> str:
    """The 12 COCO numbers as a two-row table."""
    head = ' '.join(f'{name:>6}' for name in STAT_NAMES)
    values = ' '.join(f'{100 * stats[name]:6.2f}' for name in STAT_NAMES)
    return f'{title}\n{head}\n{values}'


def classwise_table(ap_by_category: dict, names: dict) -> str:
    rows = [f'{names[c]:<20} {100 * ap:6.2f}' if not math.isnan(ap) else f'{names[c]:<20}    n/a'
            for c, ap in ap_by_category.items()]
    return 'per-class mask AP\n' + '\n'.join(rows)


def plot_classwise(ap_by_category: dict, names: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    items = sorted(((names[c], ap) for c, ap in ap_by_category.items() if not math.isnan(ap)),
                   key=lambda item: item[1])
    fig, axis = plt.subplots(figsize=(7, 0.25 * len(items) + 1.2))
    axis.barh([name for name, _ in items], [100 * ap for _, ap in items], color='#4c72b0')
    axis.set(xlabel='mask AP', xlim=(0, 100), title='per-class mask AP')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        number, cfg = resolve_config(args)
        root = Path(cfg.dataset_dir)
        ann = args.ann or str(root / cfg.val_ann)
        images = args.images or str(root / cfg.val_images)
        coco = load_coco(ann)
        if args.json_only:
            records = json.loads(Path(args.json_only).read_text())
        else:
            if not args.weights:
                raise ValueError('pass --weights (or --json-only with a results file)')
            predictor = Predictor(cfg, args.weights, setup(args.device, args.threads))
            dataset = CocoDataset(ann, images, class_names=list(predictor.class_names))
            began = time.perf_counter()
            records = predict_coco(predictor, coco, images, dataset.label_to_category_id, progress=True)
            seconds = time.perf_counter() - began
            print(f'config {number}: {len(coco.getImgIds())} images in {seconds:.1f} s '
                  f'({len(coco.getImgIds()) / seconds:.2f} img/s), {len(records)} instances')
    except (CheckpointError, KeyError, ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    for path in (args.save_json, args.predict_only):
        if path:
            write_json(records, path)
            print(f'wrote {len(records)} results to {path}')
    if args.predict_only:
        return 0
    if not records:
        print('no detections: every AP is 0')
        return 0
    segm = run_cocoeval(coco, records, 'segm')
    print(format_stats('mask AP (%)', dict(zip(STAT_NAMES, segm.stats))))
    print(format_stats('box AP from mask extents (%)',
                       dict(zip(STAT_NAMES, run_cocoeval(coco, records, 'bbox').stats))))
    if args.classwise:
        names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
        by_class = per_class_ap(segm)
        print(classwise_table(by_class, names))
        chart = Path(args.save_json).with_name('classwise_ap.png') if args.save_json else Path('classwise_ap.png')
        plot_classwise(by_class, names, chart)
        print(f'chart: {chart}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
