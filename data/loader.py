"""Training dataset, batch collation and DataLoader construction.

Paddle's DataLoader turns the numpy arrays inside a collated batch's dicts, lists and tuples into
CPU tensors, and cannot move zero-sized ones (`[0, S, S]` masks of an image without instances)
out of worker processes: `collate_targets` returns an opaque object (the dataclass `BatchTargets`),
which comes out unchanged with its arrays."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from solov2.config.install import internals_checked
from solov2.core.errors import InputError, RunError
from solov2.core.paddle_import import paddle
from solov2.data.augment import Sample, TrainTransform
from solov2.data.coco import CocoDataset
from solov2.data.transforms import batch_images, pad_to

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1      # prctl's option (linux/prctl.h): the signal a process gets when its parent dies
FAILURE_KEY = 'loader_failure'     # the key of a failure batch (reporting_collate)

TargetFn = Callable[[np.ndarray, np.ndarray], Any]
CollateTargets = Callable[[list[Any]], Any]


class TrainDataset(paddle.io.Dataset):
    """Applies a `TrainTransform` to `source[index]` (the COCO reader's samples, or any indexable of
    such) with an rng seeded by (seed, epoch, index). An unreadable sample (`ValueError`) is replaced
    by another index drawn from that rng (a warning once per bad index and process); more than
    `max_failures` in a row raise `InputError`. An empty `source` raises `ValueError` (the COCO reader
    refuses a training set without instances first, `require_instances`)."""

    def __init__(self, source: CocoDataset, transform: TrainTransform, seed: int = 0, max_failures: int = 20) -> None:
        super().__init__()
        if len(source) == 0:
            raise ValueError('TrainDataset needs a non-empty sample source')
        self.source, self.transform = source, transform
        self.seed, self.max_failures = seed, max_failures
        self.epoch = 0
        self._warned: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random augmentations `__getitem__` draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Sample:
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        current = int(index)
        for _ in range(self.max_failures + 1):
            try:
                sample = self.source[current]
            except ValueError as err:
                replacement = int(rng.integers(len(self.source)))
                if current not in self._warned:
                    self._warned.add(current)
                    logger.warning('skipping unreadable sample %d (%s); using sample %d instead', current, err,
                                   replacement)
                current = replacement
                continue
            return self.transform(sample, rng)
        raise InputError(f'more than {self.max_failures} consecutive unreadable samples from index {index}; '
                         'check the dataset paths')


def collate_batch(samples: Sequence[Sample], target_fn: TargetFn, collate_targets: CollateTargets) -> dict[str, Any]:
    """`{'images': [B, 3, H, W] float32, 'targets': ..., 'image_ids': list[int]}` of `TrainTransform`
    outputs, zero-padded to the largest; `targets` is `collate_targets` of each image's
    `target_fn(masks [N, H, W] uint8, labels [N] int64)`."""
    images = batch_images([sample['image'] for sample in samples])
    height, width = images.shape[2:]
    per_image = [target_fn(pad_to(sample['masks'], height, width), sample['labels']) for sample in samples]
    return {'images': images, 'targets': collate_targets(per_image),
            'image_ids': [int(sample['image_id']) for sample in samples]}


class SeededSampler(paddle.io.Sampler):
    """Yields `range(n)` permuted by an rng seeded by (seed, epoch)."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        super().__init__()
        self.num_samples, self.seed = num_samples, seed
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch whose permutation `__iter__` yields, from position `start`
        (to resume mid-epoch without reading the samples already used)."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.num_samples)
        return iter(order[self.start:].tolist())

    def __len__(self) -> int:
        return self.num_samples - self.start


class ResumableDistributedBatchSampler(paddle.io.DistributedBatchSampler):
    """Paddle's ``DistributedBatchSampler`` (this rank's share of each epoch's shuffle)
    that can start an epoch at a batch: ``set_epoch(epoch, start)`` skips ``start`` of the
    rank's batches as indices, so a resumed run reads no sample it does not train on."""
    start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's shuffle, from this rank's batch ``start``."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[list]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


class LoaderError(RunError):
    """Making a sample or a batch failed in Paddle's loader thread (`num_workers=0`): carried out of it
    in the sample or batch, raised where the loader is iterated."""


