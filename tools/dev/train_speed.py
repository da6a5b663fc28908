"""Training speed of this toolkit against PaddleDetection's SOLOv2 on the same config, data,
weights, batch and threads, for ``python tools/dev/benchmark.py --train``.

Per config (``measure``):
- the model step (forward, loss, backward, optimizer step; no data loading) of both on the
  SAME batch: the first training samples of our run's dataset (our ``TrainTransform``) with
  our targets for ours (``Trainer.step``, what train.py runs) and PaddleDetection's own
  targets (``Gt2Solov2Target``) for its model in train mode with Momentum 0.9 + L2 1e-4, both
  at learning rate ``LR``; one warm-up step each (its loss is reported), then the timed steps
  interleaved (ours, theirs, ours, ...) in this process; the median seconds;
- the whole loop (data loading included) of each in a process of its own: ours is the
  training run train.py builds (``model.training.run.prepare``: loader with its workers,
  Trainer, log hook), PaddleDetection's its own ``ppdet.engine.Trainer`` with its reader
  (Decode, Poly2Mask, Resize, RandomFlip, NormalizeImage, Permute; PadBatch,
  Gt2Solov2Target); the mean seconds per iteration after the first, and the peak resident
  set size of that process (``VmHWM``; its data-loading workers are not counted).
The training set is the synthetic shapes set (tools/make_shapes_dataset.py) with COCO's 80
categories listed (the 4 shapes are the first 4), so both train the 80-class models.
"""
import csv
import functools
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import paddle

from solov2.config import get_config, with_overrides
from solov2.config.base import COCO_CLASSES
from solov2.core.errors import RunError
from solov2.data.loader import collate_batch
from solov2.model.distributed import cpu_launch_env
from solov2.model.training.hooks import Hook, LogHook
from solov2.model.training.options import TrainOptions
from solov2.model.training.run import prepare, run_settings
from solov2.model.training.targets import assign_targets, collate_targets
from solov2.tools import train
from solov2.tools.cli import tune_for
from solov2.tools.dev import report
from solov2.tools.make_shapes_dataset import generate_split

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / 'train.py'
LR = 1e-4                     # small enough that a few steps from random weights stay finite
MOMENTUM, L2_DECAY = 0.9, 1e-4
MARKERS = ('<!-- training: begin -->', '<!-- training: end -->')
CHILD_TIMEOUT_S = 3600     # the most a measured child process may take before it is stopped


@dataclass(frozen=True)
class TrainBench:
    """What is measured: ``batch`` images of ``size`` x ``size``, ``steps`` timed model steps
    and as many timed iterations of the whole loop (after its first), ``threads`` (0: every
    core), ``opt``: config overrides for ours, ``processes``: also our whole loop as that many
    data-parallel processes (0: not)."""
    size: int = 448
    batch: int = 2
    steps: int = 3
    threads: int = 0
    opt: tuple = ()
    processes: int = 0

    @property
    def loop_iterations(self) -> int:
        return self.steps + 1


def shapes_set(folder: Path, bench: TrainBench) -> Path:
    """Synthetic ``bench.size`` x ``bench.size`` training pictures in ``folder``/train, enough
    for the loop's iterations, and their annotation file (the pictures with an object only;
    COCO's 80 categories listed, the shapes as the first 4); returns ``folder``."""
    coco = generate_split(folder, 'train', bench.batch * (bench.loop_iterations + 2), bench.size, seed=0)
    annotated = {ann['image_id'] for ann in coco['annotations'] if not ann['iscrowd']}
    coco['images'] = [image for image in coco['images'] if image['id'] in annotated]
    coco['annotations'] = [ann for ann in coco['annotations'] if ann['image_id'] in annotated]
    coco['categories'] = [{'id': i + 1, 'name': name, 'supercategory': 'thing'} for i, name in enumerate(COCO_CLASSES)]
    (folder / 'annotations').mkdir(parents=True, exist_ok=True)
    (folder / 'annotations' / 'train.json').write_text(json.dumps(coco))
    return folder


def ours_options(number: int, bench: TrainBench, root: Path, weights: str, out: Path) -> TrainOptions:
    """train.py's options for a run of config ``number`` on ``root`` from ``weights``: one
    short side = ``bench.size``, ``bench.batch`` images, constant ``LR``, ``bench.loop_iterations``."""
    data = [f'dataset_dir={root}', 'train_ann=annotations/train.json', 'train_images=train',
            'val_ann=annotations/train.json', 'val_images=train']
    overrides = [*data, f'train_shorts=({bench.size},)', f'train_max={bench.size}', f'batch_size={bench.batch}',
                 f'base_lr={LR}', 'warmup_iters=0', f'pretrained={weights}', *bench.opt]
    return TrainOptions(config=number, output=str(out), overwrite=True, overrides=tuple(overrides),
                        max_iters=bench.loop_iterations, log_every=1, device='cpu', threads=bench.threads)


