"""Learning-rate schedule: linear warm-up then step decay (pure, per iteration)."""
from typing import Sequence


def learning_rate(iteration: int, base_lr: float, warmup_iters: int, warmup_ratio: float,
                  step_iters: Sequence[int], gamma: float = 0.1) -> float:
    """LR at ``iteration`` (0-based).

    Warm-up: linear from ``base_lr * warmup_ratio`` at iteration 0 to ``base_lr`` at
    ``warmup_iters``; then ``base_lr * gamma ** k`` where k counts the ``step_iters``
    already reached (an iteration equal to a step is already decayed).
    """
    decay = gamma ** sum(iteration >= step for step in step_iters)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        return base_lr * decay * (warmup_ratio * (1 - alpha) + alpha)
    return base_lr * decay


def scaled_lr(base_lr: float, reference_batch: int, total_batch: int) -> float:
    """Linear scaling rule: the config's LR is for ``reference_batch`` images per step."""
    return base_lr * total_batch / reference_batch
