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
import functools
import sys
from pathlib import Path

from tools.cli import add_runtime_args, make_parser, run_command, set_status  # before Paddle

# isort: split
from data.coco import load_coco
from data.coco_eval import evaluate_segm
from data.transforms import read_image
from data.visualize import draw_instances
from model.checkpoint import CheckpointError
from model.inference.evaluation import predict_coco_dataset
from model.inference.predictor import Predictor
from model.training.components import evaluation_weights
from model.training.distributed import process_rank, world_size
from model.training.run import prepare
from model.training.trainer import NonFiniteLoss


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
    parser.add_argument('--vdl-dir', metavar='DIR',
                        help='also write VisualDL logs there (losses, LR, speed, AP, a validation picture): '
                             'visualdl --logdir DIR')
    parser.add_argument('--overwrite', action='store_true',
                        help='start a new run in an --output folder that holds another run (deletes it)')
    add_runtime_args(parser)
    return parser.parse_args(argv)


def val_set(cfg):
    """(annotation file, image folder) of the config's validation set."""
    root = Path(cfg.dataset_dir)
    return str(root / cfg.val_ann), str(root / cfg.val_images)


def evaluate(trainer) -> dict:
    """COCO mask AP of the trainer's (EMA) weights on the config's validation set."""
    with evaluation_weights(trainer.model, trainer.ema) as model:
        coco, records = predict_coco_dataset(Predictor.for_model(model, trainer.cfg), *val_set(trainer.cfg))
    return evaluate_segm(coco, records)


@functools.lru_cache(maxsize=4)
def first_val_image(ann: str, images: str) -> str:
    """Path of the validation set's first image (by id); the annotation file is read once."""
    coco = load_coco(ann)
    return str(Path(images) / coco.imgs[min(coco.getImgIds())]['file_name'])


def val_picture(trainer):
    """The first validation image with the (EMA) model's instances drawn, [H, W, 3] uint8 RGB."""
    image = read_image(first_val_image(*val_set(trainer.cfg)), trainer.cfg.max_image_pixels)
    with evaluation_weights(trainer.model, trainer.ema) as model:
        result = Predictor.for_model(model, trainer.cfg)(image)
    return draw_instances(image, result.masks, result.labels, result.scores, trainer.cfg.class_names, 0.3,
                          result.boxes)


def main(argv=None) -> int:
    """The command: errors end in one line (``tools.cli.run_command``)."""
    return run_command(run, argv)


def run(argv) -> int:
    args = parse_args(argv)
    world = world_size()
    trainer, out = prepare(args, world, evaluate, val_picture)
    set_status(lambda: f'stopped at iteration {trainer.state.iteration}; ' + (
        f'the last checkpoint is {out}/last (continue with --resume auto)' if (out / 'last').is_dir()
        else f'no checkpoint saved yet in {out}'))
    schedule = trainer.schedule
    print(f'{schedule.per_epoch} iterations per epoch, {schedule.total_iters} in total, '
          f'batch {trainer.cfg.batch_size * world}, lr {schedule.base_lr:g}')
    try:
        state = trainer.run()
    except (NonFiniteLoss, CheckpointError) as exc:
        kept = f'the last healthy checkpoint is {out}/last' if (out / 'last').is_dir() else 'no checkpoint was saved'
        print(f'error: {exc}; {kept} (lower base_lr or check the data)', file=sys.stderr)
        return 1
    if process_rank() == 0:
        scored = 'ema.pdparams (the EMA, which was scored)' if trainer.ema else 'model.pdparams'
        print(f'done at iteration {state.iteration}; best mask AP {state.best_ap:.3f} '
              f'(iteration {state.best_iteration}); weights: {out}/best/{scored}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
