"""A training run from ``TrainOptions``: the run folder, the parts built from the config,
resume, and the Trainer with its hooks. Evaluation comes in from outside as functions
(``evaluate(model, cfg) -> COCO stats``, ``picture(model, cfg) -> [H, W, 3] uint8``), so
training does not depend on the inference package. Messages go to this module's logger.
A run leaves the process as it found it (``run_settings``)."""
import contextlib
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import paddle

from solov2.config import announce_config, format_settings, get_config
from solov2.config.device import on_gpu
from solov2.config.sidecar import read_sidecar
from solov2.core.errors import InputError, RunError, param
from solov2.core.paths import previous_folder
from solov2.model.build import build_model
from solov2.model.checkpoint import CheckpointError
from solov2.model.distributed import SINGLE, Processes, launched_processes, start_processes
from solov2.model.runtime import Placement, cpu_threads, resolve_device
from solov2.model.training.amp import make_scaler, restore_scaler, runnable_amp
from solov2.model.training.child_signal import kept_child_signal
from solov2.model.training.components import load_pretrained, make_loader, make_optimizer
from solov2.model.training.ema import ModelEMA
from solov2.model.training.hooks import CheckpointHook, EvalHook, LogHook, VisualDLHook, open_visualdl
from solov2.model.training.options import TrainOptions
from solov2.model.training.run_log import RunLog
from solov2.model.training.schedule import fit_schedule, scaled_lr, schedule_line
from solov2.model.training.start import named_settings, start_config, training_classes, with_config_number
from solov2.model.training.state import find_checkpoint, read_state, restore_training_state, save_training_state
from solov2.model.training.sync_bn import convert_sync_bn
from solov2.model.training.trainer import NonFiniteLoss, Schedule, Trainer, TrainState

logger = logging.getLogger(__name__)
RUN_FILES = ('last', 'best', 'train_log.csv', 'eval_log.csv', 'curves.png')


def run_folder(options: TrainOptions) -> Path:
    """The run folder: ``options.output``, or ``output/<config class>``."""
    return Path(options.output or f'output/{get_config(options.config).__name__}')


def run_checkpoint(out: Path) -> Optional[Path]:
    """The checkpoint a run in ``out`` continues from: ``last`` (or what an interrupted save
    left of it), else ``best``; None when the run saved none."""
    for tag in ('last', 'best'):
        with contextlib.suppress(CheckpointError):
            return find_checkpoint(str(out / tag))
    return None


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> List[str]:
    """InputError when a new run (not ``resume``) would start over another run in ``out``
    that saved a checkpoint, without ``overwrite``; reads only, so callers check before
    fetching or building anything (``claim_run_folder`` deletes). Returns the names in ``out``
    that a run writes (``RUN_FILES``, and what an interrupted save of ``last`` or ``best`` left)."""
    names = RUN_FILES + tuple(previous_folder(out / tag).name for tag in ('last', 'best'))
    taken = [name for name in names if (out / name).exists()]
    if taken and not resume and not overwrite and run_checkpoint(out) is not None:
        raise InputError(f'{out} holds another run ({", ".join(taken)}): continue it with ', param('resume', 'auto'),
                         ', pick another ', param('output'), ', or pass ', param('overwrite', True), ' to start over')
    return taken


def claim_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """``check_run_folder``, then for a new run delete the old run's checkpoints and logs (a run
    that saved no checkpoint, interrupted early, saying so)."""
    taken = check_run_folder(out, resume, overwrite)
    if not taken or resume:
        return
    if run_checkpoint(out) is None:
        logger.info(f'{out} holds only the logs of a run that saved no checkpoint ({", ".join(taken)}): '
                    'starting over in it')
    for name in taken:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resume_folder(options: TrainOptions, out: Path) -> Optional[Path]:
    """The checkpoint folder a resumed run continues from: ``options.resume``, or with
    'auto' the run folder's (``run_checkpoint``); None for a new run, also when 'auto' finds
    no checkpoint (a run interrupted before its first one starts over, saying so)."""
    if not options.resume:
        return None
    if options.resume != 'auto':
        return find_checkpoint(str(options.resume))
    folder = run_checkpoint(out)
    if folder is None:
        logger.info('%s: no checkpoint in %s yet, starting a new run', param('resume', 'auto'), out)
    return folder


