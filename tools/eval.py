"""COCO mask AP (and box AP from the masks' extents) of a SOLOv2 checkpoint or export.

    python eval.py --weights output/ShapesR18/best/model.pdparams          # config 9's val set
    python eval.py --weights weights/shapes_r18.pdparams --backend dygraph  # no export
    python eval.py --backend openvino --precision int8 --model-dir export/shapes_int8
    python eval.py --config=3 --weights weights/enhance.pdparams --classwise --save-json out/segm.json
    python eval.py --config=3 --json-only out/segm.json                     # re-score saved results
    python eval.py --weights W --ann image_info_test-dev2017.json --images test2017 --predict-only out/test-dev.json

The val set is the config's unless --ann/--images are given; its categories are matched to the
model's classes by name. The set and its images are checked before anything is exported.
"""
import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # before Paddle

with cli.interruptible_loading():  # Ctrl-C or SIGTERM while Paddle and the library load: one line
    from solov2.api.training import val_set
    from solov2.config.sidecar import resolve_config
    from solov2.core.errors import InputError
    from solov2.data.coco import check_picture_sizes, load_coco, read_class_names
    from solov2.data.error_analysis import analyze_errors, error_table, write_error_charts
    from solov2.data.files import check_output_file, write_together
    from solov2.data.results import write_json
    from solov2.data.scoring import STAT_NAMES, coco_stats, matched_results, per_class_ap, run_cocoeval
    from solov2.model.distributed import Processes, launched_processes, start_processes
    from solov2.model.inference.backend_factory import checked_weights, open_backend
    from solov2.model.inference.pipeline import Predictor
    from solov2.model.inference.predicting import UnreadImages, evaluation_dataset, predict_coco
    from solov2.model.inference.spec import ModelSpec
    from solov2.model.runtime import default_device
    from solov2.model.training.components import SHAPES_HINT
    from solov2.model.training.hooks import open_visualdl


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser('COCO mask AP of a SOLOv2 checkpoint or exported model.')
    cli.add_inference_args(parser, fast_decode=True)
    parser.add_argument('--ann', help='COCO annotation file (default: the config val set)')
    parser.add_argument('--images', help='image folder (default: the config val images)')
    parser.add_argument('--classes', metavar='FILE',
                        help="the model's class names from a classes.txt (one per line) or a COCO file's "
                             'categories, when the weights name them otherwise (categories are matched by name)')
    parser.add_argument('--classwise', action='store_true',
                        help='per-class mask AP table; with --save-json also a bar chart, classwise_ap.png beside it')
    parser.add_argument('--chart', metavar='PATH',
                        help='write the per-class AP bar chart (PNG) to PATH (implies --classwise)')
    parser.add_argument('--save-json', metavar='PATH', help='write the COCO results to PATH')
    parser.add_argument('--json-only', metavar='PATH', help='score an existing results file, no model')
    parser.add_argument('--predict-only', metavar='PATH',
                        help='write results to PATH without scoring (test-dev: --ann is an image-info file)')
    parser.add_argument('--errors', metavar='DIR',
                        help='also write the COCO error analysis of the masks (C75, C50, localisation, class '
                             'confusion, background, missed: docs/evaluation.md) to DIR, charts and a table')
    parser.add_argument('--vdl-dir', metavar='DIR',
                        help='also write the AP numbers (and per-class AP with --classwise) as VisualDL scalars')
    parser.add_argument('--vdl-step', type=cli.at_least(0), default=0, metavar='N',
                        help='the step the VisualDL scalars are logged at, e.g. the training iteration (default 0)')
    return parser.parse_args(argv)


def format_stats(title: str, stats: dict) -> str:
    """The 12 COCO numbers as a two-row table; 'n/a' where pycocotools gives -1 (no object of that size)."""
    head = ' '.join(f'{name:>6}' for name in STAT_NAMES)
    return f'{title}\n{head}\n' + ' '.join(f'{100 * stats[name]:6.2f}' if stats[name] >= 0 else f'{"n/a":>6}'
                                          for name in STAT_NAMES)


def classwise_table(ap_by_category: dict, names: dict) -> str:
    rows = [f'{names[c]:<20} {100 * ap:6.2f}' if not math.isnan(ap) else f'{names[c]:<20}    n/a'
            for c, ap in ap_by_category.items()]
    return 'per-class mask AP\n' + '\n'.join(rows)


