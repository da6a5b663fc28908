"""Tests for data.loader with an in-memory sample source and fake targets."""

import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass

import numpy as np
import paddle
import pytest

from solov2.core.errors import InputError
from solov2.data.augment import TrainTransform
from solov2.data.loader import LoaderError, TrainDataset, build_train_loader, collate_batch, set_epoch, shut_down
from tests.helpers import REPO_DIR

SIZES = [(40, 60), (70, 30), (64, 64), (50, 50)]
BAD_INDEX = 3


def make_sample(index, height, width):
    rng = np.random.default_rng(index)
    masks = np.zeros((2, height, width), np.uint8)
    masks[0, 5:20, 5:20] = 1
    masks[1, 10:30, 8:25] = 1
    return {
        'image': rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        'masks': masks[: index % 3],  # 0, 1 or 2 instances
        'labels': np.arange(index % 3, dtype=np.int64),
        'image_id': 100 + index,
        'file_name': f'{index}.jpg',
    }


class MemorySource:
    """`len(SIZES) * repeat` samples; indices equal to BAD_INDEX mod len(SIZES) are unreadable."""

    def __init__(self, repeat=1, bad=(BAD_INDEX,)):
        self.repeat = repeat
        self.bad = bad

    def __len__(self):
        return len(SIZES) * self.repeat

    def __getitem__(self, index):
        if index % len(SIZES) in self.bad:
            raise ValueError(f'cannot read image bad_{index}.jpg')
        return make_sample(index, *SIZES[index % len(SIZES)])


@dataclass
class FakeBatchTargets:
    shapes: list
    areas: list
    labels: list


def fake_target_fn(masks, labels):
    return masks.shape, masks.sum(axis=(1, 2)), labels


def fake_collate_targets(items):
    return FakeBatchTargets(*(list(column) for column in zip(*items)))


def make_dataset(repeat=1, seed=0):
    transform = TrainTransform([32, 48], 96, flip_prob=0.5, colour_strength=0.2, crop_prob=0.5)
    return TrainDataset(MemorySource(repeat), transform, seed=seed)


def test_collate_pads_images_and_masks():
    dataset = make_dataset()
    samples = [dataset[0], dataset[1], dataset[2]]
    batch = collate_batch(samples, fake_target_fn, fake_collate_targets)
    images = batch['images']
    height = max(s['image'].shape[1] for s in samples)
    width = max(s['image'].shape[2] for s in samples)
    assert images.shape == (3, 3, height, width) and images.dtype == np.float32
    assert height % 32 == 0 and width % 32 == 0
    for index, sample in enumerate(samples):
        _, h, w = sample['image'].shape
        np.testing.assert_array_equal(images[index, :, :h, :w], sample['image'])
        assert not images[index, :, h:].any() and not images[index, :, :, w:].any()
        assert batch['targets'].shapes[index] == (len(sample['labels']), height, width)
        np.testing.assert_array_equal(
            batch['targets'].areas[index], sample['masks'].sum(axis=(1, 2))
        )
        np.testing.assert_array_equal(batch['targets'].labels[index], sample['labels'])
    assert batch['image_ids'] == [100, 101, 102]


def test_bad_sample_is_replaced_and_logged_once(caplog):
    dataset = make_dataset()
    with caplog.at_level(logging.WARNING, logger='solov2.data.loader'):
        first = dataset[BAD_INDEX]
        second = dataset[BAD_INDEX]
    assert first['image_id'] != 100 + BAD_INDEX
    assert first['image_id'] == second['image_id']
    np.testing.assert_array_equal(first['image'], second['image'])
    messages = [r.getMessage() for r in caplog.records if 'bad_3.jpg' in r.getMessage()]
    assert len(messages) == 1


def test_all_bad_source_raises():
    dataset = TrainDataset(MemorySource(bad=(0, 1, 2, 3)), TrainTransform([32], 64), max_failures=5)
    with pytest.raises(InputError, match='more than 5'):
        dataset[0]


def test_augmentation_depends_on_epoch():
    dataset = make_dataset()
    images = []
    for epoch in (0, 1, 2, 3, 0):
        dataset.set_epoch(epoch)
        images.append(dataset[0]['image'])
    np.testing.assert_array_equal(images[0], images[-1])
    assert any(not np.array_equal(images[0], image) for image in images[1:4])


def epoch_batches(loader, epoch):
    set_epoch(loader, epoch)
    return [
        (batch['image_ids'], batch['images'].numpy(), batch['targets']) for batch in loader
    ]


def make_loader(num_workers, seed=0):
    return build_train_loader(
        make_dataset(repeat=3, seed=seed),
        batch_size=2,
        target_fn=fake_target_fn,
        collate_targets=fake_collate_targets,
        num_workers=num_workers,
        seed=seed,
    )


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (ids_a, images_a, targets_a), (ids_b, images_b, targets_b) in zip(first, second):
        assert ids_a == ids_b
        np.testing.assert_array_equal(images_a, images_b)
        assert targets_a.shapes == targets_b.shapes
        for a, b in zip(targets_a.areas, targets_b.areas):
            np.testing.assert_array_equal(a, b)