def build_parts(options: TrainOptions, cfg, world: int, device: str, source, start: Optional[str] = None,
                resuming: bool = False):
    """(model, net, optimizer, loader, ema, base_lr) of a run on the training set
    ``source``, starting from the weights ``start`` (a whole model) or ``cfg.pretrained``;
    ``resuming``: neither, and no random weights either, as a checkpoint sets every weight next."""
    paddle.seed(cfg.seed)
    model = build_model(cfg, random_weights=not resuming)
    if start and cfg.pretrained:
        raise InputError(param('weights'), f' and the pretrained setting ({cfg.pretrained}) both give start weights '
                         '— use one')
    if (start or cfg.pretrained) and not resuming:
        logger.info(load_pretrained(model, start or cfg.pretrained))
    loader = make_loader(cfg, world, source)
    if options.sync_bn and world > 1:
        model = convert_sync_bn(model, gpu=on_gpu(device))
    net = paddle.DataParallel(model) if world > 1 else None
    base_lr = scaled_lr(cfg.base_lr, cfg.reference_batch, cfg.batch_size * world) if options.scale_lr else cfg.base_lr
    optimizer = make_optimizer(cfg, model, base_lr)
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_ramp) if cfg.ema_decay else None
    return model, net, optimizer, loader, ema, base_lr


def take_over_options(options: TrainOptions, folder: Path, saved: dict) -> TrainOptions:
    """The options of a run resumed from checkpoint ``folder`` (whose ``state.json`` is
    ``saved``), before it builds anything: the checkpoint must come from the same config,
    and the run's own overrides and time budget apply unless ``options`` gives others, so
    it continues the same model and schedule."""
    meta = read_sidecar(str(folder / 'model.pdparams')) or {}
    if meta.get('config', options.config) != options.config:
        raise InputError(f'{folder} was trained with ', param('config', meta['config']), ', not ',
                         param('config', options.config), ': resume with ', param('config', meta['config']))
    changes = {}
    if not options.overrides and saved.get('opt'):
        changes['overrides'] = tuple(saved['opt'])
        logger.info("resuming with the run's %s", param('overrides', list(saved['opt'])))
    if not options.max_minutes and saved.get('max_minutes'):
        changes['max_minutes'] = saved['max_minutes']
    return dataclasses.replace(options, **changes)


def resume_state(folder: Path, saved: dict, trainer: Trainer, log: RunLog) -> None:
    """Restore weights, optimizer, EMA, loss scaler and state from checkpoint ``folder``; log
    rows past the checkpoint are dropped."""
    restore_training_state(folder, saved, trainer.model, trainer.optimizer, trainer.ema)
    restore_scaler(trainer.scaler, saved.get('scaler', {}))
    trainer.state = TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})
    log.truncate_after(trainer.state.iteration)
    budget = trainer.schedule.max_minutes
    logger.info(f'resumed from {folder} at iteration {trainer.state.iteration}'
                + (f' (budget {budget:g} min)' if budget else ''))


def make_hooks(options: TrainOptions, cfg, trainer: Trainer, out: Path, log: RunLog, evaluate: Optional[Callable],
               picture: Optional[Callable] = None, processes: Processes = SINGLE):
    """The hooks of this process: logging, evaluation (when ``evaluate``), checkpoint (and with
    ``vdl_dir`` VisualDL, with ``picture``) on process 0; on the others only the evaluation,
    whose share of the images each process predicts (``EvalHook``)."""
    def save(tag: str) -> None:
        with trainer.hold():          # the run's device for the state's tensors; between steps, not during one
            save_training_state(out, tag, trainer.model, trainer.optimizer, trainer.checkpoint_state(),
                                options.config, cfg, trainer.ema)

    evaluation = EvalHook(evaluate, save, log, options.eval_every, picture if options.vdl_dir else None, processes)
    if not processes.main:
        return [evaluation] if evaluate else []
    hooks = [LogHook(log, options.log_every, cfg.batch_size * trainer.world), evaluation]
    if options.vdl_dir:
        visualdl = VisualDLHook(open_visualdl(options.vdl_dir), options.log_every)
        evaluation.report = visualdl.evaluated
        hooks.append(visualdl)
    return hooks + [CheckpointHook(save, options.checkpoint_every)]


@contextlib.contextmanager
def run_settings(options: TrainOptions) -> Iterator[Placement]:
    """``with run_settings(options) as placement:`` ``placement()`` is a block with Paddle on the device
    and threads of ``options`` (``model.runtime.paddle_on``), taken by ``prepare``, each step and each
    network call of the hooks; the SIGCHLD handler is put back after the run (``kept_child_signal``)."""
    threads = cpu_threads(options.threads, launched_processes().local_size)
    with kept_child_signal():
        yield Placement(resolve_device(options.device), threads)


