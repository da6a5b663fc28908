"""A training run of ``train.py``: the run folder, the parts built from the config, resume,
and the Trainer with its hooks. Evaluation comes in from outside as functions
(``evaluate(trainer) -> COCO stats``, ``picture(trainer) -> [H, W, 3] uint8``), so training
does not depend on the inference package."""
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import paddle

from config import announce_config, format_settings, get_config, with_overrides
from config.errors import InputError
from config.sidecar import read_sidecar
from model.build import build_model
from model.runtime import setup
from model.training.components import load_pretrained, make_loader, make_optimizer
from model.training.cpu_sync_bn import convert_cpu_sync_bn
from model.training.distributed import process_rank
from model.training.ema import ModelEMA
from model.training.hooks import CheckpointHook, EvalHook, LogHook, VisualDLHook, open_visualdl
from model.training.run_log import RunLog
from model.training.schedule import scaled_lr
from model.training.state import find_checkpoint, load_training_state, read_state, save_training_state
from model.training.trainer import Schedule, Trainer, TrainState

RUN_FILES = ('last', 'best', 'train_log.csv', 'eval_log.csv', 'curves.png')


def claim_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A run folder belongs to one run: refuse to start a new run over another unless
    ``overwrite`` (which deletes the old run's checkpoints and logs)."""
    taken = [name for name in RUN_FILES if (out / name).exists()]
    if not taken or resume:
        return
    if not overwrite:
        raise InputError(f'{out} holds another run ({", ".join(taken)}): continue it with --resume auto, '
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


def take_over_options(args, out: Path) -> None:
    """Before a resumed run builds anything: the checkpoint must come from the same
    ``--config``, and without ``--opt`` on the command line the run's own overrides are
    used again (they are in its ``state.json``), so it continues the same model and schedule."""
    path = str(out / 'last') if args.resume == 'auto' else args.resume
    folder = find_checkpoint(path)
    meta = read_sidecar(str(folder / 'model.pdparams')) or {}
    if meta.get('config', args.config) != args.config:
        raise InputError(f"{folder} was trained with --config={meta['config']}, not --config={args.config}: "
                         f"resume with --config={meta['config']}")
    saved = read_state(folder)
    if not args.opt and saved.get('opt'):
        args.opt = list(saved['opt'])
        print(f"resuming with the run's --opt {' '.join(args.opt)}")


def make_hooks(args, cfg, trainer: Trainer, out: Path, log: RunLog, evaluate: Callable,
               picture: Optional[Callable] = None):
    """Logging, evaluation, checkpoint (and with ``--vdl-dir`` VisualDL) hooks of the main process."""
    def save(tag: str) -> None:
        save_training_state(out, tag, trainer.model, trainer.optimizer, asdict(trainer.state), args.config,
                            cfg, trainer.ema)

    evaluation = EvalHook(evaluate, save, log, args.eval_every)
    hooks = [LogHook(log, args.log_every, cfg.batch_size * trainer.world), evaluation]
    if args.vdl_dir:
        hooks.append(VisualDLHook(open_visualdl(args.vdl_dir), args.log_every, evaluation, picture))
    return hooks + [CheckpointHook(save, args.checkpoint_every)]


def prepare(args, world: int, evaluate: Callable, picture: Optional[Callable] = None):
    """The config, run folder and Trainer of this process (InputError, CheckpointError,
    ValueError or FileNotFoundError when something does not fit)."""
    out = Path(args.output or f'output/{get_config(args.config).__name__}')
    if args.resume:
        take_over_options(args, out)
    cfg = with_overrides(get_config(args.config), args.opt)
    device = setup(args.device, args.threads, processes=world)
    if world > 1:
        paddle.distributed.init_parallel_env()
    main_process = process_rank() == 0
    if main_process:
        claim_run_folder(out, bool(args.resume), args.overwrite)
    model, net, optimizer, loader, ema, scaler, base_lr = build_parts(args, cfg, world, device)
    if args.amp and scaler is None:
        print('note: --amp needs a GPU; training in float32')
    total_iters = cfg.epochs * len(loader)
    schedule = Schedule(base_lr, total_iters, len(loader), min(total_iters, args.max_iters or total_iters),
                        args.max_minutes, [e / cfg.epochs for e in cfg.lr_steps])
    trainer = Trainer(cfg, model, optimizer, loader, schedule, net=net, ema=ema, scaler=scaler, world=world,
                      state=TrainState(max_minutes=args.max_minutes, opt=list(args.opt)))
    log = RunLog(out)
    if args.resume:
        resume_state(args, out, trainer, log)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.txt').write_text(f'config {args.config}\n{format_settings(cfg)}\n')
        print(announce_config(args.config, cfg, args.opt, args.verbose, f'run folder {out}'))
        trainer.hooks = make_hooks(args, cfg, trainer, out, log, evaluate, picture)
    return trainer, out
