"""model/deform_ops.py: the tensor-op CPU forward and backward equal Paddle's deformable_conv."""
import numpy as np
import paddle
import pytest
from paddle.vision.ops import deform_conv2d

import solov2.model.deform_ops as deform_ops
from solov2.model.deform_ops import deform_conv

paddle.set_device('cpu')


def _inputs(rs, batch, cin, cout, size, stride, groups, modulated, bias):
    """Random inputs; offsets are large, and a third of them integers, so samples fall outside
    the image, on its border and exactly on pixel positions."""
    h, w = size
    out_h, out_w = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
    offset = rs.uniform(-3, 3, (batch, 18, out_h, out_w))
    offset = np.where(rs.uniform(size=offset.shape) < 0.33, np.round(offset), offset)
    arrays = {'x': rs.standard_normal((batch, cin, h, w)), 'offset': offset,
              'weight': rs.standard_normal((cout, cin // groups, 3, 3)),
              'bias': rs.standard_normal(cout) if bias else None,
              'mask': rs.uniform(0, 1, (batch, 9, out_h, out_w)) if modulated else None}
    return {k: None if v is None else v.astype(np.float32) for k, v in arrays.items()}, (out_h, out_w)


def _run(fn, arrays, dout, stride, groups, x_grad):
    tensors = {k: None if v is None else paddle.to_tensor(v, stop_gradient=False) for k, v in arrays.items()}
    tensors['x'].stop_gradient = not x_grad
    out = fn(tensors['x'], tensors['offset'], tensors['weight'], tensors['bias'], stride=stride, padding=1,
             groups=groups, mask=tensors['mask'])
    (out * paddle.to_tensor(dout)).sum().backward()
    grads = {k: t.grad.numpy() for k, t in tensors.items() if t is not None and t.grad is not None}
    return out.numpy(), grads


@pytest.mark.parametrize('batch, size, stride, groups, modulated, bias, x_grad', [
    (1, (7, 9), 1, 1, True, False, True),
    (3, (7, 9), 2, 1, True, True, True),
    (3, (6, 5), 1, 2, False, True, True),
    (1, (9, 6), 2, 2, True, False, True),
    (3, (5, 8), 1, 1, False, False, True),
    (3, (7, 9), 1, 1, True, False, False),
    (1, (1, 1), 1, 1, True, True, True),
])
def test_tensor_ops_equal_paddle(batch, size, stride, groups, modulated, bias, x_grad, monkeypatch):
    calls = []
    for name in ('_conv_columns', '_deform_conv_grads'):
        real = getattr(deform_ops, name)
        monkeypatch.setattr(deform_ops, name, lambda *args, _real=real, _name=name, **kw:
                            calls.append(_name) or _real(*args, **kw))
    rs = np.random.RandomState(batch * 100 + stride * 10 + groups)
    arrays, (out_h, out_w) = _inputs(rs, batch, 4, 6, size, stride, groups, modulated, bias)
    dout = rs.standard_normal((batch, 6, out_h, out_w)).astype(np.float32)
    out, grads = _run(deform_conv, arrays, dout, stride, groups, x_grad)
    assert calls == ['_conv_columns', '_deform_conv_grads']
    ref_out, ref_grads = _run(deform_conv2d, arrays, dout, stride, groups, x_grad)
    # the forward sums in another order than Paddle's kernel: equal to float rounding
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5 * np.abs(ref_out).max())
    assert grads.keys() == ref_grads.keys()
    assert ('x' in grads) == x_grad and ('mask' in grads) == modulated and ('bias' in grads) == bias
    for name, ref in ref_grads.items():
        np.testing.assert_allclose(grads[name], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), err_msg=name)


def test_paddle_op_without_gradient(monkeypatch):
    """No gradient wanted (no_grad, or every input stop_gradient): Paddle's deform_conv2d as is."""
    monkeypatch.setattr(deform_ops, '_DeformConvTensorOps', None)
    rs = np.random.RandomState(0)
    arrays, _ = _inputs(rs, 1, 4, 6, (5, 5), 1, 1, True, True)
    tensors = {k: paddle.to_tensor(v) for k, v in arrays.items()}
    with paddle.no_grad():
        assert deform_conv(**tensors, padding=1).shape == [1, 6, 5, 5]
    assert deform_conv(**tensors, padding=1).stop_gradient


def test_tensor_ops_gradients_have_their_inputs_dtype():
    """float64 inputs: the tensor-op backward gives float64 gradients, equal to Paddle's op's."""
    rs = np.random.RandomState(7)
    arrays, (out_h, out_w) = _inputs(rs, 2, 4, 6, (6, 7), 1, 1, True, True)
    arrays = {k: v.astype(np.float64) for k, v in arrays.items()}
    dout = rs.standard_normal((2, 6, out_h, out_w))
    out, grads = _run(deform_conv, arrays, dout, 1, 1, True)
    ref_out, ref_grads = _run(deform_conv2d, arrays, dout, 1, 1, True)
    assert out.dtype == np.float64 and grads.keys() == ref_grads.keys() == arrays.keys()
    for name, ref in ref_grads.items():
        assert grads[name].dtype == np.float64, name
        np.testing.assert_allclose(grads[name], ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max(), err_msg=name)
