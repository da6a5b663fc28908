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
import csv
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import paddle

from config import format_settings, get_config, with_classes, with_overrides
from config.cli import add_runtime_args, make_parser
from data.augment import TrainTransform
from data.coco import CocoDataset, load_coco
from data.coco_eval import evaluate_segm, predict_coco
from data.loader import TrainDataset, build_train_loader, set_epoch
from model.build import build_model
from model.checkpoint import CheckpointError, load_paddle_params
from model.cpu_sync_bn import convert_cpu_sync_bn
from model.ema import ModelEMA
from model.losses import solov2_loss
from model.predictor import Predictor
from model.runtime import setup
from model.schedule import check_schedule, learning_rate, scaled_lr, training_progress
from model.targets import assign_targets, collate_targets
from model.train_state import find_checkpoint, load_training_state, save_training_state


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser('Train SOLOv2 on COCO-format data.')
    parser.add_argument('--config', type=int, required=True, help='config number')
    parser.add_argument('--output', help='run folder (default output/<config class>)')
    parser.add_argument('--resume', help="checkpoint folder to continue from, or 'auto' (<output>/last)")
    parser.add_argument('--eval-every', type=int, default=0, metavar='K',
                        help='evaluate mask AP on the val set every K iterations and keep the best (0 = only at the end)')
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
    add_runtime_args(parser)
    return parser.parse_args(argv)


class RunLog:
    """CSV logs of training and evaluation, and a PNG of both curves."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.train_csv, self.eval_csv = folder / 'train_log.csv', folder / 'eval_log.csv'

    @staticmethod
    def _append(path: Path, row: dict) -> None:
        new = not path.exists()
        with open(path, 'a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def train(self, row: dict) -> None:
        self._append(self.train_csv, row)

    def eval(self, row: dict) -> None:
        self._append(self.eval_csv, row)

    def plot(self) -> None:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        if self.train_csv.exists():
            rows = list(csv.DictReader(open(self.train_csv)))
            minutes = [float(r['minutes']) for r in rows]
            for key in ('loss', 'loss_ins', 'loss_cate'):
                left.plot(minutes, [float(r[key]) for r in rows], label=key)
            left.set(xlabel='training minutes', ylabel='loss', title='training loss')
            left.legend()
        if self.eval_csv.exists():
            rows = list(csv.DictReader(open(self.eval_csv)))
            minutes = [float(r['minutes']) for r in rows]
            for key in ('AP', 'AP50', 'AP75'):
                right.plot(minutes, [float(r[key]) for r in rows], marker='o', label=f'mask {key}')
            right.set(xlabel='training minutes', ylabel='COCO mask AP', title='validation', ylim=(0, 1))
            right.legend()
        fig.tight_layout()
        fig.savefig(self.folder / 'curves.png', dpi=80)
        plt.close(fig)


def load_pretrained(model, path: str) -> None:
    """Load a backbone-only (or full) checkpoint; say what was loaded."""
    params = load_paddle_params(path)
    own = model.state_dict()
    usable = {k: v for k, v in params.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise CheckpointError(f'{path} has no tensor that fits this model')
    model.set_state_dict(usable)
    skipped = len(params) - len(usable)
    print(f'pretrained: loaded {len(usable)} tensors from {path}'
          + (f', skipped {skipped} that do not fit' if skipped else ''))


def make_optimizer(cfg, model, base_lr: float):
    """SGD with momentum and L2 decay (as SOLO), or AdamW with decoupled decay."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    clip = paddle.nn.ClipGradByGlobalNorm(cfg.grad_clip) if cfg.grad_clip else None
    if cfg.optimizer == 'momentum':
        return paddle.optimizer.Momentum(learning_rate=base_lr, momentum=cfg.momentum, parameters=params,
                                         weight_decay=paddle.regularizer.L2Decay(cfg.weight_decay),
                                         grad_clip=clip)
    if cfg.optimizer == 'adamw':
        return paddle.optimizer.AdamW(learning_rate=base_lr, parameters=params,
                                      weight_decay=cfg.weight_decay, grad_clip=clip)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}' (expected 'momentum' or 'adamw')")