def ppdet_targets(cfg, per_image) -> dict:
    """PaddleDetection's targets (``ppdet_train.solov2_targets``) of the config's grids."""
    from solov2.tools.dev.reference import ppdet_train
    return ppdet_train.solov2_targets(cfg.num_grids, cfg.scale_ranges, cfg.sigma, per_image)


def step_batches(trainer, batch: int) -> tuple:
    """(our batch, PaddleDetection's inputs) of the first ``batch`` samples of the run's
    training set: the same images [B, 3, H, W], each implementation's own targets."""
    cfg = trainer.cfg
    samples = [trainer.loader.dataset[i] for i in range(batch)]
    ours = collate_batch(samples, functools.partial(assign_targets, num_grids=cfg.num_grids,
                                                    scale_ranges=cfg.scale_ranges, sigma=cfg.sigma), collate_targets)
    theirs = collate_batch(samples, lambda masks, labels: (masks, labels), functools.partial(ppdet_targets, cfg))
    images = paddle.to_tensor(ours['images'])
    return {**ours, 'images': images}, {'image': images, **theirs['targets']}


def ppdet_optimizer(model, lr: float):
    """Momentum with L2 decay on the trainable parameters, as PaddleDetection's SOLOv2 recipe."""
    return paddle.optimizer.Momentum(learning_rate=lr, momentum=MOMENTUM,
                                     parameters=[p for p in model.parameters() if not p.stop_gradient],
                                     weight_decay=paddle.regularizer.L2Decay(L2_DECAY))


def ppdet_step(reference, inputs: dict):
    """A function that runs one PaddleDetection training step on ``inputs``, returning its loss."""
    reference.train()
    optimizer = ppdet_optimizer(reference, LR)

    def step() -> float:
        loss = reference(inputs)['loss']
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(loss.numpy().reshape(-1)[0])
    return step


def interleaved(steps: dict, runs: int) -> dict:
    """{name: (loss of its first step, median seconds of the next ``runs``)}: a warm-up step
    of each, then the timed steps in turn (one of each, ``runs`` times)."""
    first = {name: step() for name, step in steps.items()}
    times = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - began)
    return {name: (first[name], statistics.median(times[name])) for name in steps}


def per_iteration(ends) -> float:
    """Mean seconds per iteration after the first, from the times (s) the iterations ended."""
    return (ends[-1] - ends[0]) / (len(ends) - 1)


class ClockHook(Hook):
    """Notes the time each iteration ends in ``ends``."""

    def __init__(self):
        self.ends = []

    def after_step(self, trainer, losses) -> None:
        self.ends.append(time.perf_counter())


def ours_loop(options: TrainOptions) -> float:
    """Seconds per iteration (after the first) of the run train.py builds from ``options``,
    with its per-step hook (the log) and without the work of its end (evaluation, checkpoint)."""
    tune_for(options.device, options.threads, helper_threads=0)      # as train.py tunes its process
    with run_settings(options) as hold:
        trainer, _ = prepare(options, evaluate=None, placement=hold)     # without the evaluation hook, its one user
        clock = ClockHook()
        trainer.hooks = [hook for hook in trainer.hooks if isinstance(hook, LogHook)] + [clock]
        trainer.run()
    return per_iteration(clock.ends)


def command_args(options: TrainOptions) -> list:
    """The command-line arguments of train.py that give ``options`` back (``train.options_from_args``),
    from its own flags' defaults (``train.parse_args([])``): every option that differs from its default."""
    values = {**{f.name: getattr(options, f.name) for f in fields(TrainOptions)}, 'opt': list(options.overrides)}
    argv = []
    for name, default in vars(train.parse_args([])).items():
        value, flag = values.get(name, default), '--' + name.replace('_', '-')
        if value != default:
            listed = value if isinstance(value, (list, tuple)) else [value]
            argv += [flag] if value is True else [flag, *map(str, listed)]
    return argv


