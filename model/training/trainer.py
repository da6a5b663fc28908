"""The training loop: a small Trainer that runs steps and calls hooks after each step and
at the end (logging, checkpointing and evaluation live in ``model.training.hooks``)."""
import contextlib
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, ContextManager, Iterator, List, Optional, Sequence

import numpy as np
import paddle

from solov2.core.errors import RunError
from solov2.data.loader import loader_batches, set_epoch
from solov2.model.training.amp import scaler_state
from solov2.model.training.distributed import mean_positives, rank0_minutes
from solov2.model.training.losses import solov2_loss
from solov2.model.training.schedule import learning_rate, training_progress

INTERRUPT_SIGNALS = tuple(getattr(signal, name) for name in ('SIGINT', 'SIGTERM') if hasattr(signal, name))


class NonFiniteLoss(RunError):
    """The loss of iteration ``iteration`` (counted from 1, as the log lines count) became NaN
    or infinite: no step was taken with it and nothing was saved."""

    def __init__(self, iteration: int, value: float):
        super().__init__(f'loss is {value} at iteration {iteration}')
        self.iteration, self.value = iteration, value


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM (with a Python handler, in the main thread) for the block and hand them
    over at its end: Paddle turns an exception inside a custom backward into a long error of its own.
    A second signal is handed over at once, and an error it causes becomes that interruption."""
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in INTERRUPT_SIGNALS} if main else {}
    previous = {s: handler for s, handler in previous.items() if callable(handler)}
    held, handed = [], []

    def hold(signum, frame) -> None:
        held.append(signum)
        if len(held) > 1:
            try:
                previous[signum](signum, frame)
            except BaseException as exc:
                handed.append(exc)
                raise

    for signum in previous:
        signal.signal(signum, hold)
    try:
        yield
    except Exception as exc:
        if handed and exc is not handed[-1]:        # the second signal's exception, as Paddle wrapped it
            raise handed[-1] from None
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        previous[held[0]](held[0], None)


@dataclass
class Schedule:
    """How long and how fast: iterations, the epoch length, the LR curve and the time budget."""
    base_lr: float
    total_iters: int
    per_epoch: int
    stop_at: int
    max_minutes: float = 0.0
    step_points: Sequence[float] = ()

    def timed_out(self, minutes: float) -> bool:
        return bool(self.max_minutes) and minutes >= self.max_minutes


@dataclass
class TrainState:
    """Where the run stands (``best_ap``: COCO's fraction, 0-1). A checkpoint's ``state.json``
    holds these and what ``Trainer.checkpoint_state`` adds from their one source."""
    iteration: int = 0
    minutes: float = 0.0
    best_ap: float = -1.0
    best_iteration: int = -1
    opt: List[str] = field(default_factory=list)       # the run's --opt overrides
    start_weights: str = ''                            # the model the run started from ('' none), --weights


@dataclass
class Trainer:
    """SGD steps over ``loader`` until ``schedule.stop_at`` or the time budget; hooks' ``after_step(trainer,
    losses)`` after every step, ``after_train(trainer)`` at the end. Each step runs in a ``hold()`` block
    (the run's placement); hooks take it for their own Paddle work only, so another thread's model
    waits at most about a step."""
    cfg: type
    model: paddle.nn.Layer
    optimizer: paddle.optimizer.Optimizer
    loader: object
    schedule: Schedule
    net: Optional[paddle.nn.Layer] = None            # the DataParallel wrapper, if any
    ema: Optional[object] = None
    amp: Optional[str] = None                        # the forward's half type ('float16', 'bfloat16'), None: float32
    scaler: Optional[object] = None                  # float16's loss scaler (``model.training.amp``)
    world: int = 1
    hooks: List[object] = field(default_factory=list)
    state: TrainState = field(default_factory=TrainState)
    lr: float = 0.0
    epoch: int = 0
    _clock: tuple = field(default=(0.0, 0.0), repr=False)   # (perf_counter, minutes) at start
    hold: Callable[[], ContextManager[None]] = contextlib.nullcontext

    def run(self) -> TrainState:
        """Train from ``state.iteration``; returns the final state."""
        (self.net or self.model).train()
        self._clock = (time.perf_counter(), self.state.minutes)
        while not self.finished:
            self.epoch, offset = divmod(self.state.iteration, self.schedule.per_epoch)
            set_epoch(self.loader, self.epoch, offset)
            with loader_batches(self.loader) as batches:
                for batch in batches:
                    with self.hold():
                        losses = self.step(batch)
                    for hook in self.hooks:
                        hook.after_step(self, losses)
                    if self.finished:
                        break
        for hook in self.hooks:
            hook.after_train(self)
        return self.state

    def checkpoint_state(self) -> dict:
        """What ``state.json`` records: the state, the time budget, the EMA's update count and
        the loss scaler's state (``amp.scaler_state``)."""
        return {**asdict(self.state), 'max_minutes': self.schedule.max_minutes,
                'ema_updates': self.ema.updates if self.ema is not None else 0, 'scaler': scaler_state(self.scaler)}

    @property
    def finished(self) -> bool:
        return self.state.iteration >= self.schedule.stop_at or self.schedule.timed_out(self.state.minutes)

    def step(self, batch: dict) -> dict:
        """One optimizer step on ``batch`` -> {'loss', 'loss_ins', 'loss_cate'} as floats.
        Raises NonFiniteLoss before the step when the loss is not finite. Ctrl-C or SIGTERM
        during the update (backward, optimizer, EMA) is raised once it is complete."""
        cfg, schedule, iteration = self.cfg, self.schedule, self.state.iteration
        progress = training_progress(iteration, schedule.total_iters, self.state.minutes, schedule.max_minutes)
        self.lr = learning_rate(cfg.lr_schedule, iteration, progress, schedule.base_lr, cfg.warmup_iters,
                                cfg.warmup_ratio, schedule.step_points, cfg.lr_gamma)
        self.optimizer.set_lr(self.lr)
        paddle.seed(cfg.seed * 1000003 + iteration)      # DropBlock etc.: reproducible on resume
        with paddle.amp.auto_cast(enable=self.amp is not None, level='O1', dtype=self.amp or 'float16'):
            outputs = (self.net or self.model)(batch['images'])
        losses = solov2_loss(outputs, batch['targets'], cfg.ins_loss_weight, cfg.focal_alpha,
                             cfg.focal_gamma, mean_positives(batch['targets'], self.world))
        total = float(losses['loss'])
        if not np.isfinite(total):
            raise NonFiniteLoss(iteration + 1, total)
        with deferred_interrupts():
            if self.scaler is not None:
                self.scaler.scale(losses['loss']).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                losses['loss'].backward()
                self.optimizer.step()
            self.optimizer.clear_grad()
            if self.ema is not None:
                self.ema.update(self.model)
            began, minutes_before = self._clock
            self.state.iteration = iteration + 1
            self.state.minutes = rank0_minutes(minutes_before + (time.perf_counter() - began) / 60, self.world)
        return {k: float(v) for k, v in losses.items()}
