"""Tests for data.augment."""

import numpy as np
import pytest

from solov2.data.augment import (
    TrainTransform,
    crop_sample,
    distort_colour,
    hflip,
    random_colour,
    random_crop,
    resize_sample,
)
from solov2.data.transforms import preprocess


def make_sample(height, width, boxes=(), labels=None, seed=0):
    """Random image with one rectangular instance per (y0, x0, y1, x1) box."""
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    masks = np.zeros((len(boxes), height, width), dtype=np.uint8)
    for index, (y0, x0, y1, x1) in enumerate(boxes):
        masks[index, y0:y1, x0:x1] = 1
    return {
        'image': image,
        'masks': masks,
        'labels': np.asarray(labels if labels is not None else range(len(boxes)), dtype=np.int64),
        'image_id': 7,
        'file_name': 'x.jpg',
    }


def assert_samples_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def copy_sample(sample):
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in sample.items()}


def test_hflip_twice_is_identity_and_moves_pixel():
    sample = make_sample(10, 16, [(2, 0, 5, 3)])
    original = copy_sample(sample)
    flipped = hflip(sample)
    assert_samples_equal(sample, original)  # input untouched
    np.testing.assert_array_equal(flipped['image'][4, 15], sample['image'][4, 0])
    assert flipped['masks'][0, 2:5, 13:].all() and flipped['masks'][0].sum() == 9
    assert_samples_equal(hflip(flipped), sample)


def test_resize_keeps_masks_binary_and_aligned():
    sample = make_sample(40, 60, [(10, 20, 20, 30)], seed=1)
    sample['image'][:] = 0
    sample['image'][10:20, 20:30, 0] = 255
    out = resize_sample(sample, 100, 1000)
    assert out['image'].shape == (100, 150, 3)
    assert out['masks'].shape == (1, 100, 150) and out['masks'].dtype == np.uint8
    assert set(np.unique(out['masks'])) <= {0, 1}
    red = out['image'][..., 0] > 127
    mask = out['masks'][0].astype(bool)
    assert (red & mask).sum() / (red | mask).sum() > 0.9
    centre_red = np.argwhere(red).mean(axis=0)
    centre_mask = np.argwhere(mask).mean(axis=0)
    assert np.abs(centre_red - centre_mask).max() < 1.0


def test_resize_exact_factor():
    sample = make_sample(20, 30, [(4, 6, 8, 12)])
    out = resize_sample(sample, 40, 1000)
    expected = np.zeros((40, 60), np.uint8)
    expected[8:16, 12:24] = 1
    np.testing.assert_array_equal(out['masks'][0], expected)


def test_crop_drops_emptied_instances_and_keeps_labels():
    sample = make_sample(20, 40, [(2, 2, 8, 8), (2, 30, 8, 36), (10, 5, 15, 35)], labels=[3, 5, 9])
    original = copy_sample(sample)
    left = crop_sample(sample, 0, 0, 20, 20)
    assert left['image'].shape == (20, 20, 3)
    np.testing.assert_array_equal(left['labels'], [3, 9])
    assert left['masks'].shape == (2, 20, 20)
    assert left['masks'][0].sum() == 36 and left['masks'][1].sum() == 5 * 15
    right = crop_sample(sample, 0, 25, 9, 15)
    np.testing.assert_array_equal(right['labels'], [5])
    assert right['masks'][0, 2:8, 5:11].all()
    np.testing.assert_array_equal(right['image'], sample['image'][:9, 25:40])
    assert_samples_equal(sample, original)


@pytest.mark.parametrize('window', [(5, 0, 20, 10), (0, 35, 10, 10), (-1, 0, 5, 5), (0, 0, 0, 5)])
def test_a_crop_window_outside_the_picture_is_refused_not_clipped(window):
    with pytest.raises(ValueError, match='outside image of size'):
        crop_sample(make_sample(20, 40, [(2, 2, 8, 8)]), *window)


def test_a_transform_without_short_sides_is_refused():
    with pytest.raises(ValueError, match='at least one short side'):
        TrainTransform((), 100)


def test_distort_colour_identity_and_saturation():
    image = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(distort_colour(image, 1, 1, 1, 0), image)
    bright = distort_colour(np.array([[[200, 100, 0]]], np.uint8), 2, 1, 1, 0)
    np.testing.assert_array_equal(bright, [[[255, 200, 0]]])
    grey = distort_colour(image, 1, 1, 0, 0).astype(int)
    assert np.abs(grey - grey[..., :1]).max() <= 1
    flat = distort_colour(image, 1, 0, 1, 0)
    assert flat.max() - flat.min() <= 1


