"""Whether a faster precision (bf16, INT8) keeps f32's answer on a picture (``auto``'s bf16 check, the
precision tests): each of f32's instances scored at least ``min_score`` found again (same class,
``pair_rank``: a mask alike of a near score first, then the highest mask IoU), every pair's IoU
at least ``MIN_PAIR_IOU``, their mean ``MIN_MASK_IOU``, scores within ``MAX_SCORE_DIFF``, no other
instance scored ``min_score + MAX_SCORE_DIFF`` or more."""
from typing import Dict, Optional, Tuple

import numpy as np

from solov2.model.inference.postprocess import Detections

MIN_MASK_IOU = 0.98      # the pairs' mean mask IoU
MIN_PAIR_IOU = 0.9       # each pair's
MAX_SCORE_DIFF = 0.05
SEEN_SCORE = 0.3         # demo.py's --draw-threshold default: the instances a user looks at


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two binary masks [H, W] (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def pair_rank(candidate: Tuple[float, int], got: Detections, score: float) -> Tuple[bool, bool, float]:
    """How well ``got``'s instance ``candidate`` (mask IoU, index) pairs with one scored ``score``: first the
    masks alike (IoU ``MIN_PAIR_IOU`` or more), of those the scores within ``MAX_SCORE_DIFF`` (Matrix NMS keeps
    decayed duplicates of a mask), then the highest IoU, or among alike masks of no near score the nearest score."""
    iou, index = candidate
    alike, gap = iou >= MIN_PAIR_IOU, abs(float(got.scores[index]) - score)
    near = alike and gap <= MAX_SCORE_DIFF
    return alike, near, -gap if alike and not near else iou


def compare_instances(got: Detections, want: Detections, min_score: float = 0.0) -> Dict[str, float]:
    """How ``got``'s instances match ``want``'s scored at least ``min_score`` (masks [N, H, W]), each paired
    best first with ``got``'s unpaired one of its label that ``pair_rank`` ranks first: {'instances', 'kept' (IoU >=
    MIN_MASK_IOU), 'extra' (unpaired scored min_score + MAX_SCORE_DIFF or more), 'min_iou', 'mean_iou'
    (0 for one unpaired, 1.0 with none), 'max_score_diff'}."""
    free, ious, diffs = list(range(len(got))), [], [0.0]
    for index in np.flatnonzero(np.asarray(want.scores) >= min_score):
        scored = [(mask_iou(got.masks[j], want.masks[index]), j) for j in free if got.labels[j] == want.labels[index]]
        iou, best = max(scored, default=(0.0, None), key=lambda pair: pair_rank(pair, got, float(want.scores[index])))
        ious.append(iou)
        if best is not None:
            free.remove(best)
            diffs.append(abs(float(got.scores[best]) - float(want.scores[index])))
    extra = sum(float(got.scores[j]) >= min_score + MAX_SCORE_DIFF for j in free)
    return {'instances': len(ious), 'kept': sum(iou >= MIN_MASK_IOU for iou in ious), 'extra': extra,
            'min_iou': min(ious, default=1.0), 'mean_iou': float(np.mean(ious)) if ious else 1.0,
            'max_score_diff': max(diffs)}


def disagreement(stats: Dict[str, float]) -> Optional[str]:
    """None when ``compare_instances``'s ``stats`` say f32's answer was kept (module docstring);
    else what differs, in a few words."""
    if (stats['min_iou'] >= MIN_PAIR_IOU and stats['mean_iou'] >= MIN_MASK_IOU and not stats['extra']
            and stats['max_score_diff'] <= MAX_SCORE_DIFF):
        return None
    return (f"{stats['instances']} instances: mask IoU mean {stats['mean_iou']:.3f} (>= {MIN_MASK_IOU}), lowest "
            f"{stats['min_iou']:.3f} (>= {MIN_PAIR_IOU}), {stats['extra']} more, scores up to "
            f"{stats['max_score_diff']:.3f} apart (<= {MAX_SCORE_DIFF})")