def test_loader_batches_deterministic_and_reshuffled():
    first = epoch_batches(make_loader(0), 0)
    assert len(first) == 6  # 12 samples, batch 2
    for ids, images, targets in first:
        assert images.shape[0] == 2 and images.dtype == np.float32
        assert images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0
        assert all(shape[1:] == images.shape[2:] for shape in targets.shapes)
        assert not any(i % len(SIZES) == BAD_INDEX for i in np.subtract(ids, 100))
    assert_same_batches(first, epoch_batches(make_loader(0), 0))
    order = [ids for ids, _, _ in first]
    assert order != [ids for ids, _, _ in epoch_batches(make_loader(0), 1)]
    assert order != [ids for ids, _, _ in epoch_batches(make_loader(0, seed=1), 0)]


def test_loader_with_worker_processes_matches_single_process():
    """In a fresh interpreter, as training runs: forked from this long-lived test process (which
    has loaded OpenVINO, NNCF and their threads), the workers' exit crashed it twice in CI, in
    the SIGCHLD handler Paddle's first loader with workers installs for the rest of a process."""
    same = ('from tests.data.test_loader import assert_same_batches, epoch_batches, make_loader; '
            'assert_same_batches(epoch_batches(make_loader(2), 1), epoch_batches(make_loader(0), 1))')
    done = subprocess.run([sys.executable, '-c', same], cwd=REPO_DIR, env={**os.environ, 'PYTHONPATH': str(REPO_DIR)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def failing_target_fn(masks, labels):
    raise KeyError('segmentation')


def _first_error(loader, in_thread: bool) -> BaseException:
    """What iterating `loader` through raises, in this thread or another one (a hang fails)."""
    errors = []

    def run():
        try:
            list(loader)
        except BaseException as err:  # noqa: B036 -- handed to the test
            errors.append(err)
    if not in_thread:
        run()
        return errors[0]
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), 'the loader hung'
    return errors[0]


@pytest.mark.parametrize('in_thread', [False, True], ids=['main thread', 'another thread'])
@pytest.mark.parametrize('where', ['sample', 'batch'])
def test_an_error_without_workers_reaches_the_iterating_thread(where, in_thread):
    """Paddle's single-process loader thread ends on an exception and the thread iterating it
    then waits forever; the error must come out as LoaderError there instead, from any thread
    (a guest in a server's worker thread trains too)."""
    dataset = TrainDataset(MemorySource(bad=(0, 1, 2, 3)), TrainTransform([32], 64), max_failures=2) \
        if where == 'sample' else make_dataset()
    target_fn = fake_target_fn if where == 'sample' else failing_target_fn
    loader = build_train_loader(dataset, 2, target_fn, fake_collate_targets, num_workers=0)
    set_epoch(loader, 0)
    error = _first_error(loader, in_thread)
    assert isinstance(error, LoaderError), repr(error)
    assert re.search('more than 2 consecutive' if where == 'sample' else 'batch: KeyError.*segmentation', str(error))


@pytest.mark.parametrize('distributed', [False, True], ids=['seeded sampler', 'distributed sampler'])
def test_a_resumed_epoch_starts_at_its_batch_without_reading_the_skipped_ones(distributed, monkeypatch):
    """``set_epoch(loader, epoch, 2)`` gives the epoch's batches from the third on, and the
    samples of the first two are never read (the distributed sampler skipped them by reading
    and discarding whole batches before)."""
    def loader():
        return build_train_loader(make_dataset(repeat=3), batch_size=2, target_fn=fake_target_fn,
                                  collate_targets=fake_collate_targets, num_workers=0, distributed=distributed)
    whole = epoch_batches(loader(), 1)
    resumed, read, fetch = loader(), [], TrainDataset.__getitem__
    monkeypatch.setattr(TrainDataset, '__getitem__', lambda self, index: read.append(index) or fetch(self, index))
    set_epoch(resumed, 1, 2)
    assert len(resumed.batch_sampler) == len(whole) - 2
    assert_same_batches(whole[2:], [(b['image_ids'], b['images'].numpy(), b['targets']) for b in resumed])
    assert len(read) == 2 * (len(whole) - 2)


class PaddleIterator:
    """Stands for Paddle's DataLoader iterator without workers: notes the calls of its private
    shut-down, in order."""

    def __init__(self):
        self.calls = []
        self._reader = self

    def shutdown(self):         # its reader's
        self.calls.append('reader')

    def _try_shutdown_all(self):
        self.calls.append('all')


@pytest.mark.parametrize('version, calls', [('2.6.2', ['reader', 'all']), ('3.3.1', ['reader', 'all']),
                                            ('4.0.0', []), ('0.0.0', [])])
def test_paddle_s_private_shut_down_is_called_on_the_checked_paddle_lines_only(monkeypatch, version, calls):
    """As Paddle's iterator does at an epoch's end: the reader first, then the queue, thread and workers."""
    monkeypatch.setattr(paddle, '__version__', version)
    batches = PaddleIterator()
    shut_down(batches)
    assert batches.calls == calls
    batches = PaddleIterator()
    batches._workers = []           # with workers, the reader is left to the iterator: it waits for their thread
    shut_down(batches)
    assert batches.calls == calls[1:]


def test_an_empty_source_is_refused():
    """A helper or script that hands it no sample gets one clear error, not an epoch of nothing."""
    with pytest.raises(ValueError, match='non-empty sample source'):
        TrainDataset(MemorySource(repeat=0), TrainTransform([32], 64))
