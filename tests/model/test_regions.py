"""Size buckets change no output, on every config (model/layers.py's ``Region``).

A picture zero-padded at the bottom and right to a larger input (a size bucket), with its own
size as ``regions``, must give the outputs of the picture alone: every category level, every
kernel level and the mask features, to float rounding (``REL_TOL`` of each output's largest
value). Inputs are multiples of 32, so levels of stride 4..32 divide every side exactly; only
P6 (stride 64, ``max_pool2d(P5, 1, 2)``: ceil(side / 64) rows) depends on the parity of a side
in units of 32. The cases therefore cover the four (picture, bucket) parities of each side (even
or odd multiple of 32), on every config's network (random weights, eval mode, small grids:
grids change no parameter and the heads read the cropped pyramid whatever their size), and every
side of every config's real buckets (``data.transforms.bucket_sizes``) with pictures of both
parities, on config 9's narrow network (the pyramid's shapes are those of every config).
"""
import numpy as np
import paddle
import pytest

from solov2.config import CONFIGS, with_overrides
from solov2.data.transforms import bucket_sizes
from solov2.model.build import build_model

REL_TOL = 1e-4
SMALL_GRIDS = ['num_grids=(8, 6, 4, 3, 2)']
# (picture, bucket), sides in pixels: 64 and 128 are even multiples of 32, 96 and 160 odd ones;
# the heights go (even, even), (even, odd), (odd, even), (odd, odd), the widths the other way
PARITY_CASES = [((64, 96), (128, 160)), ((64, 96), (96, 128)), ((96, 64), (128, 96)), ((96, 64), (160, 128))]
REAL_SIDES = sorted({side for cfg in CONFIGS.values() for bucket in bucket_sizes(cfg.test_short, cfg.test_max)
                     for side in bucket})
NARROW = 64             # the other side of the real-bucket cases (unpadded)


@pytest.fixture(scope='module')
def run():
    """``run(N, picture_hw, bucket_hw)`` -> (outputs of the picture padded to the bucket with its
    size as ``regions``, outputs of the picture alone), each a list of [C, h, w] arrays (category
    levels, kernel levels, mask features); models and the pictures' own outputs built once, on
    the CPU (Paddle's device put back after the module)."""
    models, alone = {}, {}

    def outputs(out):
        return [t[0].numpy() for t in out['cate_logits']] + [t[0].numpy() for t in out['kernels']] + \
            [out['mask_feat'][0].numpy()]

    def run_one(number, picture_hw, bucket_hw):
        if number not in models:
            paddle.seed(number)
            models[number] = build_model(with_overrides(CONFIGS[number], SMALL_GRIDS))
            models[number].eval()
        picture = np.random.RandomState(sum(picture_hw)).standard_normal((1, 3, *picture_hw)).astype(np.float32)
        padded = np.zeros((1, 3, *bucket_hw), np.float32)
        padded[:, :, :picture_hw[0], :picture_hw[1]] = picture
        with paddle.no_grad():
            if (number, picture_hw) not in alone:
                alone[number, picture_hw] = outputs(models[number](paddle.to_tensor(picture)))
            bucketed = models[number](paddle.to_tensor(padded), paddle.to_tensor([picture_hw], dtype='int64'))
        return outputs(bucketed), alone[number, picture_hw]
    previous = paddle.get_device()
    paddle.set_device('cpu')
    yield run_one
    paddle.set_device(previous)


def _assert_same(got, expected, case) -> None:
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, (case, index)
        np.testing.assert_allclose(a, b, rtol=0, atol=REL_TOL * np.abs(b).max(), err_msg=f'{case}, output {index}')


@pytest.mark.parametrize('picture_hw, bucket_hw', PARITY_CASES, ids=lambda hw: f'{hw[0]}x{hw[1]}')
@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_a_bucket_changes_no_output_on_any_config(run, number, picture_hw, bucket_hw):
    """Config N, a picture padded to a bucket: every output equals the picture's own."""
    _assert_same(*run(number, picture_hw, bucket_hw), (number, picture_hw, bucket_hw))


@pytest.mark.parametrize('side', REAL_SIDES)
def test_every_real_bucket_side_changes_no_output(run, side):
    """Each side of every config's real buckets (800, 1344, 608, 864, ...), with pictures of an
    odd and an even multiple of 32 below it, on config 9 (the other side unpadded)."""
    for picture_side in (side - 32, side - 64):
        _assert_same(*run(9, (picture_side, NARROW), (side, NARROW)), (side, picture_side))
