"""Train SOLOv2 on a COCO-format dataset.

    python train.py --config=9                       # the shapes config, from scratch
    python train.py --config=9 --resume auto         # continue exactly where it stopped
    python -m paddle.distributed.launch --gpus 0,1 train.py --config=0 --scale-lr
    # both CPU cores: one process each, batch 2 each (the config's batch 4 in total)
    python -m paddle.distributed.launch --nproc_per_node 2 train.py --config=9 --opt batch_size=2

Writes to ``output/<config>/``: ``last/`` and ``best/`` checkpoints (weights + sidecar,
optimizer, state), ``train_log.csv``, ``eval_log.csv``, ``curves.png`` and ``config.txt``.
"""
import argparse
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import paddle

from config import format_settings, get_config, with_classes, with_overrides
from config.cli import add_runtime_args, make_parser
from data.coco_eval import evaluate_segm
from model.build import build_model
from model.checkpoint import CheckpointError
from model.inference.evaluation import predict_coco_dataset
from model.inference.predictor import Predictor
from model.runtime import setup
from model.training.components import evaluation_weights, load_pretrained, make_loader, make_optimizer
from model.training.cpu_sync_bn import convert_cpu_sync_bn
from model.training.ema import ModelEMA
from model.training.hooks import CheckpointHook, EvalHook, LogHook
from model.training.run_log import RunLog
from model.training.schedule import check_schedule, scaled_lr
from model.training.state import find_checkpoint, load_training_state, save_training_state
from model.training.trainer import NonFiniteLoss, Schedule, Trainer, TrainState

RUN_FILES = ('last', 'best', 'train_log.csv', 'eval_log.csv', 'curves.png')


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('Train SOLOv2 on COCO-format data.')
    parser.add_argument('--config', type=int, required=True, help='config number')
    parser.add_argument('--output', help='run folder (default output/<config class>)')
    parser.add_argument('--resume', help="checkpoint folder to continue from, or 'auto' (<output>/last)")
    parser.add_argument('--eval-every', type=int, default=0, metavar='K',
                        help='evaluate mask AP on the val set every K iterations and keep the best '
                             '(0 = only at the end)')
    parser.add_argument('--checkpoint-every', type=int, default=500, metavar='K',
                        help='save <output>/last every K iterations (default 500)')
    parser.add_argument('--log-every', type=int, default=20, metavar='N', help='log line every N iterations')
    parser.add_argument('--max-minutes', type=float, default=0,
                        help='training-time budget in minutes, counted across resumes (evaluation '
                             'included): stop (after saving) once it is spent; the LR schedule '
                             '(steps or cosine) is compressed into it when the epochs would take longer')
    parser.add_argument('--max-iters', type=int, default=0, help='stop (after saving) at this iteration')
    parser.add_argument('--scale-lr', action='store_true',
                        help='scale base_lr linearly with the total batch (base_lr is for reference_batch)')
    parser.add_argument('--amp', action='store_true', help='mixed precision (float16 on GPU)')
    parser.add_argument('--sync-bn', action='store_true',
                        help='BN statistics over the batches of all data-parallel processes (GPU or CPU)')
    parser.add_argument('--overwrite', action='store_true',
                        help='start a new run in an --output folder that holds another run (deletes it)')
    add_runtime_args(parser)
    return parser.parse_args(argv)


class UsageError(Exception):
    """A bad command line or set-up: one line on stderr, exit code 2."""


def claim_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A run folder belongs to one run: refuse to start a new run over another unless
    ``overwrite`` (which deletes the old run's checkpoints and logs)."""
    taken = [name for name in RUN_FILES if (out / name).exists()]
    if not taken or resume:
        return
    if not overwrite:
        raise UsageError(f'{out} holds another run ({", ".join(taken)}): continue it with --resume auto, '
                         'pick another --output, or pass --overwrite to start over')
    for name in taken:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def build_parts(args, cfg, world: int, device: str):
    """(model, net, optimizer, loader, ema, scaler, base_lr) of a run."""
    paddle.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_model(cfg)
    if cfg.pretrained:
        print(load_pretrained(model, cfg.pretrained))
    loader = make_loader(cfg, world)
    if args.sync_bn and world > 1:
        model = (paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model) if device == 'gpu'
                 else convert_cpu_sync_bn(model))
    net = paddle.DataParallel(model) if world > 1 else None
    base_lr = scaled_lr(cfg.base_lr, cfg.reference_batch, cfg.batch_size * world) if args.scale_lr else cfg.base_lr
    check_schedule(cfg.lr_schedule)
    optimizer = make_optimizer(cfg, model, base_lr)
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_ramp) if cfg.ema_decay else None
    scaler = paddle.amp.GradScaler() if args.amp and device == 'gpu' else None
    return model, net, optimizer, loader, ema, scaler, base_lr


