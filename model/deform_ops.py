"""Deformable convolution with a fast forward and backward for CPU training: Paddle's CPU kernels
walk every column element one at a time (most of a config-2 step). In dynamic mode on a CPU with a
gradient, ``deform_conv`` uses tensor ops (one gather of the four bilinear corners of every sample,
batched matmuls, one scatter-add backward, gathering again there); elsewhere Paddle's
``paddle.vision.ops.deform_conv2d``.

Semantics (mmcv / Paddle modulated deformable conv, deformable_groups 1, dilation 1):
tap k = (i, j) of output position p = (ho, wo) samples x at
h = ho*stride - padding + i + offset[2k], w = wo*stride - padding + j + offset[2k+1];
the sample is 0 unless -1 < h < H and -1 < w < W, otherwise the bilinear mix of its
four corners with corners outside the image counting as 0; it is scaled by mask[k]
(1 without a mask).
"""
from typing import NamedTuple, Optional

import paddle
from paddle.autograd import PyLayer
from paddle.vision.ops import deform_conv2d

from solov2.model.fast_ops import cpu_dygraph, in_input_dtypes


def deform_conv(x: paddle.Tensor, offset: paddle.Tensor, weight: paddle.Tensor,
                bias: Optional[paddle.Tensor] = None, stride: int = 1, padding: int = 0,
                groups: int = 1, mask: Optional[paddle.Tensor] = None) -> paddle.Tensor:
    """Deformable conv (DCNv2 with ``mask``, DCNv1 without), as ``deform_conv2d``.

    x [N, C, H, W], offset [N, 2*K, Ho, Wo] (interleaved dy, dx per tap), weight
    [Cout, C/groups, kh, kw], bias [Cout] or None, mask [N, K, Ho, Wo] or None
    (K = kh*kw) -> [N, Cout, Ho, Wo].
    """
    needs_grad = any(t is not None and not t.stop_gradient for t in (x, offset, weight, bias, mask))
    if cpu_dygraph(x) and paddle.is_grad_enabled() and needs_grad:
        return _DeformConvTensorOps.apply(x, offset, weight, bias, mask, stride, padding, groups)
    return deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, groups=groups, mask=mask)


class _DeformConvTensorOps(PyLayer):
    """Deformable conv as tensor ops: the forward ``_conv_columns``, the backward
    ``_deform_conv_grads``."""

    @staticmethod
    def forward(ctx, x, offset, weight, bias, mask, stride, padding, groups):
        ctx.geometry = (stride, padding, groups)
        ctx.has_bias = bias is not None
        ctx.needs = [not t.stop_gradient for t in (x, offset, weight, bias, mask) if t is not None]
        ctx.dtypes = [t.dtype for t in (x, offset, weight, bias, mask) if t is not None]
        ctx.save_for_backward(x, offset, weight, *([] if mask is None else [mask]))
        col = _columns(_sample(x, offset, mask, weight.shape[2:], stride, padding))
        return _conv_columns(col, weight, bias, groups, offset.shape)

    @staticmethod
    def backward(ctx, dout):
        x, offset, weight, *mask = ctx.saved_tensor()
        mask = mask[0] if mask else None
        dx, doffset, dweight, dmask = _deform_conv_grads(x, offset, weight, mask, dout, *ctx.geometry,
                                                         need_dx=ctx.needs[0])
        grads = [dx, doffset, dweight]
        if ctx.has_bias:
            grads.append(dout.sum(axis=[0, 2, 3]))
        if mask is not None:
            grads.append(dmask)
        return in_input_dtypes([g if need else None for g, need in zip(grads, ctx.needs)], ctx.dtypes)


class _Sampling(NamedTuple):
    """Where and how the R = N*Ho*Wo*K samples of a deformable conv read x (see ``_sample``)."""
    rows: paddle.Tensor  # [R, 4] int64, corner rows of x_rows
    frac: paddle.Tensor  # [R, 2] (dh, dw) in the cell
    valid: paddle.Tensor  # [R, 1] 1 inside the image
    bilinear: paddle.Tensor  # [R, 4] corner weights, times valid
    mask_rows: Optional[paddle.Tensor]  # [R, 1] the mask, or None
    modulation: paddle.Tensor  # [R, 4] bilinear times mask
    x_rows: paddle.Tensor  # [N*(H+2)*(W+2), C] x padded by one zero pixel, channels last
    corners: paddle.Tensor  # [R, 4, C] the four corners of every sample


