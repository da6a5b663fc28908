"""PaddleDetection's own training pieces, a reference for ``tools/dev/train_speed.py``
(``python tools/dev/benchmark.py --train``): its SOLOv2 targets (``Gt2Solov2Target``) and its
``ppdet.engine.Trainer`` with its reader, configured by a YAML written from ``READER_YAML``
(the paddledet wheel ships no configs). Only references import ``ppdet``."""
import time
import warnings

import numpy as np
import paddle
from ppdet.core.workspace import load_config
from ppdet.data.transform.batch_operators import Gt2Solov2Target
from ppdet.engine import Trainer
from ppdet.engine.callbacks import Callback

from solov2.data.masks import masks_to_boxes


def solov2_targets(num_grids, scale_ranges, sigma, per_image) -> dict:
    """PaddleDetection's ``Gt2Solov2Target`` of (masks [N, H, W] uint8, labels [N]) per image
    -> {'ins_label0', 'cate_label0', 'grid_order0', ..., 'fg_num': tensor [B, ...]}."""
    op = Gt2Solov2Target(num_grids=list(num_grids), scale_ranges=[list(r) for r in scale_ranges],
                         coord_sigma=sigma, sampling_ratio=4.0)
    samples = [{'image': np.zeros((3, *masks.shape[1:]), np.float32),
                'gt_bbox': masks_to_boxes(masks).astype(np.float32),
                'gt_class': np.asarray(labels, np.int32).reshape(-1, 1), 'gt_segm': masks,
                'is_crowd': np.zeros((len(masks), 1), np.int32), 'gt_poly': [None] * len(masks)}
               for masks, labels in per_image]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        samples = op(samples)
    keys = [k for k in samples[0] if k.startswith(('ins_label', 'cate_label', 'grid_order', 'fg_num'))]
    return {k: paddle.to_tensor(np.stack([sample[k] for sample in samples])) for k in keys}


READER_YAML = """architecture: SOLOv2
use_gpu: false
log_iter: 1
save_dir: {folder}/ppdet_run
snapshot_epoch: 1000
epoch: 1000
num_classes: 80
worker_num: {workers}
LearningRate:
  base_lr: {lr}
  schedulers:
  - !PiecewiseDecay {{gamma: 0.1, milestones: [1000000]}}
  - !LinearWarmup {{start_factor: 1.0, steps: 1}}
OptimizerBuilder:
  optimizer: {{momentum: {momentum}, type: Momentum}}
  regularizer: {{factor: {decay}, type: L2}}
TrainDataset:
  !COCODataSet
    image_dir: train
    anno_path: annotations/train.json
    dataset_dir: {root}
    data_fields: ['image', 'gt_bbox', 'gt_class', 'gt_poly', 'is_crowd']
TrainReader:
  sample_transforms:
  - Decode: {{}}
  - Poly2Mask: {{}}
  - Resize: {{interp: 1, target_size: [{size}, {size}], keep_ratio: True}}
  - RandomFlip: {{}}
  - NormalizeImage: {{is_scale: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
  - Permute: {{}}
  batch_transforms:
  - PadBatch: {{pad_to_stride: 32}}
  - Gt2Solov2Target: {{num_grids: {grids}, scale_ranges: {ranges}, coord_sigma: {sigma}}}
  batch_size: {batch}
  shuffle: true
  drop_last: true
"""


class _Enough(Exception):
    """Ends PaddleDetection's training loop after the iterations to time."""


def iteration_ends(model, config_path: str, iterations: int) -> list:
    """``time.perf_counter()`` at the end of each of the first ``iterations`` iterations of
    ``ppdet.engine.Trainer`` training ``model`` with the reader and optimizer of the YAML at
    ``config_path`` (``READER_YAML`` filled in)."""
    ppdet_cfg = load_config(config_path)
    ppdet_cfg['model'] = model
    trainer, ends = Trainer(ppdet_cfg, mode='train'), []

    class Timing(Callback):
        def on_step_end(self, status) -> None:
            ends.append(time.perf_counter())
            if len(ends) == iterations:
                raise _Enough

    trainer.register_callbacks([Timing(trainer)])
    try:
        trainer.train()
    except _Enough:
        pass
    return ends
