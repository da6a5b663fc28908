"""Learning-rate schedule: linear warm-up, then step or cosine decay (pure functions)."""
import math
from typing import Sequence

SCHEDULES = ('step', 'cosine')


def warmup_factor(iteration: int, warmup_iters: int, warmup_ratio: float) -> float:
    """LR multiplier of the linear warm-up: ``warmup_ratio`` at iteration 0 rising to 1 at
    ``warmup_iters`` (1 from then on)."""
    if iteration >= warmup_iters:
        return 1.0
    alpha = iteration / warmup_iters
    return warmup_ratio * (1 - alpha) + alpha


def step_decay(progress: float, step_points: Sequence[float], gamma: float = 0.1) -> float:
    """``gamma ** k`` where k counts the ``step_points`` (fractions of training, see
    ``training_progress``) already reached; a point exactly reached is already decayed."""
    return gamma ** sum(progress >= point for point in step_points)


def cosine_decay(progress: float) -> float:
    """Half a cosine from 1 at ``progress`` 0 to 0 at ``progress`` 1 (clipped to [0, 1])."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def training_progress(iteration: int, total_iters: int, minutes: float = 0.0,
                      budget_minutes: float = 0.0) -> float:
    """How far training is, in [0, 1]: the iteration's share of ``total_iters`` or, when a
    time budget is given, the share of it already spent, whichever is further along."""
    progress = iteration / total_iters
    if budget_minutes:
        progress = max(progress, minutes / budget_minutes)
    return min(progress, 1.0)


def check_schedule(schedule: str) -> None:
    """Raise ValueError unless ``schedule`` is one of ``SCHEDULES``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule '{schedule}' (expected one of {SCHEDULES})")


def learning_rate(schedule: str, iteration: int, progress: float, base_lr: float,
                  warmup_iters: int, warmup_ratio: float, step_points: Sequence[float] = (),
                  gamma: float = 0.1) -> float:
    """LR at ``iteration`` (0-based) and ``progress`` (see ``training_progress``): warm-up
    times the decay of ``schedule``, 'step' (``step_points``, ``gamma``) or 'cosine'."""
    check_schedule(schedule)
    decay = step_decay(progress, step_points, gamma) if schedule == 'step' else cosine_decay(progress)
    return base_lr * decay * warmup_factor(iteration, warmup_iters, warmup_ratio)


def scaled_lr(base_lr: float, reference_batch: int, total_batch: int) -> float:
    """Linear scaling rule: the config's LR is for ``reference_batch`` images per step."""
    return base_lr * total_batch / reference_batch