def _sample(x, offset, mask, kernel, stride, padding):
    """x [N, C, H, W], offset [N, 2K, Ho, Wo], mask [N, K, Ho, Wo] or None -> ``_Sampling``."""
    n, c, h, w = x.shape
    taps = kernel[0] * kernel[1]
    rows, frac, valid, bilinear = _sample_corners(offset, (h, w), kernel, stride, padding)
    mask_rows = None if mask is None else mask.reshape([n, taps, -1]).transpose([0, 2, 1]).reshape([-1, 1])
    modulation = bilinear if mask is None else bilinear * mask_rows
    x_rows = paddle.nn.functional.pad(x, [1, 1, 1, 1]).transpose([0, 2, 3, 1]).reshape([-1, c])
    corners = paddle.gather(x_rows, rows.reshape([-1])).reshape([-1, 4, c])
    return _Sampling(rows, frac, valid, bilinear, mask_rows, modulation, x_rows, corners)


def _columns(sampling):
    """The deformable im2col columns [R, C]: every sample's corners [R, 4, C] mixed by its
    bilinear weights times the mask, ``modulation`` [R, 4]."""
    return paddle.matmul(sampling.modulation.unsqueeze(1), sampling.corners).squeeze(1)


def _grouped_weight(weight, groups):
    """weight [Cout, C/g, kh, kw] -> [g, K*C/g, Cout/g], tap-major like ``_group_major``."""
    cout, c_g, kh, kw = weight.shape
    weight_g = weight.reshape([groups, cout // groups, c_g, kh * kw]).transpose([0, 3, 2, 1])
    return weight_g.reshape([groups, kh * kw * c_g, cout // groups])


def _conv_columns(col, weight, bias, groups, offset_shape):
    """col [R, C] (R = N*Ho*Wo*K), weight [Cout, C/g, kh, kw], bias [Cout] or None
    -> the deformable conv output [N, Cout, Ho, Wo]."""
    n, _, out_h, out_w = offset_shape
    cout, _, kh, kw = weight.shape
    out = paddle.matmul(_group_major(col.reshape([n * out_h * out_w, kh * kw, -1]), groups),
                        _grouped_weight(weight, groups))  # [g, N*P, Cout/g]
    out = out.reshape([groups, n, out_h * out_w, -1]).transpose([1, 0, 3, 2]).reshape([n, cout, out_h, out_w])
    return out if bias is None else out + bias.reshape([1, cout, 1, 1])


def _deform_conv_grads(x, offset, weight, mask, dout, stride, padding, groups, need_dx):
    """Gradients of deformable conv w.r.t. x (None unless need_dx), offset, weight and mask.

    x [N, C, H, W], offset [N, 2K, Ho, Wo], weight [Cout, C/g, kh, kw], mask [N, K, Ho, Wo]
    or None, dout [N, Cout, Ho, Wo]. Works on R = N*Ho*Wo*K sample rows of C channels; the
    samples and columns are recomputed here, not kept from the forward.
    """
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    taps = kh * kw
    sampling = _sample(x, offset, mask, (kh, kw), stride, padding)
    col = _columns(sampling).reshape([-1, taps, c])  # [N*P, K, C]
    dout_g = dout.reshape([n, groups, cout // groups, -1]).transpose([1, 0, 3, 2])
    dout_g = dout_g.reshape([groups, -1, cout // groups])  # [g, N*P, Cout/g]
    dweight = paddle.matmul(_group_major(col, groups), dout_g, transpose_x=True)
    del col
    dweight = dweight.reshape([groups, taps, c // groups, cout // groups]).transpose([0, 3, 2, 1])
    dcol = paddle.matmul(dout_g, _grouped_weight(weight, groups), transpose_y=True)
    dcol = _tap_major(dcol, taps).reshape([-1, c])  # [R, C]
    dots = paddle.matmul(sampling.corners, dcol.unsqueeze(-1)).reshape([-1, 4])  # corner . dcol, [R, 4]
    sampling = sampling._replace(corners=None)
    scale = sampling.valid if mask is None else sampling.valid * sampling.mask_rows
    doffset = _offset_grad(dots, sampling.frac, scale)
    doffset = doffset.reshape([n, -1, taps, 2]).transpose([0, 2, 3, 1]).reshape(offset.shape)
    dmask = None
    if mask is not None:
        dmask = (sampling.bilinear * dots).sum(-1).reshape([n, -1, taps]).transpose([0, 2, 1]).reshape(mask.shape)
    dx = None
    if need_dx:
        contributions = paddle.matmul(sampling.modulation.unsqueeze(-1), dcol.unsqueeze(1)).reshape([-1, c])
        dx_rows = paddle.scatter_nd_add(paddle.zeros_like(sampling.x_rows), sampling.rows.reshape([-1, 1]),
                                        contributions)
        dx = dx_rows.reshape([n, h + 2, w + 2, c])[:, 1:h + 1, 1:w + 1].transpose([0, 3, 1, 2])
    return dx, doffset, dweight.reshape(weight.shape), dmask


def _sample_corners(offset, size, kernel, stride, padding):
    """Where every sample row (R = N*Ho*Wo*K, image-, position-, then tap-major) reads.

    offset [N, 2K, Ho, Wo] -> rows [R, 4] int64: its corners (top-left, top-right,
    bottom-left, bottom-right) as rows of the images padded by one pixel, flattened
    [N*(H+2)*(W+2)]; frac [R, 2] (dh, dw) in the cell; valid [R, 1], 1 where -1 < h < H
    and -1 < w < W; bilinear [R, 4] corner weights, times valid.
    """
    n, _, out_h, out_w = offset.shape
    (h, w), (kh, kw) = size, kernel
    grid = paddle.meshgrid(paddle.arange(out_h) * stride - padding, paddle.arange(out_w) * stride - padding,
                           paddle.arange(kh), paddle.arange(kw))
    base = paddle.stack([grid[0] + grid[2], grid[1] + grid[3]], axis=-1).reshape([out_h * out_w, kh * kw, 2])
    delta = offset.reshape([n, kh * kw, 2, out_h * out_w]).transpose([0, 3, 1, 2])  # [N, P, K, 2]
    pos = (delta + base.astype(offset.dtype)).reshape([-1, 2])
    low = paddle.floor(pos)
    frac = pos - low
    limit = paddle.to_tensor([h, w], dtype=offset.dtype)
    valid = paddle.logical_and(pos > -1, pos < limit).all(axis=-1, keepdim=True).astype(offset.dtype)
    cell = paddle.minimum(paddle.maximum(low + 1, paddle.zeros_like(limit)), limit).astype('int64')
    image = paddle.arange(n, dtype='int64').unsqueeze(-1).expand([n, pos.shape[0] // n]).reshape([-1])
    top_left = (image * (h + 2) + cell[:, 0]) * (w + 2) + cell[:, 1]
    rows = top_left.unsqueeze(-1) + paddle.to_tensor([0, 1, w + 2, w + 3], dtype='int64')
    fh, fw = frac[:, :1], frac[:, 1:]
    bilinear = paddle.concat([(1 - fh) * (1 - fw), (1 - fh) * fw, fh * (1 - fw), fh * fw], axis=-1) * valid
    return rows, frac, valid, bilinear


def _offset_grad(dots, frac, scale):
    """d loss / d (h, w) of every sample [R, 2] from dots [R, 4] (corner . dcol),
    frac [R, 2] and scale [R, 1] (validity times mask)."""
    s00, s01, s10, s11 = paddle.unbind(dots, axis=1)
    fh, fw = paddle.unbind(frac, axis=1)
    grad_h = (1 - fw) * (s10 - s00) + fw * (s11 - s01)
    grad_w = (1 - fh) * (s01 - s00) + fh * (s11 - s10)
    return paddle.stack([grad_h, grad_w], axis=-1) * scale


def _group_major(col, groups):
    """col [N*P, K, C] -> [g, N*P, K*C/g], a grouped conv's per-group columns."""
    if groups == 1:
        return col.reshape([1, col.shape[0], -1])
    n_p, taps, c = col.shape
    return col.reshape([n_p, taps, groups, c // groups]).transpose([2, 0, 1, 3]).reshape([groups, n_p, -1])


def _tap_major(dcol, taps):
    """dcol [g, N*P, K*C/g] -> [N*P, K, C], the inverse of ``_group_major``."""
    groups, n_p, _ = dcol.shape
    if groups == 1:
        return dcol.reshape([n_p, taps, -1])
    return dcol.reshape([groups, n_p, taps, -1]).transpose([1, 2, 0, 3]).reshape([n_p, taps, -1])
