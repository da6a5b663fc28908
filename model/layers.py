"""Small building blocks shared by the backbone and the heads."""
import contextlib
import contextvars
import copy
from typing import Iterator, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from solov2.config.install import paddle_major
from solov2.model.deform_ops import deform_conv
from solov2.model.fast_ops import add_channel_bias, resize_bilinear_matmul

GN_GROUPS = 32
_ZEROS_ONLY = contextvars.ContextVar('solov2_zeros_only', default=False)


@contextlib.contextmanager
def zero_weights() -> Iterator[None]:
    """Within the block (this thread or task only), ``SkipsRandomInit`` layers start their parameters at
    zero instead of drawing random numbers: for a model whose every weight is loaded next."""
    token = _ZEROS_ONLY.set(True)
    try:
        yield
    finally:
        _ZEROS_ONLY.reset(token)


class SkipsRandomInit(nn.Layer):
    """A layer whose ``create_parameter`` fills zeros inside ``zero_weights()`` (any initialiser
    replaced, no random numbers drawn) and is Paddle's own outside it."""

    def create_parameter(self, shape, attr=None, *args, **kwargs):
        """Paddle's ``nn.Layer.create_parameter``, ``attr``'s initialiser zeros inside ``zero_weights()``."""
        if _ZEROS_ONLY.get() and attr is not False:
            zeros = nn.initializer.Constant(0.0)
            if isinstance(attr, paddle.ParamAttr):
                attr = copy.copy(attr)
                attr.initializer = zeros
            else:
                attr = zeros
        return super().create_parameter(shape, attr, *args, **kwargs)


class DeformConv(SkipsRandomInit):
    """Deformable convolution with its own offset branch: ``modulated`` DCNv2 (2*k*k offsets, then k*k
    mask logits, sigmoid), else DCNv1; offsets interleaved (dy, dx) per tap, shared by the ``groups``.
    Parameters: ``weight`` [out, in/groups, k, k], ``bias`` [out], ``offset.weight`` [3*k*k or 2*k*k,
    in, k, k], ``offset.bias``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, modulated: bool = True, bias: bool = False, groups: int = 1):
        super().__init__()
        self.stride, self.groups, self.modulated = stride, groups, modulated
        self.padding, self.num_taps = (kernel_size - 1) // 2, kernel_size * kernel_size
        offset_channels = (3 if modulated else 2) * self.num_taps
        self.offset = nn.Conv2D(in_channels, offset_channels, kernel_size, stride=stride, padding=self.padding,
                                weight_attr=nn.initializer.Constant(0.0), bias_attr=nn.initializer.Constant(0.0))
        self.weight = self.create_parameter([out_channels, in_channels // groups, kernel_size, kernel_size],
                                            default_initializer=nn.initializer.KaimingNormal())
        self.bias = self.create_parameter([out_channels], is_bias=True) if bias else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """x [B, in, H, W] -> [B, out, H/stride, W/stride]. DCNv1 under to_static gets an all-ones mask
        (the same numbers, x * 1.0): paddle2onnx 2.x cannot convert deform_conv2d without one."""
        offset_mask = self.offset(x)
        mask = None
        if self.modulated:
            offset, mask_logits = paddle.split(offset_mask, [2 * self.num_taps, self.num_taps], axis=1)
            mask = F.sigmoid(mask_logits)
        else:
            offset = offset_mask
            if not paddle.in_dynamic_mode():
                mask = paddle.ones_like(offset[:, :self.num_taps])
        return deform_conv(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                           groups=self.groups, mask=mask)


class Conv2D(SkipsRandomInit, nn.Conv2D):
    """``nn.Conv2D`` (same arguments and parameters) whose bias add uses
    ``add_channel_bias``: the same numbers, several times faster on CPU; zeros inside ``zero_weights()``."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """x [B, in, H, W] -> [B, out, H', W']."""
        if self.bias is None or self._padding_mode != 'zeros':
            return super().forward(x)
        out = F.conv2d(x, self.weight, None, stride=self._stride, padding=self._padding,
                       dilation=self._dilation, groups=self._groups, data_format=self._data_format)
        return add_channel_bias(out, self.bias)


def make_norm(norm: str, channels: int, frozen: bool = False) -> nn.Layer:
    """'bn' -> BatchNorm2D (eps 1e-5; ``frozen``: running statistics, no gradient), 'gn' -> GroupNorm(32);
    ValueError for another."""
    if norm == 'gn':
        return nn.GroupNorm(GN_GROUPS, channels, epsilon=1e-5)
    if norm != 'bn':
        raise ValueError(f"unknown norm {norm!r} (expected 'bn' or 'gn')")
    layer = nn.BatchNorm2D(channels, momentum=0.9, epsilon=1e-5, use_global_stats=True if frozen else None)
    if frozen:
        for param in layer.parameters():
            param.stop_gradient = True
    return layer


class ConvNormAct(nn.Layer):
    """conv (plain, or ``dcn`` 'v1'/'v2'; grouped by ``groups``) -> norm ('bn' or 'gn') -> optional ReLU;
    ValueError for another ``dcn`` or ``norm``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 norm: str = 'bn', act: bool = True, dcn: Optional[str] = None, bias: bool = False,
                 frozen_norm: bool = False, weight_std: Optional[float] = None, groups: int = 1):
        super().__init__()
        if dcn not in (None, 'v1', 'v2'):
            raise ValueError(f"unknown dcn {dcn!r} (expected None, 'v1' or 'v2')")
        if dcn is None:
            init = nn.initializer.Normal(0.0, weight_std) if weight_std else nn.initializer.KaimingNormal()
            self.conv = Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                               weight_attr=init, bias_attr=None if bias else False, groups=groups)
        else:
            self.conv = DeformConv(in_channels, out_channels, kernel_size, stride=stride, modulated=dcn == 'v2',
                                   bias=bias, groups=groups)
        self.norm = make_norm(norm, out_channels, frozen_norm)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """x [B, in, H, W] -> [B, out, H/stride, W/stride]."""
        x = self.norm(self.conv(x))
        return F.relu(x) if self.act else x