def prepare(options: TrainOptions, evaluate: Optional[Callable], placement: Placement,
            picture: Optional[Callable] = None):
    """(Trainer, run folder) of this process (InputError, CheckpointError, ValueError or
    FileNotFoundError when something does not fit), built in ``placement()`` (``run_settings``'),
    which the trainer then takes a step at a time (``Trainer.hold``); ``run_training`` runs it."""
    with placement():
        return _build(options, evaluate, picture, placement)


def _build(options: TrainOptions, evaluate: Callable, picture: Optional[Callable], placement: Placement):
    """``prepare``'s trainer and run folder on ``placement``'s device (resolved once)."""
    options = with_config_number(options)
    out = run_folder(options)
    folder = resume_folder(options, out)
    if folder is not None:
        saved = read_state(folder)
        options = take_over_options(options, folder, saved)
    overrides = list(options.overrides)
    cfg = start_config(options, overrides)
    processes = start_processes(placement.device)
    if processes.main:
        claim_run_folder(out, folder is not None, options.overwrite)
    cfg, source = training_classes(cfg, options, overrides)
    model, net, optimizer, loader, ema, base_lr = build_parts(options, cfg, processes.world, placement.device, source,
                                                              None if folder else options.weights, folder is not None)
    amp = runnable_amp(options.amp, placement.device)
    cfg, notes = fit_schedule(cfg, get_config(options.config), named_settings(overrides), len(loader))
    total_iters = cfg.epochs * len(loader)
    schedule = Schedule(base_lr, total_iters, len(loader), min(total_iters, options.max_iters or total_iters),
                        options.max_minutes, [e / cfg.epochs for e in cfg.lr_steps])
    trainer = Trainer(cfg, model, optimizer, loader, schedule, net=net, ema=ema, amp=amp, scaler=make_scaler(amp),
                      world=processes.world, state=TrainState(opt=overrides, start_weights=options.weights or ''),
                      hold=placement)
    log = RunLog(out)
    if folder is not None:
        resume_state(folder, saved, trainer, log)
    if processes.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.txt').write_text(f'config {options.config}\n{format_settings(cfg)}\n')
        announce_config(options.config, cfg, overrides, options.verbose, f'run folder {out}')
    trainer.hooks = make_hooks(options, cfg, trainer, out, log, evaluate, picture, processes)
    logger.info(schedule_line(cfg, schedule, cfg.batch_size * processes.world))
    if notes:
        logger.info(f'schedule fitted to the run: {"; ".join(notes)}')
    return trainer, out


def log_finished(trainer: Trainer, out: Path) -> None:
    """Log why a resumed run has nothing left to do, and the option that would let it train on."""
    schedule, state = trainer.schedule, trainer.state
    done = f'{out} is finished at iteration {state.iteration}'
    if state.iteration >= schedule.total_iters:
        epochs = trainer.cfg.epochs
        more = [o for o in state.opt if not o.startswith('epochs=')] + [f'epochs={2 * epochs}']
        if trainer.cfg.lr_schedule == 'step' and 'lr_steps' not in named_settings(state.opt):
            more.append(f'lr_steps={trainer.cfg.lr_steps!r}')      # the drops stay where they were
        logger.info('%s, the end of its %s epochs; to train on, resume with more epochs, e.g. %s', done, epochs,
                    param('overrides', more))
    elif schedule.timed_out(state.minutes):
        logger.info('%s: its %g-minute budget is spent; to train on, resume with a larger %s', done,
                    schedule.max_minutes, param('max_minutes'))
    else:
        logger.info('%s (%s); to train on, resume with a %s above %s (the schedule has %s)', done,
                    param('max_iters', schedule.stop_at), param('max_iters'), state.iteration, schedule.total_iters)


def run_training(trainer: Trainer, out: Path) -> TrainState:
    """Run a prepared trainer to its end; returns the final state (a resumed run that is
    finished already does nothing but log so, naming the option that lets it train on). A
    non-finite loss, or weights that cannot be saved because they are not finite, end in a
    RunError naming the last healthy checkpoint."""
    if trainer.finished:
        log_finished(trainer, out)
        return trainer.state
    try:
        return trainer.run()
    except (NonFiniteLoss, CheckpointError) as exc:
        kept = f'the last healthy checkpoint is {out}/last' if (out / 'last').is_dir() else 'no checkpoint was saved'
        raise RunError(*exc.args, f'; {kept} (lower base_lr or check the data)') from exc