def load_records(args, number, backend, coco, dataset, ann: str, processes: Processes) -> tuple:
    """(result records, unread images [(image id, reason)]): read from --json-only, else predicted (by every
    process: all come back), the records of the images read kept when others could not be read."""
    if args.json_only:
        if Path(args.json_only).is_dir():
            raise InputError(f'--json-only {args.json_only} is a folder — give the results .json file')
        records = cli.read_json(args.json_only, 'give a file written by --save-json')
        return matched_results(coco, records, args.json_only), []
    counts = processes.counts(len(coco.getImgIds()))
    mine = counts[processes.rank]
    cli.set_status(lambda: f'stopped while predicting {mine} images of {ann}; nothing was written')
    bar = cli.Progress(mine, 'predict ')
    failed = []
    with Predictor(backend, fast_decode=args.fast_decode) as predictor:
        try:
            records = predict_coco(predictor, coco, str(dataset.image_dir), dataset.label_to_category_id,
                                   bar.update, processes, args.batch_size)
        except UnreadImages as exc:
            records, failed = exc.records, exc.failed
    bar.close()
    seconds = time.perf_counter() - bar.start
    who = f'process {processes.rank} of {processes.world}: ' if processes.world > 1 else ''
    print(f'{who}config {number} ({backend.label}): {mine} images in {seconds:.1f} s '
          f'({mine / seconds:.2f} img/s), {len(records)} instances' + (' in all' if who else ''))
    if who and processes.main:
        print(cli.shares_line(counts))
    return records, failed


def model_and_config(args, spec: ModelSpec, processes: Processes) -> tuple:
    """(config number, config, backend, annotation file, CocoDataset) of ``spec``, the set checked first."""
    if args.json_only:
        if spec.config is None and not spec.weights:
            raise InputError('--json-only needs --config N, the config the results were predicted with (its '
                             'classes and val set), or the --weights whose sidecar names it')
        number, cfg = resolve_config(spec.weights, spec.config, spec.overrides)
        return number, cfg, None, *evaluation_set(args, cfg, with_dataset=False)
    if not spec.weights and not spec.model_dir:
        raise InputError('pass --weights (or --model-dir with --backend onnx|openvino|inference, '
                         'or --json-only with a results file)')
    resolved = None if spec.model_dir else checked_weights(spec)
    checked = evaluation_set(args, resolved[1]) if resolved else None     # before an export, not after it
    number, backend = open_backend(spec, resolved=resolved, processes=processes, checked=True,
                                   progress=cli.ExportStages())
    return (number, backend.cfg, backend, *(checked or evaluation_set(args, backend.cfg)))


def evaluation_set(args, cfg, with_dataset: bool = True) -> tuple:
    """(annotation file, its CocoDataset when ``with_dataset``) of --ann/--images, else the config's val set."""
    ann, images = (args.ann, args.images) if args.ann else val_set(cfg)
    if not args.ann and not Path(ann).is_file():
        how = (f'make it with {SHAPES_HINT}' if cfg.dataset_dir == 'datasets/shapes'
               else f'put COCO val2017 under {Path(cfg.dataset_dir)}/ (docs/evaluation.md)')
        raise InputError(f"config {cfg.__name__}'s val set is not there ({ann}): pass --ann and --images, or {how}")
    return ann, evaluation_dataset(ann, images, cfg.class_names) if with_dataset else None


def check_arguments(args) -> None:
    """The output paths are no input and no folder; --images and --ann go together (but --json-only)."""
    for option, path in (('--save-json', args.save_json), ('--predict-only', args.predict_only),
                         ('--chart', args.chart)):
        if path:
            check_output_file(path, [p for p in (args.json_only, args.ann) if p], option)
    if args.images and not args.ann:
        raise InputError('--images needs --ann, the annotation file of those images '
                         "(without both, the config's own val set is used)")
    if args.ann and not args.images and not args.json_only:
        raise InputError('--ann needs --images, the folder of its images')