def make_loader(cfg, world_size: int):
    root = Path(cfg.dataset_dir)
    source = CocoDataset(str(root / cfg.train_ann), str(root / cfg.train_images),
                         class_names=list(cfg.class_names), keep_empty=cfg.keep_empty_images)
    transform = TrainTransform(cfg.train_shorts, cfg.train_max, flip_prob=cfg.flip_prob,
                               colour_strength=cfg.colour_strength, crop_prob=cfg.crop_prob)
    target_fn = functools.partial(assign_targets, num_grids=cfg.num_grids,
                                  scale_ranges=cfg.scale_ranges, sigma=cfg.sigma)
    return build_train_loader(TrainDataset(source, transform, seed=cfg.seed), cfg.batch_size,
                              target_fn, collate_targets, cfg.num_workers, seed=cfg.seed,
                              distributed=world_size > 1)


def evaluate(cfg, model, ema) -> dict:
    """Mask AP of the (EMA) weights on the config's val set."""
    root = Path(cfg.dataset_dir)
    coco = load_coco(str(root / cfg.val_ann))
    source = CocoDataset(str(root / cfg.val_ann), str(root / cfg.val_images),
                         class_names=list(cfg.class_names))
    if ema is not None:
        raw = {k: v.numpy() for k, v in model.state_dict().items()}
        model.set_state_dict(ema.state_dict())
    model.eval()
    try:
        records = predict_coco(Predictor.for_model(model, cfg), coco, str(root / cfg.val_images),
                               source.label_to_category_id)
    finally:
        model.train()
        if ema is not None:
            model.set_state_dict(raw)
    return evaluate_segm(coco, records)


def mean_positives(targets, world: int):
    """(mask positives, positive cells) of the batch, averaged over the data-parallel
    processes: SOLO's two loss normalisers. None with one process (the batch's own)."""
    if world == 1:
        return None
    total = paddle.to_tensor([float(targets.num_masks), float(targets.num_positives)], dtype='float64')
    paddle.distributed.all_reduce(total)
    return tuple((total / world).tolist())


