"""Cheaper dygraph forms of three ops whose Paddle CPU kernels are slow in training (at [4, 32, 64,
64] a conv's bias add, nearest x2 and bilinear x2 take 11-15 ms forward + backward; a batch-broadcast
add, strided slices and two small products 1-3 ms), the same numbers up to float rounding. Under
``paddle.jit.to_static`` and on GPUs the plain ops. Their backward gives each input a gradient of its
own dtype (Paddle 3.x refuses another under mixed precision).
"""
from functools import lru_cache

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer


def expand_channels(values: paddle.Tensor, x: paddle.Tensor) -> paddle.Tensor:
    """values [C] laid out as [C, H, W] for x [N, C, H, W]: combined with x, it broadcasts
    over the batch only, which takes Paddle's fast CPU path (a [1, C, 1, 1] operand does not)."""
    _, channels, height, width = x.shape
    return values.astype(x.dtype).reshape([channels, 1, 1]).expand([channels, height, width])


def in_input_dtypes(grads, inputs) -> tuple:
    """A custom layer's gradients, each cast to the dtype of its input (``inputs``: the
    tensors or dtypes, None where an input is not a tensor; a None gradient stays None)."""
    dtypes = [getattr(t, 'dtype', t) for t in inputs]
    return tuple(g if g is None or g.dtype == d else g.astype(d) for g, d in zip(grads, dtypes))


def cpu_dygraph(x: paddle.Tensor) -> bool:
    """True in dynamic mode for a tensor on a CPU place: where the CPU fast forms apply."""
    return paddle.in_dynamic_mode() and x.place.is_cpu_place()


class _ChannelBiasAdd(PyLayer):
    @staticmethod
    def forward(ctx, x, bias):
        ctx.dtypes = (x.dtype, bias.dtype)
        return x + expand_channels(bias, x)

    @staticmethod
    def backward(ctx, grad):
        return in_input_dtypes((grad, grad.sum(axis=[0, 2, 3])), ctx.dtypes)


def add_channel_bias(x: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
    """x [N, C, H, W] + bias [C] per channel -> [N, C, H, W]."""
    return _ChannelBiasAdd.apply(x, bias) if cpu_dygraph(x) else x + bias.reshape([1, -1, 1, 1])


class _NearestUp2(PyLayer):
    @staticmethod
    def forward(ctx, x):
        ctx.dtypes = (x.dtype,)
        return F.interpolate(x, scale_factor=2, mode='nearest')

    @staticmethod
    def backward(ctx, grad):
        return in_input_dtypes((grad[:, :, 0::2, 0::2] + grad[:, :, 1::2, 0::2]
                                + grad[:, :, 0::2, 1::2] + grad[:, :, 1::2, 1::2],), ctx.dtypes)[0]


def upsample_nearest(x: paddle.Tensor, size) -> paddle.Tensor:
    """Nearest-neighbour resize of x [N, C, H, W] to ``size`` (H', W'); the common
    exact x2 case in dygraph on a CPU has the cheap backward."""
    if cpu_dygraph(x) and list(size) == [2 * x.shape[2], 2 * x.shape[3]]:
        return _NearestUp2.apply(x)
    return F.interpolate(x, size=size, mode='nearest')


@lru_cache(maxsize=64)
def _bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of a 1-D linear resize with half-pixel centres
    (align_corners=False, align_mode=0), with Paddle's float32 source positions."""
    ratio = np.float32(size_in / size_out)
    matrix = np.zeros((size_out, size_in), np.float32)
    for out in range(size_out):
        src = max(ratio * np.float32(out + 0.5) - np.float32(0.5), np.float32(0.0))
        low = int(src)
        weight = np.float32(src - low)
        matrix[out, low] += np.float32(1.0) - weight
        matrix[out, min(low + 1, size_in - 1)] += weight
    return matrix


def resize_bilinear_matmul(x: paddle.Tensor, size) -> paddle.Tensor:
    """Bilinear resize of x [N, C, H, W] to ``size`` (H', W') as ``A_h @ x @ A_w^T``;
    the same numbers as ``F.interpolate(mode='bilinear', align_corners=False)``, with a
    backward of two small matrix products instead of Paddle's slow CPU kernel."""
    height, width = x.shape[2], x.shape[3]
    rows = paddle.to_tensor(_bilinear_matrix(height, int(size[0])), dtype=x.dtype)
    cols = paddle.to_tensor(_bilinear_matrix(width, int(size[1])), dtype=x.dtype)
    return paddle.matmul(rows, paddle.matmul(x, cols, transpose_y=True))
