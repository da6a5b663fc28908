"""SOLOv2 training losses (paddle).

Labels follow ``model.training.targets``: 0..C-1 foreground class, -1 background.

* category: sigmoid focal loss (alpha 0.25, gamma 2) summed over every cell of
  every level and image, divided by ``num_positives + 1`` (foreground cells,
  SOLO's ``num_ins``);
* instance: Dice loss of each positive's predicted mask (its kernel applied as a
  dynamic 1x1 conv to its image's mask features), averaged over all positives of
  all levels (the SOLO / AdelaiDet convention), times ``ins_weight`` (3).
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from solov2.model.training.targets import BatchTargets

DICE_EPS = 0.001


def sigmoid_focal_loss(logits: paddle.Tensor, labels: paddle.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> paddle.Tensor:
    """Sum over M and C of -alpha * t * (1-p)^gamma * log(p) - (1-alpha) * (1-t) * p^gamma * log(1-p)
    for ``logits`` [M, C], p = sigmoid(logits), t the one-hot of ``labels`` [M] int64 (0..C-1; -1
    background: all C channels negative)."""
    num_classes = logits.shape[1]
    target = F.one_hot(labels.astype('int64') + 1, num_classes + 1)[:, 1:].astype(logits.dtype)
    prob = F.sigmoid(logits)
    log_p = F.log_sigmoid(logits)          # log(p), stable
    log_not_p = F.log_sigmoid(-logits)     # log(1 - p), stable
    pos = -alpha * target * (1 - prob) ** gamma * log_p
    neg = -(1 - alpha) * (1 - target) * prob ** gamma * log_not_p
    return (pos + neg).sum()


def dice_loss(pred_logits: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
    """[P, Hf, Wf] logits and 0/1 targets -> [P]:
    1 - 2 sum(p t) / (sum(p^2) + 0.001 + sum(t^2) + 0.001), p = sigmoid(logits)."""
    prob = F.sigmoid(pred_logits).flatten(1)
    target = targets.astype(prob.dtype).flatten(1)
    inter = (prob * target).sum(axis=1)
    denom = (prob * prob).sum(axis=1) + DICE_EPS + (target * target).sum(axis=1) + DICE_EPS
    return 1 - 2 * inter / denom


def gather_positive_masks(kernels: Sequence[paddle.Tensor], mask_feat: paddle.Tensor,
                          targets: BatchTargets) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """(pred_logits [P, Hf, Wf], target [P, Hf, Wf] float) of every positive of ``targets``, level
    by level in its order (P may be 0), from ``kernels`` (per level [B, E, S, S]) and ``mask_feat``
    [B, E, Hf, Wf]: one matmul per image, the positives grouped by image, then put back in order; the
    targets go to the device as uint8 and are cast there."""
    batch, channels, feat_h, feat_w = mask_feat.shape
    flat_kernels, images = [], []
    for level, kernel in enumerate(kernels):
        if len(targets.ins_cells[level]) == 0:
            continue
        cells_per_image = kernel.shape[2] * kernel.shape[3]
        table = kernel.transpose([0, 2, 3, 1]).reshape([-1, channels])      # [B*S*S, E]
        rows = targets.ins_images[level] * cells_per_image + targets.ins_cells[level]
        flat_kernels.append(paddle.gather(table, paddle.to_tensor(rows, dtype='int64')))
        images.append(targets.ins_images[level])
    if not flat_kernels:
        empty = paddle.zeros([0, feat_h, feat_w], mask_feat.dtype)
        return empty, empty
    flat_kernels = paddle.concat(flat_kernels)                                # [P, E]
    images = np.concatenate(images)
    target = np.concatenate([m for m in targets.ins_masks if len(m)])
    order = np.argsort(images, kind='stable')
    grouped = paddle.gather(flat_kernels, paddle.to_tensor(order, dtype='int64'))
    feats = mask_feat.flatten(2)                                              # [B, E, Hf*Wf]
    preds, start = [], 0
    for b, count in enumerate(np.bincount(images, minlength=batch)):
        if count:
            preds.append(paddle.matmul(grouped[start:start + count], feats[b]))
            start += count
    preds = paddle.gather(paddle.concat(preds), paddle.to_tensor(np.argsort(order), dtype='int64'))
    return preds.reshape([-1, feat_h, feat_w]), paddle.to_tensor(target).astype(mask_feat.dtype)


def _float32(tensor: paddle.Tensor) -> paddle.Tensor:
    """``tensor`` in float32 (a cast only when it is not): under mixed precision the heads give
    float16 or bfloat16, and the loss runs in float32 (the Dice sums over Hf x Wf values
    exceed float16's range), as mmdetection's ``force_fp32`` does."""
    return tensor if tensor.dtype == paddle.float32 else tensor.astype('float32')


def solov2_loss(outputs: Dict, targets: BatchTargets, ins_weight: float = 3.0, alpha: float = 0.25, gamma: float = 2.0,
                positives: Optional[Tuple[float, float]] = None) -> Dict[str, paddle.Tensor]:
    """SOLOv2 loss of a batch: ``outputs`` the model's forward dict (``cate_logits`` [B, C, S, S] x L,
    ``kernels`` [B, E, S, S] x L, ``mask_feat`` [B, E, Hf, Wf], cast to float32 here), ``targets``
    ``collate_targets`` of the batch, ``positives`` (mask positives, positive cells) dividing the dice
    and (+ 1) category terms (default this batch's; data-parallel training passes their means) ->
    {'loss_ins', 'loss_cate', 'loss'} scalars (without positives ``loss_ins`` is a connected 0)."""
    cate_logits, kernels = [_float32(c) for c in outputs['cate_logits']], [_float32(k) for k in outputs['kernels']]
    mask_feat = _float32(outputs['mask_feat'])
    if len(cate_logits) != len(targets.cate_labels):
        raise ValueError(f'{len(cate_logits)} output levels but {len(targets.cate_labels)} target levels')

    num_masks, num_cells = positives or (targets.num_masks, targets.num_positives)
    preds, masks = gather_positive_masks(kernels, mask_feat, targets)
    loss_ins = (dice_loss(preds, masks).sum() * (ins_weight / num_masks) if preds.shape[0] > 0
                else 0.0 * (mask_feat.sum() + sum(k.sum() for k in kernels)))

    num_classes = cate_logits[0].shape[1]
    flat_logits = paddle.concat([c.transpose([0, 2, 3, 1]).reshape([-1, num_classes])
                                 for c in cate_logits])                       # [B*S*S per level, C]
    flat_labels = paddle.to_tensor(np.concatenate([level.reshape(-1) for level in targets.cate_labels]),
                                   dtype='int64')
    loss_cate = sigmoid_focal_loss(flat_logits, flat_labels, alpha, gamma) / (num_cells + 1)
    return {'loss_ins': loss_ins, 'loss_cate': loss_cate, 'loss': loss_ins + loss_cate}