def rank0_minutes(minutes: float, world: int) -> float:
    """Rank 0's training minutes on every rank (each keeps its own clock), so that the
    time-based LR schedule and the stop agree across data-parallel processes."""
    if world == 1:
        return minutes
    shared = paddle.to_tensor([minutes], dtype='float64')
    paddle.distributed.broadcast(shared, src=0)
    return shared.item()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = with_overrides(get_config(args.config), args.opt)
    except (KeyError, ValueError) as exc:
        print(f'error: {exc.args[0]}', file=sys.stderr)
        return 2
    cfg = with_classes(cfg, cfg.num_classes, cfg.class_names)
    world = paddle.distributed.get_world_size()
    device = setup(args.device, args.threads, processes=world)
    rank = paddle.distributed.get_rank()
    if world > 1:
        paddle.distributed.init_parallel_env()
    main_process = rank == 0
    out = Path(args.output or f'output/{cfg.__name__}')
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.txt').write_text(f'config {args.config}\n{format_settings(cfg)}\n')
        print(f'config {args.config}: {cfg.__name__}\n{format_settings(cfg)}')
    amp = args.amp and device == 'gpu'
    if args.amp and not amp:
        print('note: --amp needs a GPU; training in float32')

    paddle.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_model(cfg)
    try:
        if cfg.pretrained:
            load_pretrained(model, cfg.pretrained)
        loader = make_loader(cfg, world)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if args.sync_bn and world > 1:
        model = (paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model) if device == 'gpu'
                 else convert_cpu_sync_bn(model))
    net = paddle.DataParallel(model) if world > 1 else model
    total_batch = cfg.batch_size * world
    base_lr = scaled_lr(cfg.base_lr, cfg.reference_batch, total_batch) if args.scale_lr else cfg.base_lr
    per_epoch = len(loader)
    total_iters = cfg.epochs * per_epoch
    step_points = [e / cfg.epochs for e in cfg.lr_steps]
    try:
        optimizer = make_optimizer(cfg, model, base_lr)
        check_schedule(cfg.lr_schedule)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_ramp) if cfg.ema_decay else None
    scaler = paddle.amp.GradScaler() if amp else None

    state = {'iteration': 0, 'minutes': 0.0, 'best_ap': -1.0, 'best_iteration': -1}
    if args.resume:
        path = str(out / 'last') if args.resume == 'auto' else args.resume
        try:
            state = load_training_state(path, model, optimizer, ema)
        except CheckpointError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        print(f"resumed from {find_checkpoint(path)} at iteration {state['iteration']}")
    log = RunLog(out)

    def save(tag: str) -> None:
        state['ema_updates'] = ema.updates if ema else 0
        save_training_state(out, tag, model, optimizer, state, args.config, cfg.class_names, ema)

    def run_eval() -> None:
        stats = evaluate(cfg, model, ema)
        log.eval({'iteration': state['iteration'], 'minutes': round(state['minutes'], 2),
                  **{k: round(v, 4) for k, v in stats.items()}})
        print(f"eval @ {state['iteration']}: mask AP {stats['AP']:.3f} AP50 {stats['AP50']:.3f} "
              f"AP75 {stats['AP75']:.3f}")
        if stats['AP'] > state['best_ap']:
            state['best_ap'], state['best_iteration'] = stats['AP'], state['iteration']
            save('best')
        log.plot()

    stop_at = min(total_iters, args.max_iters) if args.max_iters else total_iters
    print(f'{per_epoch} iterations per epoch, {total_iters} in total, batch {total_batch}, '
          f'lr {base_lr:g}')
    net.train()
    window, window_start = [], time.perf_counter()
    session_start, minutes_before = time.perf_counter(), state['minutes']
    while state['iteration'] < stop_at:
        epoch, offset = divmod(state['iteration'], per_epoch)
        discard = set_epoch(loader, epoch, offset)
        for batch in loader:
            if discard:
                discard -= 1
                continue
            iteration = state['iteration']
            progress = training_progress(iteration, total_iters, state['minutes'], args.max_minutes)
            lr = learning_rate(cfg.lr_schedule, iteration, progress, base_lr, cfg.warmup_iters,
                               cfg.warmup_ratio, step_points, cfg.lr_gamma)
            optimizer.set_lr(lr)
            paddle.seed(cfg.seed * 1000003 + iteration)     # DropBlock etc.: reproducible on resume
            with paddle.amp.auto_cast(enable=amp, level='O1'):
                outputs = net(batch['images'])
            losses = solov2_loss(outputs, batch['targets'], cfg.ins_loss_weight, cfg.focal_alpha,
                                 cfg.focal_gamma, mean_positives(batch['targets'], world))
            if not np.isfinite(float(losses['loss'])):
                print(f'error: loss is {float(losses["loss"])} at iteration {iteration}; '
                      f'last checkpoint kept in {out}/last', file=sys.stderr)
                return 1
            if scaler:
                scaler.scale(losses['loss']).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                losses['loss'].backward()
                optimizer.step()
            optimizer.clear_grad()
            if ema:
                ema.update(model)
            state['iteration'] = iteration + 1
            state['minutes'] = rank0_minutes(minutes_before + (time.perf_counter() - session_start) / 60,
                                             world)
            window.append({k: float(v) for k, v in losses.items()})
            done = state['iteration']
            if main_process and (done % args.log_every == 0 or done == stop_at):
                elapsed = time.perf_counter() - window_start
                speed = len(window) * total_batch / elapsed
                mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                eta = (stop_at - done) * elapsed / len(window)
                if args.max_minutes:
                    eta = min(eta, max(args.max_minutes - state['minutes'], 0.0) * 60)
                print(f"iter {done}/{stop_at} epoch {epoch + 1} lr {lr:.5f} loss {mean['loss']:.3f} "
                      f"(ins {mean['loss_ins']:.3f} cate {mean['loss_cate']:.3f}) "
                      f"{speed:.1f} img/s eta {time.strftime('%H:%M:%S', time.gmtime(eta))}", flush=True)
                log.train({'iteration': done, 'epoch': epoch + 1, 'minutes': round(state['minutes'], 3),
                           'lr': lr, **{k: round(v, 5) for k, v in mean.items()},
                           'images_per_s': round(speed, 2)})
                window, window_start = [], time.perf_counter()
            timed_out = args.max_minutes and state['minutes'] >= args.max_minutes
            if main_process and (done % args.checkpoint_every == 0 or done == stop_at or timed_out):
                save('last')
            if main_process and args.eval_every and done % args.eval_every == 0:
                run_eval()
            if done >= stop_at or timed_out:
                break
        else:
            continue
        break
    if main_process:
        save('last')
        if not args.eval_every or state['iteration'] % args.eval_every:
            run_eval()
        scored = 'ema.pdparams (the EMA, which was scored)' if ema else 'model.pdparams'
        print(f"done at iteration {state['iteration']}; best mask AP {state['best_ap']:.3f} "
              f"(iteration {state['best_iteration']}); weights: {out}/best/{scored}")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
