"""Whether a faster precision (bf16, INT8) keeps the instances of f32 on a picture: each of
f32's found again (the same class, mask IoU >= ``MIN_MASK_IOU``, score within
``MAX_SCORE_DIFF``) and no other. The one comparison that ``auto``'s bf16 check and the
precision tests make."""
from typing import Dict, Optional

import numpy as np

from solov2.model.inference.postprocess import Detections

MIN_MASK_IOU = 0.98
MAX_SCORE_DIFF = 0.05


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two binary masks [H, W] (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare_instances(got: Detections, want: Detections) -> Dict[str, float]:
    """How ``got``'s instances match ``want``'s (both pasted: binary masks [N, H, W]): each of
    ``want``'s, best first, is paired with the unpaired one of ``got`` of its label with the
    highest mask IoU. {'instances': len(want), 'kept': pairs with IoU >= MIN_MASK_IOU,
    'extra': len(got) - pairs, 'min_iou': the lowest pair IoU (0 for one left unpaired; 1.0
    with no instance), 'max_score_diff': of the pairs}."""
    free, ious, diffs = list(range(len(got))), [], [0.0]
    for index in range(len(want)):
        scored = [(mask_iou(got.masks[j], want.masks[index]), j) for j in free if got.labels[j] == want.labels[index]]
        iou, best = max(scored, default=(0.0, None))
        ious.append(iou)
        if best is not None:
            free.remove(best)
            diffs.append(abs(float(got.scores[best]) - float(want.scores[index])))
    return {'instances': len(want), 'kept': sum(iou >= MIN_MASK_IOU for iou in ious),
            'extra': len(free), 'min_iou': min(ious, default=1.0), 'max_score_diff': max(diffs)}


def disagreement(stats: Dict[str, float]) -> Optional[str]:
    """None when ``compare_instances``'s ``stats`` say every instance was kept and none added,
    scores within MAX_SCORE_DIFF; else what differs, in a few words."""
    if stats['kept'] == stats['instances'] and not stats['extra'] and stats['max_score_diff'] <= MAX_SCORE_DIFF:
        return None
    return (f"kept {stats['kept']} of {stats['instances']} instances (mask IoU >= {MIN_MASK_IOU}; lowest "
            f"{stats['min_iou']:.3f}), {stats['extra']} more, scores up to {stats['max_score_diff']:.3f} apart")