def reporting_collate(collate: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    """`collate` whose exceptions, and samples that are a `LoaderError`, become a failure batch:
    the batch that carries the `LoaderError` through Paddle's loader queue to the iterating thread
    (under `FAILURE_KEY`; Paddle ends the iteration at a batch without arrays, so it holds a
    one-byte array too)."""
    def guarded(samples: list[Any]) -> Any:
        failed = next((sample for sample in samples if isinstance(sample, LoaderError)), None)
        try:
            if failed is None:
                return collate(samples)
        except Exception as err:
            failed = LoaderError(f'batch: {type(err).__name__}: {err}')
        return {FAILURE_KEY: failed, 'flag': np.zeros(1, np.uint8)}
    return guarded


class ReportingDataset(paddle.io.Dataset):
    """`dataset` whose exceptions come out of Paddle's single-process loader thread as a
    `LoaderError` sample instead. (Paddle's thread ends on an exception and the iterating
    thread then waits for the next batch forever: one bad annotation hung training with
    num_workers=0.) Its `set_epoch` is the wrapped dataset's."""

    def __init__(self, dataset: TrainDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> Sample | LoaderError:
        try:
            return self.dataset[index]
        except Exception as err:
            return LoaderError(f'sample {index}: {type(err).__name__}: {err}')


class ReportingLoader(paddle.io.DataLoader):
    """Paddle's DataLoader without workers, over a `ReportingDataset` with `reporting_collate`:
    the first failure batch (`reporting_collate`) ends the iteration with `LoaderError`, in whichever thread
    iterates (no signal, no change to the process)."""

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        try:
            for batch in batches:
                if isinstance(batch, dict) and FAILURE_KEY in batch:
                    raise batch[FAILURE_KEY]
                yield batch
        finally:
            shut_down(batches)


def shut_down(batches: Iterator[Any]) -> None:
    """End an iteration over a DataLoader now: Paddle's iterator (its thread holds it and its
    workers alive, so one left early never ends) or a generator over one. Paddle has no public
    call for it: on the checked lines (``internals_checked``) its private ``_try_shutdown_all()``,
    after, without workers, ``_reader.shutdown()`` as at an epoch's end (closing the queue under a
    running reader crashed a process now and then); on another line they live until the process ends."""
    stop = getattr(batches, '_try_shutdown_all', None) if internals_checked() else None
    if stop is not None:
        if not hasattr(batches, '_workers') and hasattr(batches, '_reader'):
            batches._reader.shutdown()
        stop()
    elif hasattr(batches, 'close'):
        batches.close()


@contextlib.contextmanager
def loader_batches(loader: paddle.io.DataLoader) -> Iterator[Iterator[Any]]:
    """``with loader_batches(loader) as batches: for batch in batches: ...``: one iteration
    over ``loader`` that ends its thread and worker processes when the block ends, also after
    a ``break`` or an error. Paddle's iterator with worker processes draws their seed from
    numpy's global generator: its state is put back (the host's numbers are not ours to draw)."""
    state = np.random.get_state()
    batches = iter(loader)
    np.random.set_state(state)
    try:
        yield batches
    finally:
        shut_down(batches)


def die_with_parent(worker_id: int, parent: int) -> None:
    """DataLoader `worker_init_fn` (`parent` bound: the training process's pid): the worker ends
    when that process dies, even by `kill -9` (no orphan loaders). Linux: the kernel's parent-death
    signal; elsewhere a daemon thread that polls the parent's pid."""
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:       # the parent died before prctl took effect
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name='die-with-parent').start()


def build_train_loader(dataset: TrainDataset, batch_size: int, target_fn: TargetFn, collate_targets: CollateTargets,
                       num_workers: int, seed: int = 0, distributed: bool = False) -> paddle.io.DataLoader:
    """DataLoader of `collate_batch` batches of `dataset` (`'images'` a `paddle.Tensor`), shuffled,
    the last incomplete batch dropped; `set_epoch(loader, epoch)` before each epoch. `distributed`:
    Paddle's `DistributedBatchSampler` shards it (its shuffle ignores `seed`). With workers,
    `target_fn` and `collate_targets` must be picklable and the workers die with this process
    (`die_with_parent`); without, a sample that raises ends the iteration with `LoaderError`."""
    if distributed:
        batch_sampler = ResumableDistributedBatchSampler(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    else:
        batch_sampler = paddle.io.BatchSampler(sampler=SeededSampler(len(dataset), seed), batch_size=batch_size,
                                               drop_last=True)
    collate = functools.partial(collate_batch, target_fn=target_fn, collate_targets=collate_targets)
    if num_workers:
        return paddle.io.DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, num_workers=num_workers,
                                    worker_init_fn=functools.partial(die_with_parent, parent=os.getpid()),
                                    return_list=True)
    return ReportingLoader(ReportingDataset(dataset), batch_sampler=batch_sampler,
                           collate_fn=reporting_collate(collate), return_list=True)


def set_epoch(loader: paddle.io.DataLoader, epoch: int, skip_batches: int = 0) -> None:
    """Set the epoch of a `build_train_loader` loader (its shuffle and augmentation) and
    start it after `skip_batches` batches (this rank's, when distributed), without reading
    the samples skipped."""
    batch_sampler = loader.batch_sampler
    loader.dataset.set_epoch(epoch)
    if isinstance(batch_sampler, ResumableDistributedBatchSampler):
        batch_sampler.set_epoch(epoch, skip_batches)
    else:
        batch_sampler.sampler.set_epoch(epoch, skip_batches * batch_sampler.batch_size)
