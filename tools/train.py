"""Train SOLOv2 on a COCO-format dataset.

    python train.py --config=9                       # the shapes config, from scratch
    python train.py --config=9 --resume auto         # continue exactly where it stopped
    python train.py --weights weights/shapes_r18.pdparams --opt dataset_dir=data --output output/mine
                                                     # fine-tune the shipped model on your classes (docs/own_data.md)
    python -m paddle.distributed.launch --gpus 0,1 train.py --config=0 --scale-lr
    # both CPU cores: one process each, batch 2 each (the config's batch 4 in total); one -1 a
    # process hides the GPUs, which the launcher would otherwise hand out (and fail with fewer)
    CUDA_VISIBLE_DEVICES=-1,-1 python -m paddle.distributed.launch --nproc_per_node 2 train.py --config=9 \
        --opt batch_size=2

Writes to ``output/<config>/``: ``last/`` and ``best/`` checkpoints (weights + sidecar,
optimizer, state), ``train_log.csv``, ``eval_log.csv``, ``curves.png`` and ``config.txt``.
"""
import argparse
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # before Paddle

with cli.interruptible_loading():  # Ctrl-C or SIGTERM while Paddle and the library load: one line
    from solov2.api.training import TrainOptions, TrainSummary, train
    from solov2.config.sidecar import sidecar_path
    from solov2.core.errors import InputError
    from solov2.model.checkpoint import CheckpointError
    from solov2.model.distributed import launched_processes
    from solov2.model.training.run import run_checkpoint
    from solov2.model.training.start import CLASS_SETTINGS
    from solov2.model.training.state import read_state


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.make_parser('Train SOLOv2 on COCO-format data.')
    cli.add_model_args(parser, weights_help='start a new run from this model (.pdparams, e.g. '
                       'weights/shapes_r18.pdparams or a converted published one): every tensor that fits is loaded, '
                       "the class head only when the classes agree; the run's sidecar records it")
    parser.add_argument('--classes', metavar='FILE',
                        help="the classes to train: a classes.txt or COCO file (default: the training "
                             "annotations' categories, unless --opt num_classes/class_names fix them)")
    parser.add_argument('--output', help='run folder (default output/<config class>)')
    parser.add_argument('--resume', help="checkpoint folder of this run to continue from, or 'auto' (<output>/last); "
                                         'a model to start from is --weights')
    parser.add_argument('--eval-every', type=cli.at_least(0), default=0, metavar='K',
                        help='evaluate mask AP on the val set every K iterations and keep the best '
                             '(0 = only at the end)')
    parser.add_argument('--checkpoint-every', type=cli.at_least(1), default=500, metavar='K',
                        help='save <output>/last every K iterations (default 500)')
    parser.add_argument('--log-every', type=cli.at_least(1), default=20, metavar='N',
                        help='log line every N iterations')
    parser.add_argument('--max-minutes', type=cli.at_least(0, whole=False), default=0,
                        help='training-time budget in minutes, counted across resumes (evaluation '
                             'included): stop (after saving) once it is spent; the LR schedule '
                             '(steps or cosine) is compressed into it when the epochs would take longer')
    parser.add_argument('--max-iters', type=cli.at_least(0), default=0, help='stop (after saving) at this iteration')
    parser.add_argument('--scale-lr', action='store_true',
                        help='scale base_lr linearly with the total batch (base_lr is for reference_batch)')
    parser.add_argument('--amp', nargs='?', const='fp16', default=False, choices=('fp16', 'bf16'),
                        help='mixed precision on a GPU: fp16 (the default, with loss scaling) or bf16 (Ampere or '
                             'newer); the loss is computed in float32')
    parser.add_argument('--sync-bn', action='store_true',
                        help='BN statistics over the batches of all data-parallel processes (GPU or CPU)')
    parser.add_argument('--vdl-dir', metavar='DIR',
                        help='also write VisualDL logs there (losses, LR, speed, AP, a validation picture): '
                             'visualdl --logdir DIR')
    parser.add_argument('--overwrite', action='store_true',
                        help='start a new run in an --output folder that holds another run (deletes it)')
    cli.add_runtime_args(parser)
    return parser.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    """The library's options from the command line (``--opt`` is ``overrides``)."""
    return TrainOptions(**cli.named_fields(TrainOptions, args), overrides=tuple(args.opt))


def check_flags(args: argparse.Namespace) -> None:
    """InputError in the command's words (the library's says ``config=``, ``overrides=``) where no config is
    named (neither --config nor a --weights file with its sidecar) or --classes and --opt both give the classes."""
    if args.config is None and not args.weights:
        raise InputError('pass --config N (a config number), or --weights a model whose sidecar .json names one')
    if args.config is None and Path(args.weights).is_file() and not sidecar_path(args.weights).is_file():
        raise InputError(f'{args.weights} has no sidecar .json naming its config — pass --config N as well')
    named = sorted({text.partition('=')[0].strip() for text in args.opt} & set(CLASS_SETTINGS))
    if args.classes and named:
        raise InputError(f"--classes and --opt {' and '.join(named)} both give the classes — use one")


def status_line(trainer, out) -> str:
    """What an interruption has left, and how the same command goes on from there."""
    folder = run_checkpoint(out)
    if folder is None:
        return (f'stopped at iteration {trainer.state.iteration}; no checkpoint saved yet in {out}: '
                'run the same command again to start over')
    try:
        saved = f' (iteration {read_state(folder)["iteration"]})'
    except CheckpointError:
        saved = ''
    return (f'stopped at iteration {trainer.state.iteration}; the last checkpoint is {folder}{saved}: '
            'continue with --resume auto')


def summary_line(summary: TrainSummary) -> str:
    """The run's last line: where it stopped, the best mask AP (percent) and the weights to use."""
    if summary.best_weights is None:
        return f'done at iteration {summary.iteration}; nothing scored; last checkpoint: {summary.last_checkpoint}'
    scored = ' (the EMA, which was scored)' if summary.best_weights.name == 'ema.pdparams' else ''
    return (f'done at iteration {summary.iteration}; best mask AP {summary.best_ap:.2f} '
            f'(iteration {summary.best_iteration}); weights: {summary.best_weights}{scored}')


@cli.command
def main(argv) -> int:
    args = parse_args(argv)
    check_flags(args)           # before the library, whose refusals say config=, overrides=
    options = options_from_args(args)
    cli.tune_for(options.device, options.threads, launched_processes().local_size, helper_threads=0)
    cli.set_status(lambda: 'stopped before the first step: run the same command again')
    summary = train(options, on_start=lambda trainer, out: cli.set_status(lambda: status_line(trainer, out)))
    if launched_processes().main:
        print(summary_line(summary))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
