"""What happens around the training steps: the progress log, checkpoints and evaluation.
Each hook has ``after_step(trainer, losses)`` and ``after_train(trainer)``. Lines go to
this module's logger (INFO)."""
import logging
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from solov2.core.durations import clock
from solov2.core.errors import InputError, param
from solov2.model.distributed import SINGLE, Processes, rank0_state
from solov2.model.training.components import evaluation_weights
from solov2.model.training.run_log import RunLog, significant

logger = logging.getLogger(__name__)


def open_visualdl(logdir: str):
    """A VisualDL ``LogWriter`` on ``logdir`` (InputError naming the install command when
    the ``visualdl`` package is missing). Close it with ``.close()``."""
    try:
        from visualdl import LogWriter
    except ImportError:
        raise InputError(param('vdl_dir'), ' needs VisualDL: pip install visualdl')
    return LogWriter(logdir=str(logdir))


class Hook:
    """Does nothing; subclasses override what they need."""

    def after_step(self, trainer, losses: Dict[str, float]) -> None:
        """After each step, with its losses (floats by name)."""

    def after_train(self, trainer) -> None:
        """Once, after the last step."""


class LogHook(Hook):
    """Every ``every`` iterations and at the last (the schedule's, or where the time budget ends the run): the
    mean losses, LR, images/s and ETA as one log line and one row of ``train_log.csv``. Under a time budget
    that ends the run first, the line's total is the iteration it will end near at the speed so far
    (``iter 20/~37``)."""

    def __init__(self, log: RunLog, every: int, total_batch: int):
        self.log, self.every, self.total_batch = log, every, total_batch
        self.window: List[Dict[str, float]] = []
        self.window_start = time.perf_counter()

    def after_step(self, trainer, losses: Dict[str, float]) -> None:
        self.window.append(losses)
        done, stop_at = trainer.state.iteration, trainer.schedule.stop_at
        if done % self.every and not trainer.finished:
            return
        elapsed = time.perf_counter() - self.window_start
        mean = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0]}
        speed = len(self.window) * self.total_batch / elapsed
        eta, total = (stop_at - done) * elapsed / len(self.window), f'{stop_at}'
        if trainer.schedule.max_minutes:
            left = max(trainer.schedule.max_minutes - trainer.state.minutes, 0.0) * 60
            if left < eta:         # the budget ends the run first: near the iteration it allows at this speed
                ahead = round(left * len(self.window) / elapsed)
                eta, total = left, f'{done}' if trainer.finished else f'~{done + ahead}'
        logger.info(f"iter {done}/{total} epoch {trainer.epoch + 1} lr {trainer.lr:.5f} loss {mean['loss']:.3f} "
                    f"(ins {mean['loss_ins']:.3f} cate {mean['loss_cate']:.3f}) {speed:.1f} img/s eta {clock(eta)}")
        self.log.add(self.log.train_csv, {'iteration': done, 'epoch': trainer.epoch + 1,
                                          'minutes': round(trainer.state.minutes, 3), 'lr': significant(trainer.lr),
                                          **{k: round(v, 5) for k, v in mean.items()}, 'images_per_s': round(speed, 2)})
        self.window, self.window_start = [], time.perf_counter()


class CheckpointHook(Hook):
    """``save('last')`` every ``every`` iterations and once at the end (after the final
    evaluation, so ``last`` records the best AP that ``best`` holds)."""

    def __init__(self, save: Callable[[str], None], every: int):
        self.save, self.every = save, every

    def after_step(self, trainer, losses: Dict[str, float]) -> None:
        if trainer.state.iteration % self.every == 0 and not trainer.finished:
            self.save('last')

    def after_train(self, trainer) -> None:
        self.save('last')


class EvalHook(Hook):
    """Mask AP every ``every`` iterations (0: only at the end) and at the end; a better AP saves
    ``best``. With the (EMA) weights swapped in, ``evaluate(model, cfg, processes, placement)`` gives
    the COCO stats in percent, the same on every process, and ``picture(model, cfg, placement)`` a
    drawn validation picture [H, W, 3] uint8 (``placement``: the run's ``Trainer.hold``). Every
    process keeps the best AP; only process 0 logs, saves and draws. ``report(iteration, stats, picture
    or None)``, if set, hears of each evaluation (``VisualDLHook.evaluated``)."""

    def __init__(self, evaluate: Callable[..., Dict[str, float]], save: Callable[[str], None], log: RunLog, every: int,
                 picture: Optional[Callable[..., np.ndarray]] = None, processes: Processes = SINGLE):
        self.evaluate, self.save, self.log, self.every, self.picture = evaluate, save, log, every, picture
        self.processes = processes
        self.report: Optional[Callable[[int, Dict[str, float], Optional[np.ndarray]], None]] = None

    def after_step(self, trainer, losses: Dict[str, float]) -> None:
        if self.every and trainer.state.iteration % self.every == 0:
            self.run(trainer)

    def after_train(self, trainer) -> None:
        if not self.every or trainer.state.iteration % self.every:
            self.run(trainer)

    def run(self, trainer) -> None:
        state, main = trainer.state, self.processes.main
        with evaluation_weights(trainer.model, trainer.ema, trainer.hold) as model:
            with trainer.hold():
                rank0_state(model, self.processes)     # the BN statistics (and their EMA) each process kept
            stats = self.evaluate(model, trainer.cfg, self.processes, trainer.hold)
            picture = self.picture(model, trainer.cfg, trainer.hold) if self.picture and main else None
        if self.report is not None:
            self.report(state.iteration, stats, picture)
        better = stats['AP'] / 100 > state.best_ap         # the state keeps COCO's fraction, as resumes read it
        if better:
            state.best_ap, state.best_iteration = stats['AP'] / 100, state.iteration
        if not main:
            return
        percent = {k: round(v, 2) for k, v in stats.items()}
        self.log.add(self.log.eval_csv, {'iteration': state.iteration, 'minutes': round(state.minutes, 2), **percent})
        logger.info(f"eval @ {state.iteration}: mask AP {percent['AP']:.2f} AP50 {percent['AP50']:.2f} "
                    f"AP75 {percent['AP75']:.2f}")
        if better:
            self.save('best')
        self.log.plot()


class VisualDLHook(Hook):
    """VisualDL scalars: each loss part and the LR every step, images/s every ``every``
    steps; each evaluation's AP numbers (COCO's fractions, as eval.py --vdl-dir writes them) and
    its picture if any (``evaluated``, an EvalHook's ``report``, placed before this one)."""

    def __init__(self, writer, every: int):
        self.writer, self.every = writer, every
        self.window_start, self.window_steps = time.perf_counter(), 0

    def after_step(self, trainer, losses: Dict[str, float]) -> None:
        step = trainer.state.iteration
        for name, value in losses.items():
            self.writer.add_scalar(f'train/{name}', value, step)
        self.writer.add_scalar('train/lr', trainer.lr, step)
        self.window_steps += 1
        if step % self.every == 0:
            elapsed = time.perf_counter() - self.window_start
            self.writer.add_scalar('train/iterations_per_s', self.window_steps / max(elapsed, 1e-9), step)
            self.window_start, self.window_steps = time.perf_counter(), 0

    def after_train(self, trainer) -> None:
        self.writer.close()

    def evaluated(self, step: int, stats: Dict[str, float], picture: Optional[np.ndarray]) -> None:
        for name, value in stats.items():
            self.writer.add_scalar(f'eval/{name}', value / 100, step)
        if picture is not None:
            self.writer.add_image('eval/picture', picture, step)
