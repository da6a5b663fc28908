"""Pictures of several sizes in one padded batch change no output, on every config (model/region.py).

Pictures zero-padded at the bottom and right into one batch of a larger size (the largest of
them, or a size bucket), each with its own size as ``regions``, must each give the outputs of the
picture alone: every category level, every kernel level and the mask features (cropped to the
picture's own quarter size), to float rounding (``REL_TOL`` of each output's largest value).
Inputs are multiples of 32, so levels of stride 4..32 divide every side exactly; only P6 (stride
64, ``max_pool2d(P5, 1, 2)``: ceil(side / 64) rows) depends on the parity of a side in units of
32. The cases therefore put pictures of both parities each way into batches of both parities
(every (picture, batch) parity pair of each side), on every config's network (random weights,
eval mode, small grids: grids change no parameter and the heads read each picture's part whatever
their size), and every side of every config's real buckets (``data.transforms.bucket_sizes``)
with pictures of both parities, on config 9's narrow network (the pyramid's shapes are those of
every config).
"""
import numpy as np
import paddle
import pytest

from solov2.config import CONFIGS, with_overrides
from solov2.data.transforms import bucket_sizes
from solov2.model.build import build_model

REL_TOL = 1e-4
SMALL_GRIDS = ['num_grids=(8, 6, 4, 3, 2)']
# sides in pixels: 64 and 128 are even multiples of 32, 32 and 96 odd ones; each batch holds
# pictures of both parities each way, and the two batches have the two parities each way (every
# picture padded both ways: the smallest sides that do it)
PICTURES = [(32, 64), (64, 32)]
BATCHES = [(96, 128), (128, 96)]
REAL_SIDES = sorted({side for cfg in CONFIGS.values() for bucket in bucket_sizes(cfg.test_short, cfg.test_max)
                     for side in bucket})
NARROW = 64             # the other side of the real-bucket cases (unpadded)


@pytest.fixture(scope='module')
def run():
    """``run(N, pictures_hw, batch_hw)`` -> for each picture, (its outputs in one batch of
    ``batch_hw`` with the others, each with its own size as ``regions``; its outputs alone), each
    a list of [C, h, w] arrays (category levels, kernel levels, mask features); models and the
    pictures' own outputs built once, on the CPU (Paddle's device put back after the module)."""
    models, alone = {}, {}

    def outputs(out, row, hw):
        return [t[row].numpy() for t in out['cate_logits']] + [t[row].numpy() for t in out['kernels']] + \
            [out['mask_feat'][row, :, :hw[0] // 4, :hw[1] // 4].numpy()]

    def picture(hw):
        return np.random.RandomState(sum(hw) + hw[0]).standard_normal((3, *hw)).astype(np.float32)

    def run_batch(number, pictures_hw, batch_hw):
        if number not in models:
            paddle.seed(number)
            models[number] = build_model(with_overrides(CONFIGS[number], SMALL_GRIDS))
            models[number].eval()
        padded = np.zeros((len(pictures_hw), 3, *batch_hw), np.float32)
        for row, hw in enumerate(pictures_hw):
            padded[row, :, :hw[0], :hw[1]] = picture(hw)
        with paddle.no_grad():
            for hw in pictures_hw:
                if (number, hw) not in alone:
                    alone[number, hw] = outputs(models[number](paddle.to_tensor(picture(hw)[None])), 0, hw)
            batched = models[number](paddle.to_tensor(padded), paddle.to_tensor(pictures_hw, dtype='int64'))
        return [(outputs(batched, row, hw), alone[number, hw]) for row, hw in enumerate(pictures_hw)]
    previous = paddle.get_device()
    paddle.set_device('cpu')
    yield run_batch
    paddle.set_device(previous)


def _assert_same(got, expected, case) -> None:
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, (case, index)
        np.testing.assert_allclose(a, b, rtol=0, atol=REL_TOL * np.abs(b).max(), err_msg=f'{case}, output {index}')


@pytest.mark.parametrize('batch_hw', BATCHES, ids=lambda hw: f'{hw[0]}x{hw[1]}')
@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_pictures_of_several_sizes_in_one_batch_change_no_output_on_any_config(run, number, batch_hw):
    """Config N, two pictures of both parities each way padded into one batch: every output of
    each equals the picture's own."""
    for hw, (got, expected) in zip(PICTURES, run(number, PICTURES, batch_hw)):
        _assert_same(got, expected, (number, hw, batch_hw))


@pytest.mark.parametrize('side', REAL_SIDES)
def test_every_real_bucket_side_changes_no_output(run, side):
    """Each side of every config's real buckets (800, 1344, 608, 864, ...), with pictures of an
    odd and an even multiple of 32 below it in one batch, on config 9 (the other side unpadded)."""
    pictures = [(side - 32, NARROW), (side - 64, NARROW)]
    for hw, (got, expected) in zip(pictures, run(9, pictures, (side, NARROW))):
        _assert_same(got, expected, (side, hw))


def test_without_regions_the_padding_moves_the_outputs():
    """What the cases above rule out: the same padded batch without ``regions`` (config 9)."""
    paddle.seed(9)
    model = build_model(with_overrides(CONFIGS[9], SMALL_GRIDS))
    model.eval()
    hw = PICTURES[0]
    picture = np.random.RandomState(0).standard_normal((1, 3, *hw)).astype(np.float32)
    padded = np.zeros((1, 3, *BATCHES[0]), np.float32)
    padded[:, :, :hw[0], :hw[1]] = picture
    with paddle.no_grad():
        alone = model(paddle.to_tensor(picture))['mask_feat'].numpy()
        unaware = model(paddle.to_tensor(padded))['mask_feat'][:, :, :hw[0] // 4, :hw[1] // 4].numpy()
    assert np.abs(unaware - alone).max() > 1e-2 * np.abs(alone).max()
