"""The cheaper dygraph ops give Paddle's own numbers, forward and backward."""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from solov2.model import fast_ops
from solov2.model.fast_ops import add_channel_bias, resize_bilinear_matmul, upsample_nearest
from solov2.model.layers import Conv2D, resize_bilinear


def forward_backward(fn, *inputs):
    """fn(*inputs) and the gradients of sum(out * weights) for fixed random weights."""
    leaves = [paddle.to_tensor(a, stop_gradient=False) for a in inputs]
    out = fn(*leaves)
    weights = paddle.to_tensor(np.random.default_rng(1).standard_normal(out.shape).astype('float32'))
    (out * weights).sum().backward()
    return out.numpy(), [leaf.grad.numpy() for leaf in leaves]


def assert_same(ours, paddles, atol=1e-5):
    np.testing.assert_allclose(ours[0], paddles[0], atol=atol, rtol=1e-5)
    for got, want in zip(ours[1], paddles[1]):
        np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)


def test_channel_bias_add_matches_broadcast_add():
    rng = np.random.default_rng(0)
    x = rng.standard_normal([2, 5, 6, 7]).astype('float32')
    bias = rng.standard_normal([5]).astype('float32')
    ours = forward_backward(add_channel_bias, x, bias)
    plain = forward_backward(lambda a, b: a + b.reshape([1, -1, 1, 1]), x, bias)
    assert_same(ours, plain, atol=1e-4)


@pytest.mark.parametrize('kernel,bias,padding_mode', [
    (3, True, 'zeros'), (1, True, 'zeros'), (3, False, 'zeros'), (3, True, 'reflect')])
def test_conv_layer_matches_paddle_conv(kernel, bias, padding_mode):
    paddle.seed(3)
    ours = Conv2D(4, 6, kernel, padding=kernel // 2, bias_attr=None if bias else False,
                  padding_mode=padding_mode)
    plain = nn.Conv2D(4, 6, kernel, padding=kernel // 2, bias_attr=None if bias else False,
                      padding_mode=padding_mode)
    plain.set_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(plain.state_dict())
    x = np.random.default_rng(0).standard_normal([2, 4, 9, 8]).astype('float32')
    results = []
    for layer in (ours, plain):
        out, _ = forward_backward(layer, x)
        results.append((out, [p.grad.numpy() for p in layer.parameters()]))
    assert_same(*results, atol=1e-4)


def test_nearest_x2_matches_interpolate():
    x = np.random.default_rng(0).standard_normal([2, 3, 5, 4]).astype('float32')
    ours = forward_backward(lambda a: upsample_nearest(a, [10, 8]), x)
    plain = forward_backward(lambda a: F.interpolate(a, size=[10, 8], mode='nearest'), x)
    assert_same(ours, plain)


def test_nearest_other_sizes_fall_back():
    x = np.random.default_rng(0).standard_normal([1, 2, 5, 4]).astype('float32')
    ours = forward_backward(lambda a: upsample_nearest(a, [11, 8]), x)
    plain = forward_backward(lambda a: F.interpolate(a, size=[11, 8], mode='nearest'), x)
    assert_same(ours, plain)


@pytest.mark.parametrize('size_in,size_out', [
    ((8, 8), (16, 16)), ((16, 12), (8, 6)), ((13, 17), (12, 12)), ((4, 6), (20, 20)),
    ((25, 38), (40, 40)), ((1, 1), (3, 3)), ((7, 5), (7, 5))])
def test_bilinear_matmul_matches_interpolate(size_in, size_out):
    x = np.random.default_rng(0).standard_normal([2, 3, *size_in]).astype('float32')
    ours = forward_backward(lambda a: resize_bilinear_matmul(a, list(size_out)), x)
    plain = forward_backward(lambda a: F.interpolate(a, size=list(size_out), mode='bilinear',
                                                     align_corners=False, align_mode=0), x)
    assert_same(ours, plain)


def test_resize_bilinear_takes_the_matmul_form_only_for_training_tensors(monkeypatch):
    calls = []
    monkeypatch.setattr('solov2.model.layers.resize_bilinear_matmul',
                        lambda x, size: calls.append(size) or resize_bilinear_matmul(x, size))
    x = paddle.randn([1, 2, 4, 4])
    resize_bilinear(x, [8, 8])
    assert calls == []
    x.stop_gradient = False
    resize_bilinear(x, [8, 8])
    assert calls == [[8, 8]]


@pytest.mark.parametrize('dtype, op_dtype', [('float32', 'float64'), ('float16', 'float32'), ('bfloat16', 'float32')])
def test_nearest_x2_gradient_has_the_input_dtype_when_the_op_casts(dtype, op_dtype, monkeypatch):
    """Under mixed precision nearest_interp is black-listed: a float16 input gives a float32
    output (replayed here by casting before the op). The backward hands the input a gradient
    of its own dtype with the right values (Paddle 2.6 took a float32 one unchecked, 3.x
    refuses it)."""
    interpolate = F.interpolate
    monkeypatch.setattr(fast_ops.F, 'interpolate', lambda x, **kwargs: interpolate(x.astype(op_dtype), **kwargs))
    x = paddle.to_tensor(np.arange(6, dtype=np.float32).reshape([1, 1, 2, 3])).astype(dtype)
    x.stop_gradient = False
    out = upsample_nearest(x, [4, 6])
    assert out.dtype == getattr(paddle, op_dtype)
    (out * paddle.arange(24, dtype=op_dtype).reshape([1, 1, 4, 6])).sum().backward()
    assert x.grad.dtype == x.dtype
    cells = np.arange(24, dtype=np.float64).reshape(2, 2, 3, 2).transpose(0, 2, 1, 3).sum(axis=(2, 3))
    np.testing.assert_allclose(x.grad.astype('float32').numpy()[0, 0], cells, rtol=1e-2)


def test_channel_bias_add_gradients_have_their_inputs_dtypes():
    """An activation and a bias of different dtypes (under mixed precision a half activation
    and a float32 bias; float64 and float32 here, for the CPU's kernels): each gradient comes
    back in its own input's dtype."""
    x = paddle.ones([2, 3, 4, 5], dtype='float64')
    bias = paddle.to_tensor([1.0, 2.0, 3.0])
    x.stop_gradient = bias.stop_gradient = False
    out = add_channel_bias(x, bias)
    assert out.dtype == x.dtype
    out.sum().backward()
    assert x.grad.dtype == paddle.float64 and bias.grad.dtype == paddle.float32
    np.testing.assert_array_equal(bias.grad.numpy(), [40.0, 40.0, 40.0])