def ours_launched_loop(options: TrainOptions, processes: int, folder: Path) -> float:
    """Seconds per iteration (after the first) of train.py run from ``options`` (their batch
    per process; ``command_args``: train.py's own flags, threads and device included) as
    ``processes`` data-parallel processes by ``paddle.distributed.launch``, from the minutes its
    train_log.csv records; RunError when it fails or takes over ``CHILD_TIMEOUT_S``."""
    command = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(processes),
               '--log_dir', str(folder / 'launch_logs'), str(TRAIN_SCRIPT),
               *command_args(replace(options, checkpoint_every=10 ** 6))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                              env={**os.environ, **cpu_launch_env(processes)})
    except subprocess.TimeoutExpired:
        raise RunError(f'{processes} launched processes of train.py took over {CHILD_TIMEOUT_S} s: stopped') from None
    log = Path(options.output) / 'train_log.csv'
    if done.returncode or not log.is_file():
        raise RunError(f'{processes} launched processes of train.py failed: {done.stderr.strip()[-300:]}')
    with open(log, newline='') as f:
        minutes = [float(row['minutes']) for row in csv.DictReader(f)]
    return per_iteration([60 * m for m in minutes])


def ppdet_loop(family: str, state_file: str, options: TrainOptions, bench: TrainBench, root: Path,
               folder: Path) -> float:
    """Seconds per iteration (after the first) of PaddleDetection's own ``Trainer`` with its
    reader on ``root``, the model of ``family`` holding the weights in ``state_file`` (npz),
    the targets and data workers of our run's config (``options``)."""
    from solov2.tools.dev.reference import ppdet_ref, ppdet_train
    tune_for('cpu', bench.threads, helper_threads=0)
    cfg = with_overrides(get_config(options.config), list(options.overrides))
    model = ppdet_ref.FAMILIES[family]()
    with np.load(state_file) as state:
        model.set_state_dict({name: state[name] for name in state.files})
    path = folder / 'ppdet_reader.yml'
    path.write_text(ppdet_train.READER_YAML.format(
        folder=folder, workers=cfg.num_workers, lr=LR, momentum=MOMENTUM, decay=L2_DECAY, root=root, size=bench.size,
        grids=list(cfg.num_grids), ranges=[list(r) for r in cfg.scale_ranges], sigma=cfg.sigma, batch=bench.batch))
    return per_iteration(ppdet_train.iteration_ends(model, str(path), bench.loop_iterations))