@cli.command
def main(argv) -> int:
    args = parse_args(argv)
    args.classwise = args.classwise or bool(args.chart)
    check_arguments(args)
    spec = cli.fetched(cli.model_spec(args))      # checked before a published name is fetched
    cli.tune_for(spec.device, spec.threads, launched_processes().local_size)
    if args.classes:
        spec = replace(spec, overrides=(*spec.overrides, f'class_names={tuple(read_class_names(args.classes))!r}'))
    processes = start_processes(spec.device or default_device())
    number, cfg, backend, ann, dataset = model_and_config(args, spec, processes)
    coco = load_coco(ann) if dataset is None else dataset.coco
    if dataset is None and args.images:          # --json-only with the pictures: their sizes read and checked
        check_picture_sizes(coco, args.images, ann)
    if not coco.getImgIds():
        raise InputError(f'{ann} lists no images — nothing to evaluate; give an annotation file with images')
    records, failed = load_records(args, number, backend, coco, dataset, ann, processes)
    if not processes.main:               # process 0 alone scores, prints the tables and writes the files
        return 2 if failed else 0
    for path in (args.save_json, args.predict_only):
        if path:
            write_json(records, path)
            print(f'wrote {len(records)} results to {path}')
    if failed:
        raise unread_images(failed, coco, len(records), args)
    if args.predict_only:
        return 0
    if not records:
        print('no detections: every AP is 0')
        return 0
    segm = run_cocoeval(coco, records, 'segm')
    mask_stats = coco_stats(segm)
    print(format_stats('mask AP (%)', mask_stats))
    print(format_stats('box AP from mask extents (%)', coco_stats(run_cocoeval(coco, records, 'bbox'))))
    names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
    by_class = per_class_ap(segm) if args.classwise else {}
    if args.classwise:
        print(classwise_table(by_class, names))
        write_chart(args, by_class, names)
    if args.errors:
        analysis = analyze_errors(coco, records)
        print(error_table(analysis))
        print(f'error analysis charts in {args.errors}: {len(write_error_charts(analysis, args.errors)) - 1} PNG')
    if args.vdl_dir:
        write_visualdl(args.vdl_dir, args.vdl_step, mask_stats, {names[c]: ap for c, ap in by_class.items()})
    return 0


def unread_images(failed: list, coco, written: int, args: argparse.Namespace) -> InputError:
    """The error of a set whose ``failed`` images (image id, reason) could not be read, each named on
    stderr first; ``written`` results of the others went to --predict-only or --save-json (if given)."""
    for image_id, reason in failed:
        print(f'unread: {coco.imgs[image_id]["file_name"]} (image {image_id}): {reason}', file=sys.stderr)
    path, total = args.predict_only or args.save_json, len(coco.getImgIds())
    kept = (f'the {written} results of the other {total - len(failed)} are in {path}' if path else
            'pass --save-json PATH to keep the results of the others')
    return InputError(f'{len(failed)} of {total} images could not be read (listed above)'
                      f'{"" if args.predict_only else ", so none was scored"}; {kept} '
                      '— fix or remove those pictures and run again')


def write_chart(args: argparse.Namespace, ap_by_category: dict, names: dict) -> None:
    """The per-class AP bar chart (PNG) to --chart, else beside --save-json; with neither, a hint."""
    if not (args.chart or args.save_json):
        print('(--chart PATH to save the bar chart)')
        return
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    chart = Path(args.chart) if args.chart else Path(args.save_json).with_name('classwise_ap.png')
    chart.parent.mkdir(parents=True, exist_ok=True)
    items = sorted(((names[c], ap) for c, ap in ap_by_category.items() if not math.isnan(ap)), key=lambda i: i[1])
    fig, axis = plt.subplots(figsize=(7, 0.25 * len(items) + 1.2))
    axis.barh([name for name, _ in items], [100 * ap for _, ap in items], color='#4c72b0')
    axis.set(xlabel='mask AP', xlim=(0, 100), title='per-class mask AP')
    fig.tight_layout()
    write_together([(chart, lambda tmp: fig.savefig(tmp, format='png', dpi=90))])     # whole or absent
    plt.close(fig)
    print(f'chart: {chart}')


def write_visualdl(logdir: str, step: int, stats: dict, ap_by_class: dict) -> None:
    """The mask AP numbers as ``eval/<name>``, per-class AP as ``eval_class/<class>`` scalars at ``step``."""
    with open_visualdl(logdir) as writer:
        for name, value in stats.items():
            writer.add_scalar(f'eval/{name}', float(value), step)
        for name, value in ap_by_class.items():
            if not math.isnan(value):
                writer.add_scalar(f'eval_class/{name}', float(value), step)
    print(f'VisualDL scalars in {logdir}')


if __name__ == '__main__':
    raise SystemExit(main())