def test_distort_colour_hue_wraps_around():
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(distort_colour(red, 1, 1, 1, 120), [[[0, 255, 0]]])
    np.testing.assert_array_equal(distort_colour(red, 1, 1, 1, -120), [[[0, 0, 255]]])


def _all_random(sample, seed):
    transform = TrainTransform([16, 24, 32], 100, colour_strength=0.5, crop_prob=0.5)
    return transform(sample, np.random.default_rng(seed))


def test_random_wrappers_deterministic_per_seed():
    sample = make_sample(30, 40, [(5, 5, 20, 20), (10, 25, 28, 38)])
    assert_samples_equal(_all_random(sample, 3), _all_random(sample, 3))
    outputs = [_all_random(sample, seed) for seed in range(6)]
    shapes = {out['image'].shape for out in outputs}
    assert len(shapes) > 1
    assert any(not np.array_equal(outputs[0]['image'], out['image']) for out in outputs[1:])


def test_random_crop_keeps_a_visible_instance():
    sample = make_sample(40, 40, [(0, 0, 6, 6)])
    cropped_any = False
    for seed in range(20):
        out = random_crop(sample, np.random.default_rng(seed), min_scale=0.3)
        assert len(out['labels']) == 1
        assert out['masks'][0].sum() >= 18
        cropped_any |= out['image'].shape != sample['image'].shape
    assert cropped_any
    unchanged = random_crop(sample, np.random.default_rng(0), max_tries=0)
    assert_samples_equal(unchanged, sample)


def test_random_crop_empty_image_is_cropped_freely():
    sample = make_sample(40, 40)
    shapes = {random_crop(sample, np.random.default_rng(s))['image'].shape for s in range(5)}
    assert shapes != {(40, 40, 3)}


def test_train_transform_shapes_and_padding():
    sample = make_sample(50, 70, [(5, 5, 40, 60)], labels=[4])
    transform = TrainTransform([40, 56], 200, flip_prob=0.5, colour_strength=0.4, crop_prob=0.5)
    for seed in range(4):
        out = transform(sample, np.random.default_rng(seed))
        _, hp, wp = out['image'].shape
        assert hp % 32 == 0 and wp % 32 == 0
        assert out['image'].dtype == np.float32
        assert out['masks'].shape == (len(out['labels']), hp, wp)
        assert out['masks'].dtype == np.uint8
        # the picture fills a top-left block, zeros around it (no real pixel normalises to an exact 0:
        # the means are not whole numbers), and the masks lie inside that block
        filled = out['image'].any(axis=0)
        h, w = int(filled.any(axis=1).sum()), int(filled.any(axis=0).sum())
        assert filled[:h, :w].all() and not filled[h:].any() and not filled[:, w:].any()
        assert not out['masks'][:, h:].any() and not out['masks'][:, :, w:].any()
        assert out['image_id'] == 7


def test_train_transform_without_augmentation_matches_preprocess():
    sample = make_sample(50, 70, [(5, 5, 40, 60)], labels=[4])
    transform = TrainTransform([48], 200, flip_prob=0, colour_strength=0, crop_prob=0)
    out = transform(sample, np.random.default_rng(0))
    expected, meta = preprocess(sample['image'], 48, 200)
    np.testing.assert_array_equal(out['image'], expected)
    h, w = meta.resized_hw
    assert out['masks'].shape[1:] == expected.shape[1:] and out['masks'][:, :h, :w].any()
    assert not out['masks'][:, h:].any() and not out['masks'][:, :, w:].any() and out['image_id'] == 7


def test_empty_samples_go_through_everything():
    sample = make_sample(30, 50)
    rng = np.random.default_rng(0)
    outputs = [
        hflip(sample),
        resize_sample(sample, 20, 100),
        crop_sample(sample, 1, 2, 10, 10),
        random_colour(sample, rng, 0.5),
        random_crop(sample, rng),
    ]
    for out in outputs:
        assert out['masks'].shape == (0, *out['image'].shape[:2])
        assert out['labels'].shape == (0,)
    out = TrainTransform([20, 24], 100, colour_strength=0.3, crop_prob=1.0)(sample, rng)
    assert out['masks'].shape == (0, *out['image'].shape[1:])
    assert out['labels'].dtype == np.int64