def peak_rss() -> int:
    """The peak resident set size of this process in bytes: its address space's high-water
    mark (``VmHWM``; not ``ru_maxrss``, which Linux carries over from the parent on exec)."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
    raise RunError('/proc/self/status has no VmHWM line — peak memory is measured on Linux only')


def _with_peak_rss(results, start_method: str, function, *args) -> None:
    multiprocessing.set_start_method(start_method, force=True)     # the data workers start as in a plain run
    try:
        results.put((function(*args), peak_rss()))
    except Exception as exc:     # noqa: BLE001  (handed to the parent, which raises it as one line)
        results.put(RunError(f'{getattr(function, "__name__", function)}: {type(exc).__name__}: {exc}'))


def in_own_process(function, *args, timeout: float = CHILD_TIMEOUT_S) -> tuple:
    """(``function(*args)``, the peak resident set size in bytes of the fresh (spawned, not
    forked) process that ran it); RunError when it fails, dies or takes over ``timeout`` seconds
    (then it is killed)."""
    context = multiprocessing.get_context('spawn')
    results = context.Queue()
    child = context.Process(target=_with_peak_rss, args=(results, multiprocessing.get_start_method(), function,
                                                          *args))
    child.start()
    name, deadline = getattr(function, '__name__', str(function)), time.monotonic() + timeout
    try:
        answer = _answer(results, child, deadline)
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
    if answer is None:
        raise RunError(f'{name} took over {timeout:.0f} s (or its process died: exit code {child.exitcode}): stopped')
    if isinstance(answer, RunError):
        raise answer
    return answer


def _answer(results, child, deadline: float):
    """What ``child`` puts in ``results``; None when it dies without answering or ``deadline`` passes."""
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            if not child.is_alive():
                try:
                    return results.get(timeout=1)       # what it put just before it ended
                except queue.Empty:
                    return None
    return None


def measure(number: int, family: str, reference, weights: str, bench: TrainBench, root: Path, folder: Path) -> dict:
    """Every training measurement of config ``number`` (our ``weights`` = the converted
    weights of ``reference``, PaddleDetection's model of ``family``): a row for the report."""
    options = ours_options(number, bench, root, weights, folder / f'ours_run{number}')
    state_file = folder / f'ppdet{number}.npz'
    np.savez(state_file, **{name: value.numpy() for name, value in reference.state_dict().items()})
    with run_settings(options) as hold, hold():      # both models' steps on the options' device and threads
        trainer, _ = prepare(options, evaluate=None, placement=hold)
        ours, theirs = step_batches(trainer, bench.batch)
        trainer.model.train()
        timed = interleaved({'ours': lambda: trainer.step(ours)['loss'], 'ppdet': ppdet_step(reference, theirs)},
                            bench.steps)
    ours_iteration, ours_rss = in_own_process(ours_loop, options)
    ppdet_iteration, ppdet_rss = in_own_process(ppdet_loop, family, str(state_file), options, bench, root, folder)
    launched = None
    if bench.processes:
        per_process = replace(bench, batch=bench.batch // bench.processes,    # each its share of the threads
                              threads=max(1, bench.threads // bench.processes) if bench.threads else 0)
        launched_options = ours_options(number, per_process, root, weights, folder / f'ours_launched{number}')
        launched = ours_launched_loop(launched_options, bench.processes, folder)
    height, width = ours['images'].shape[2:]
    return {'config': number, 'input': f'{bench.batch}x{height}x{width}',
            'ours_loss': timed['ours'][0], 'ppdet_loss': timed['ppdet'][0],
            'ours_step': timed['ours'][1], 'ppdet_step': timed['ppdet'][1],
            'ours_iteration': ours_iteration, 'ppdet_iteration': ppdet_iteration,
            'ours_rss': ours_rss, 'ppdet_rss': ppdet_rss, 'processes': bench.processes,
            'ours_launched_iteration': launched}


HEADER = ('| config | input (B x H x W) | ours s/step | PaddleDetection s/step | PaddleDetection / ours | '
          'first loss ours / PaddleDetection | ours s/iteration | PaddleDetection s/iteration | '
          'PaddleDetection / ours | ours as data-parallel processes, s/iteration (PaddleDetection / ours) | '
          'peak RSS ours | peak RSS PaddleDetection |\n'
          '|---|---|---|---|---|---|---|---|---|---|---|---|')


def format_row(row: dict) -> str:
    """One table row of ``measure``'s result."""
    launched = row.get('ours_launched_iteration')
    launched = (f"{launched:.2f} ({row['processes']} processes; {row['ppdet_iteration'] / launched:.2f}x)"
                if launched else 'not measured')
    return (f"| {row['config']} | {row['input']} | {row['ours_step']:.2f} | {row['ppdet_step']:.2f} | "
            f"{row['ppdet_step'] / row['ours_step']:.2f}x | {row['ours_loss']:.3f} / {row['ppdet_loss']:.3f} | "
            f"{row['ours_iteration']:.2f} | {row['ppdet_iteration']:.2f} | "
            f"{row['ppdet_iteration'] / row['ours_iteration']:.2f}x | {launched} | "
            f"{row['ours_rss'] / 2 ** 20:.0f} MiB | {row['ppdet_rss'] / 2 ** 20:.0f} MiB |")


def report_section(rows, bench: TrainBench, machine: str, command: str) -> str:
    """The markdown section of ``measure`` rows, between ``MARKERS`` so that a later run replaces it."""
    return report.section(
        MARKERS, 'Training',
        f'Training on the CPU, both implementations with the same weights (a random PaddleDetection model, saved '
        f'and converted), the same synthetic shapes images (tools/make_shapes_dataset.py, one short side = '
        f'{bench.size}), batch {bench.batch}, learning rate {LR:g}, Momentum {MOMENTUM} with L2 decay {L2_DECAY:g} '
        f"(ours adds its config's gradient clipping). Machine: {machine}; command: `{command}`.",
        '"s/step" is the model step alone (forward, loss, backward, optimizer step; no data loading) on the '
        "same batch: ours is `Trainer.step` (what train.py runs) with our targets, PaddleDetection's is its "
        'model in train mode with its own targets (`Gt2Solov2Target`); one warm-up step each (its loss is '
        f'shown: the two target conventions differ, so the losses are a sanity check, not equal), then '
        f'{bench.steps} steps of each interleaved in one process, median. "s/iteration" is the whole loop, data '
        'loading included, each in a process of its own: ours is the run train.py builds (its loader and '
        "workers, Trainer, log), PaddleDetection's its own `ppdet.engine.Trainer` and reader (Decode, "
        'Poly2Mask, Resize, RandomFlip, NormalizeImage, Permute; PadBatch, Gt2Solov2Target), the same number '
        f'of data workers; mean over {bench.loop_iterations - 1} iterations after the first. "as data-parallel '
        f'processes" is train.py started by `python -m paddle.distributed.launch --nproc_per_node P` with its '
        f'own flags for these options, threads and device included (batch {bench.batch} in all, split over the '
        'P processes, each with its share of the cores: the way docs/training.md gives to use every core), from '
        'the minutes of its train_log.csv. "peak RSS" is the peak resident set size of that process (its '
        '`VmHWM`; its data-loading workers not counted).',
        '\n'.join([HEADER, *map(format_row, rows)]))