def resume_state(args, out: Path, trainer: Trainer, log: RunLog) -> None:
    """Restore weights, optimizer, EMA and state from --resume; the time budget of the run
    carries over unless --max-minutes is given, and log rows past the checkpoint are dropped."""
    path = str(out / 'last') if args.resume == 'auto' else args.resume
    saved = load_training_state(path, trainer.model, trainer.optimizer, trainer.ema)
    trainer.state = TrainState.from_json(saved)
    if not args.max_minutes and trainer.state.max_minutes:
        trainer.schedule.max_minutes = trainer.state.max_minutes
    trainer.state.max_minutes = trainer.schedule.max_minutes
    log.truncate_after(trainer.state.iteration)
    print(f'resumed from {find_checkpoint(path)} at iteration {trainer.state.iteration}'
          + (f' (budget {trainer.schedule.max_minutes:g} min)' if trainer.schedule.max_minutes else ''))


def make_hooks(args, cfg, trainer: Trainer, out: Path, log: RunLog):
    """Logging, evaluation and checkpoint hooks of the main process."""
    def save(tag: str) -> None:
        save_training_state(out, tag, trainer.model, trainer.optimizer, asdict(trainer.state), args.config,
                            cfg.class_names, trainer.ema)

    def evaluate(trainer: Trainer) -> dict:
        root = Path(cfg.dataset_dir)
        with evaluation_weights(trainer.model, trainer.ema) as model:
            coco, records = predict_coco_dataset(Predictor.for_model(model, cfg), str(root / cfg.val_ann),
                                                 str(root / cfg.val_images))
        return evaluate_segm(coco, records)

    return [LogHook(log, args.log_every, cfg.batch_size * trainer.world),
            EvalHook(evaluate, save, log, args.eval_every), CheckpointHook(save, args.checkpoint_every)]


def prepare(args, world: int):
    """The config, run folder and Trainer of this process (UsageError, CheckpointError,
    ValueError or FileNotFoundError when something does not fit)."""
    cfg = with_overrides(get_config(args.config), args.opt)
    cfg = with_classes(cfg, cfg.num_classes, cfg.class_names)
    device = setup(args.device, args.threads, processes=world)
    if world > 1:
        paddle.distributed.init_parallel_env()
    out = Path(args.output or f'output/{cfg.__name__}')
    main_process = paddle.distributed.get_rank() == 0
    if main_process:
        claim_run_folder(out, bool(args.resume), args.overwrite)
    model, net, optimizer, loader, ema, scaler, base_lr = build_parts(args, cfg, world, device)
    if args.amp and scaler is None:
        print('note: --amp needs a GPU; training in float32')
    total_iters = cfg.epochs * len(loader)
    schedule = Schedule(base_lr, total_iters, len(loader), min(total_iters, args.max_iters or total_iters),
                        args.max_minutes, [e / cfg.epochs for e in cfg.lr_steps])
    trainer = Trainer(cfg, model, optimizer, loader, schedule, net=net, ema=ema, scaler=scaler, world=world,
                      state=TrainState(max_minutes=args.max_minutes))
    log = RunLog(out)
    if args.resume:
        resume_state(args, out, trainer, log)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.txt').write_text(f'config {args.config}\n{format_settings(cfg)}\n')
        print(f'config {args.config}: {cfg.__name__}\n{format_settings(cfg)}')
        trainer.hooks = make_hooks(args, cfg, trainer, out, log)
    return trainer, out


def main(argv=None) -> int:
    args = parse_args(argv)
    world = paddle.distributed.get_world_size()
    try:
        trainer, out = prepare(args, world)
    except (UsageError, CheckpointError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f'error: {exc.args[0] if isinstance(exc, KeyError) else exc}', file=sys.stderr)
        return 2
    schedule = trainer.schedule
    print(f'{schedule.per_epoch} iterations per epoch, {schedule.total_iters} in total, '
          f'batch {trainer.cfg.batch_size * world}, lr {schedule.base_lr:g}')
    try:
        state = trainer.run()
    except NonFiniteLoss as exc:
        print(f'error: {exc}; nothing was saved after the last healthy checkpoint {out}/last '
              '(lower base_lr or check the data)', file=sys.stderr)
        return 1
    if paddle.distributed.get_rank() == 0:
        scored = 'ema.pdparams (the EMA, which was scored)' if trainer.ema else 'model.pdparams'
        print(f'done at iteration {state.iteration}; best mask AP {state.best_ap:.3f} '
              f'(iteration {state.best_iteration}); weights: {out}/best/{scored}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