def spatial_size(x: paddle.Tensor):
    """(H, W) of x [B, C, H, W]: python ints in dygraph; int tensors from ``paddle.shape``
    under ``paddle.jit.to_static``, so an exported graph accepts any input size."""
    if paddle.in_dynamic_mode():
        return x.shape[2], x.shape[3]
    shape = paddle.shape(x)
    return shape[2], shape[3]


_LINSPACE_DTYPE = 'float64' if paddle_major() == 2 else 'float32'


def linspace_rows(counts: paddle.Tensor, length, dtype) -> paddle.Tensor:
    """[B, length] of ``dtype``: row b starts with ``linspace(-1, 1, counts[b])`` (counts [B, 1] int), from
    ops that export with a run-time count (paddle2onnx 1.x cannot convert ``linspace`` whose count is a
    tensor), by Paddle's kernel's formula (up from -1, then down from 1). Paddle's own linspace kernel (CPU)
    computes the step and the values in float64 up to Paddle 2.x and in the output dtype since 3.0
    (``_LINSPACE_DTYPE``); this follows the one installed, so an exported graph has the coordinates of the
    dygraph model."""
    work = _LINSPACE_DTYPE
    num = paddle.cast(counts, work)                                                    # [B, 1]
    index = paddle.cast(paddle.arange(0, length, 1, dtype='int64'), work).unsqueeze(0)   # [1, L]
    step = paddle.full([1], 2.0, work) / paddle.clip(num - 1.0, min=1.0)     # not 2.0 / t: no ONNX form for it
    half = paddle.clip(paddle.floor(num * 0.5), min=1.0)
    return paddle.cast(paddle.where(index < half, step * index - 1.0, 1.0 - step * (num - 1.0 - index)), dtype)


def coord_features(x: paddle.Tensor) -> paddle.Tensor:
    """CoordConv channels: x [B, C, H, W] -> [B, 2, H, W], linspace(-1, 1) along the width, then the height."""
    if paddle.in_dynamic_mode():
        batch, _, height, width = x.shape
        xs = paddle.linspace(-1.0, 1.0, width, dtype=x.dtype)
        ys = paddle.linspace(-1.0, 1.0, height, dtype=x.dtype)
    else:   # to_static: sizes are tensors
        shape = paddle.shape(x)
        batch, height, width = shape[0], shape[2], shape[3]
        xs, ys = (linspace_rows(paddle.reshape(side, [1, 1]), side, x.dtype)[0] for side in (width, height))
    grid_x = paddle.expand(xs.reshape([1, 1, 1, -1]), [batch, 1, height, width])
    grid_y = paddle.expand(ys.reshape([1, 1, -1, 1]), [batch, 1, height, width])
    return paddle.concat([grid_x, grid_y], axis=1)


def append_coords(x: paddle.Tensor) -> paddle.Tensor:
    """x [B, C, H, W] -> [B, C + 2, H, W] with (x, y) coordinate channels last."""
    return paddle.concat([x, coord_features(x)], axis=1)


def resize_bilinear(x: paddle.Tensor, size) -> paddle.Tensor:
    """Bilinear resize to an explicit ``size`` (H, W), half-pixel centres
    (align_corners=False), as PyTorch and PaddleDetection do. A CPU tensor that needs
    a gradient takes ``resize_bilinear_matmul``, whose backward is much faster there."""
    if paddle.in_dynamic_mode() and not x.stop_gradient and x.place.is_cpu_place():
        return resize_bilinear_matmul(x, size)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False, align_mode=0)
