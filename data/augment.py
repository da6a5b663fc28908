"""Training augmentation of the COCO reader's samples (`data.coco`): functions that return a new
dict (arrays that do not change may be shared), the `random_*` ones drawing from an explicit
`np.random.Generator`; resizing, normalisation and padding are `data.transforms`', as inference's."""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np

from solov2.data.transforms import normalize, pad_to_multiple, resized_hw

Sample = dict[str, Any]


def hflip(sample: Sample) -> Sample:
    """Mirror image and masks left-right."""
    return {**sample, 'image': np.ascontiguousarray(sample['image'][:, ::-1]),
            'masks': np.ascontiguousarray(sample['masks'][:, :, ::-1])}


def resize_sample(sample: Sample, short: int, max_size: int) -> Sample:
    """Keep-ratio resize (`transforms.resized_hw`, bilinear) of the image; the masks follow with
    nearest-neighbour interpolation, so they stay 0/1."""
    (height, width), _ = resized_hw(*sample['image'].shape[:2], short, max_size)
    image = cv2.resize(sample['image'], (width, height), interpolation=cv2.INTER_LINEAR)
    masks = np.zeros((len(sample['masks']), height, width), dtype=sample['masks'].dtype)
    for index, mask in enumerate(sample['masks']):
        masks[index] = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return {**sample, 'image': image, 'masks': masks}


def crop_sample(sample: Sample, y0: int, x0: int, h: int, w: int) -> Sample:
    """Crop the window `[y0:y0+h, x0:x0+w]` (inside the image, else ValueError: never clipped) out of image
    and masks; instances whose cropped mask is empty are dropped."""
    height, width = sample['image'].shape[:2]
    if h <= 0 or w <= 0 or y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise ValueError(f'crop ({y0}, {x0}, {h}, {w}) outside image of size {(height, width)}')
    masks = sample['masks'][:, y0 : y0 + h, x0 : x0 + w]
    keep = masks.any(axis=(1, 2))
    return {**sample, 'image': np.ascontiguousarray(sample['image'][y0 : y0 + h, x0 : x0 + w]),
            'masks': np.ascontiguousarray(masks[keep]), 'labels': sample['labels'][keep]}


def _grey(image: np.ndarray) -> np.ndarray:
    """Luma `[H, W]` float32 of a float32 `[H, W, 3]` RGB image, clipped to [0, 255] first."""
    return cv2.cvtColor(np.clip(image, 0, 255), cv2.COLOR_RGB2GRAY)


def distort_colour(image: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float) -> np.ndarray:
    """Photometric distortion of `[H, W, 3] uint8 RGB` into a new uint8 array: brightness,
    contrast, saturation (factors, 1: unchanged), then hue (degrees, in OpenCV's 2-degree steps)."""
    out = image.astype(np.float32)
    if brightness != 1:
        out = out * brightness
    if contrast != 1:           # each a blend: towards the mean grey, then the pixel's grey
        mean = float(_grey(out).mean())
        out = mean + contrast * (out - mean)
    if saturation != 1:
        grey = _grey(out)[..., None]
        out = grey + saturation * (out - grey)
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if hue != 0:
        hsv = cv2.cvtColor(result, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(hue / 2.0))) % 180).astype(np.uint8)
        result = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return result


def random_colour(sample: Sample, rng: np.random.Generator, strength: float) -> Sample:
    """`distort_colour` with each of its four parts applied with probability 0.5, factors in
    [1 - strength, 1 + strength] and a hue shift within 18 * strength degrees."""
    factors = []
    for low, high, neutral in [(1 - strength, 1 + strength, 1.0)] * 3 + [(-18 * strength, 18 * strength, 0.0)]:
        apply, value = rng.random() < 0.5, rng.uniform(low, high)     # both drawn, in this order
        factors.append(value if apply else neutral)
    return {**sample, 'image': distort_colour(sample['image'], *factors)}


def random_crop(sample: Sample, rng: np.random.Generator, min_scale: float = 0.5, max_tries: int = 10) -> Sample:
    """Crop a random window of area fraction in [min_scale, 1] and aspect (w/h) in [0.5, 2] in
    which some instance keeps half its pixels (any window without instances); after `max_tries`
    rejected draws the sample uncropped."""
    height, width = sample['image'].shape[:2]
    masks = sample['masks']
    areas = masks.sum(axis=(1, 2), dtype=np.int64)
    for _ in range(max_tries):
        area = rng.uniform(min_scale, 1.0) * height * width
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        h, w = int(round(math.sqrt(area / aspect))), int(round(math.sqrt(area * aspect)))
        if not (0 < h <= height and 0 < w <= width):
            continue
        y0, x0 = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))     # drawn in this order
        if len(masks):
            visible = masks[:, y0 : y0 + h, x0 : x0 + w].sum(axis=(1, 2), dtype=np.int64)
            if not np.any((areas > 0) & (2 * visible >= areas)):
                continue
        return crop_sample(sample, y0, x0, h, w)
    return dict(sample)


class TrainTransform:
    """Random crop -> multi-scale resize (short side drawn from `shorts`) -> flip -> colour ->
    normalise + pad. `__call__(sample, rng)` gives `{'image': [3, Hp, Wp] float32, 'masks':
    [N, Hp, Wp] uint8, 'labels': [N] int64, 'image_id': int}`, zero-padded to multiples of 32.
    Empty `shorts` raise `ValueError`."""

    def __init__(self, shorts: Sequence[int], max_size: int, flip_prob: float = 0.5, colour_strength: float = 0.0,
                 crop_prob: float = 0.0) -> None:
        if not shorts:
            raise ValueError('TrainTransform needs at least one short side')
        self.shorts = tuple(int(short) for short in shorts)
        self.max_size, self.flip_prob = max_size, flip_prob
        self.colour_strength, self.crop_prob = colour_strength, crop_prob

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() < self.crop_prob:
            sample = random_crop(sample, rng)
        sample = resize_sample(sample, int(self.shorts[rng.integers(len(self.shorts))]), self.max_size)
        if rng.random() < self.flip_prob:
            sample = hflip(sample)
        if self.colour_strength > 0:
            sample = random_colour(sample, rng, self.colour_strength)
        return {'image': pad_to_multiple(normalize(sample['image'])), 'masks': pad_to_multiple(sample['masks']),
                'labels': np.asarray(sample['labels'], dtype=np.int64), 'image_id': int(sample['image_id'])}
