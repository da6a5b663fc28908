"""Learning-rate schedule: linear warm-up, then step or cosine decay (pure functions), and
how a config's schedule is fitted to the run it drives (``fit_schedule``, ``schedule_line``)."""
import math
from typing import Collection, List, Sequence, Tuple

from solov2.config import with_overrides
from solov2.core.errors import InputError

SCHEDULES = ('step', 'cosine')
WARMUP_SHARE = 0.1          # an unnamed warm-up longer than this share of the run is cut to it
FIRST_STEP_SHARE = 0.2      # the first LR drop may not come earlier in the run


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


def training_progress(iteration: int, total_iters: int, minutes: float = 0.0, budget_minutes: float = 0.0) -> float:
    """How far training is, in [0, 1]: the iteration's share of ``total_iters`` or, when a
    time budget is given, the share of it already spent, whichever is further along."""
    progress = iteration / total_iters
    if budget_minutes:
        progress = max(progress, minutes / budget_minutes)
    return min(progress, 1.0)


def learning_rate(schedule: str, iteration: int, progress: float, base_lr: float, warmup_iters: int,
                  warmup_ratio: float, step_points: Sequence[float] = (), gamma: float = 0.1) -> float:
    """LR at ``iteration`` (0-based) and ``progress`` (see ``training_progress``): warm-up
    times the decay of ``schedule``, 'step' (``step_points``, ``gamma``) or 'cosine' (``known_schedule``)."""
    decay = step_decay(progress, step_points, gamma) if known_schedule(schedule) == 'step' else cosine_decay(progress)
    return base_lr * decay * warmup_factor(iteration, warmup_iters, warmup_ratio)


def known_schedule(schedule: str) -> str:
    """``schedule`` when it is one of ``SCHEDULES``; ValueError for another (no decay stands in for it)."""
    if schedule not in SCHEDULES:
        raise ValueError(f'unknown lr_schedule {schedule!r} (expected one of {SCHEDULES})')
    return schedule


def scaled_lr(base_lr: float, reference_batch: int, total_batch: int) -> float:
    """Linear scaling rule: the config's LR is for ``reference_batch`` images per step."""
    return base_lr * total_batch / reference_batch


def fit_schedule(cfg, base, named: Collection[str], per_epoch: int) -> Tuple[type, List[str]]:
    """(``cfg`` with its LR schedule fitted to a run of ``per_epoch`` iterations an epoch,
    what was changed in words). ``base`` is the config ``cfg`` derives from, ``named`` the
    settings the run's overrides name (kept as given): ``lr_steps`` count epochs of
    ``base.epochs``, so with another ``epochs`` they scale with it (the drops keep their share
    of the run); a warm-up longer than a tenth of the run is cut to that tenth. InputError
    when the first drop comes before the warm-up ends or in the first fifth of the run."""
    changes, notes = [], []
    if 'lr_steps' not in named and cfg.epochs != base.epochs and cfg.lr_steps:
        steps = tuple(_number(step * cfg.epochs / base.epochs) for step in cfg.lr_steps)
        changes.append(f'lr_steps={steps!r}')
        notes.append(f'lr_steps {cfg.lr_steps} (epochs of {base.epochs}) scaled to {steps} for {cfg.epochs} epochs')
    total = cfg.epochs * per_epoch
    if 'warmup_iters' not in named and cfg.warmup_iters > WARMUP_SHARE * total:
        changes.append(f'warmup_iters={int(WARMUP_SHARE * total)}')
        notes.append(f'warmup_iters {cfg.warmup_iters} cut to {int(WARMUP_SHARE * total)}, a tenth of the run')
    fitted = with_overrides(cfg, changes)
    check_steps(fitted, base, per_epoch)
    return fitted, notes


def _number(value: float):
    """``value`` as an int when it is whole (a step written as epochs: 350, not 350.0)."""
    return int(value) if float(value).is_integer() else value


def check_steps(cfg, base, per_epoch: int) -> None:
    """InputError (with the fix) when ``cfg``'s first LR step falls before the end of its
    warm-up or in the first fifth of its run of ``per_epoch`` iterations an epoch."""
    if cfg.lr_schedule != 'step' or not cfg.lr_steps:
        return
    total, first = cfg.epochs * per_epoch, math.ceil(min(cfg.lr_steps) * per_epoch)
    drop = f'lr_steps={cfg.lr_steps!r} put the first LR drop at iteration {first:g} of {total}'
    if first <= cfg.warmup_iters:
        raise InputError(f'{drop}, before the warm-up ends at iteration {cfg.warmup_iters} — lower warmup_iters '
                         'or give later lr_steps (epochs after which the LR drops)')
    if first < FIRST_STEP_SHARE * total:
        steps = tuple(_number(step * cfg.epochs / base.epochs) for step in base.lr_steps)
        raise InputError(f'{drop}, in the first fifth of the run — lr_steps count epochs of the {cfg.epochs}: '
                         f"give later ones, e.g. lr_steps={steps!r} (the config's share of the run)")


def schedule_line(cfg, schedule, batch: int) -> str:
    """The run's schedule in iterations, one line: its length and epochs, the warm-up, the LR,
    each LR drop (or the cosine's end), an earlier stop (max_iters) and the time budget."""
    line = f'schedule: {schedule.total_iters} iterations ({cfg.epochs} epochs of {schedule.per_epoch}, batch {batch}): '
    line += f'warm-up over the first {cfg.warmup_iters}, ' if cfg.warmup_iters else ''
    line += f'lr {schedule.base_lr:g}'
    if known_schedule(cfg.lr_schedule) == 'cosine':
        line += f', cosine decay to 0 at iteration {schedule.total_iters}'
    else:
        steps = [step for step in cfg.lr_steps if step < cfg.epochs]
        drops = ' and '.join(f'{math.ceil(step * schedule.per_epoch)} (epoch {step:g})' for step in steps)
        line += f', x{cfg.lr_gamma:g} after iteration {drops}' if steps else ', no LR drop'
    if schedule.stop_at < schedule.total_iters:
        line += f'; stops after iteration {schedule.stop_at} (max_iters)'
    if schedule.max_minutes:
        line += f'; or after {schedule.max_minutes:g} minutes if that is sooner, the schedule then laid over them'
    return line
