"""Pictures of several sizes in one padded batch, each computed as if it were alone.

``regions`` [B, 2] int64: the rows and columns of each image's own input (padded to 32) at the top
left of the batch's input [B, 3, H, W]; on a map of stride s image b covers the top-left
ceil(Hb / s) x ceil(Wb / s) (``Region.own``). The network computes each image as alone when the
backbone and FPN read ``zero_outside(x, stride)``, and the heads read the pyramid cropped to the
largest region (``crop``): the instance head resizes each image's part to the grid (``resize``,
``coords``), the mask-feature head normalises over each part only (``conv_norm_act``) and upsamples
with each part's last row and column repeated (``upsample2``). With every region the input's, the
plain network's numbers to float rounding.
"""
from typing import List, Optional, Sequence, Union

import paddle
import paddle.nn.functional as F

from solov2.model.layers import ConvNormAct, linspace_rows, resize_bilinear, spatial_size

Side = Union[int, paddle.Tensor]         # a size: a python int in dygraph, an int tensor under to_static


def _below(count: paddle.Tensor, length: Side) -> paddle.Tensor:
    """[B, length] bool: index < count[b] (count [B, 1] int64)."""
    return paddle.arange(0, length, 1, dtype='int64').unsqueeze(0) < count


def bilinear_rows(in_counts: paddle.Tensor, out_counts: Union[int, paddle.Tensor], in_len: Side,
                  out_len: Side) -> paddle.Tensor:
    """[B, out_len, in_len] float32: for each image b, the weights of a 1-D bilinear resize
    (half-pixel centres, align_corners=False, as ``F.interpolate``) of its first in_counts[b]
    entries to out_counts[b] (both [B, 1] int64; an int: the same for every image); rows past
    out_counts[b] are zero, and no weight falls past in_counts[b]."""
    source = paddle.cast(in_counts, 'float32')                                         # [B, 1]
    target = (paddle.full([1, 1], float(out_counts), 'float32') if isinstance(out_counts, int)
              else paddle.cast(out_counts, 'float32'))
    index = paddle.cast(paddle.arange(0, out_len, 1, dtype='int64'), 'float32').unsqueeze(0)   # [1, O]
    position = paddle.clip(source / target * (index + 0.5) - 0.5, min=0.0)             # [B, O]
    low = paddle.floor(position)
    weight = (position - low).unsqueeze(2)
    high = paddle.minimum(low + 1.0, source - 1.0)
    taps = paddle.cast(paddle.arange(0, in_len, 1, dtype='int64'), 'float32').reshape([1, 1, -1])
    matrix = (paddle.cast(taps == low.unsqueeze(2), 'float32') * (1.0 - weight)
              + paddle.cast(taps == high.unsqueeze(2), 'float32') * weight)
    return matrix * paddle.cast(index < target, 'float32').unsqueeze(2)


def _repeat_edge(x: paddle.Tensor, counts: paddle.Tensor, axis: int) -> paddle.Tensor:
    """x [B, C, H, W] with entry counts[b] along ``axis`` (2 or 3) replaced by entry counts[b] - 1
    (the last one an image covers), where it exists (counts [B, 1] int64)."""
    length = spatial_size(x)[axis - 2]
    previous = paddle.concat([paddle.slice(x, [axis], [0], [1]), paddle.slice(x, [axis], [0], [length - 1])], axis=axis)
    at_edge = paddle.arange(0, length, 1, dtype='int64').unsqueeze(0) == counts               # [B, L]
    at_edge.stop_gradient = True     # Paddle 2.6's static expand refuses a bool input that may want a gradient
    at_edge = paddle.expand(at_edge.unsqueeze(1).unsqueeze(5 - axis), paddle.shape(x))   # [B, C, H, W] bool
    return paddle.where(at_edge, previous, x)


class Region:
    """The images' own parts of a padded batch (module docstring): ``regions`` [B, 2] int64 within
    ``input_hw``, the batch's (H, W)."""

    def __init__(self, input_hw: Sequence[Side], regions: paddle.Tensor):
        self.regions = paddle.cast(regions, 'int64')                       # [B, 2]
        self.largest = paddle.max(self.regions, axis=0)                      # [2]
        self.full = [side if isinstance(side, int) else paddle.cast(side, 'int64') for side in input_hw]
        self.masks = {}

    def own(self, stride: int) -> List[paddle.Tensor]:
        """[rows, cols], each [B, 1] int64: what each image covers on a map of stride ``stride``
        (split by ``paddle.slice``: an index such as [:, 0] exports wrongly to ONNX)."""
        own = (self.regions + (stride - 1)) // stride
        return [paddle.slice(own, axes=[1], starts=[axis], ends=[axis + 1]) for axis in range(2)]

    def covered(self, stride: int) -> List[paddle.Tensor]:
        """[rows, cols] (int64 tensors) of the largest region on a map of stride ``stride``: the
        size of the heads' maps (``crop``)."""
        return [(self.largest[axis] + (stride - 1)) // stride for axis in range(2)]

    def crop(self, x: paddle.Tensor, stride: int) -> paddle.Tensor:
        """x [B, C, H/stride, W/stride] -> [B, C, rows, cols], the largest region's part (``covered``)."""
        return paddle.slice(x, axes=[2, 3], starts=[0, 0], ends=self.covered(stride))

    def inside(self, stride: int, cropped: bool, dtype) -> paddle.Tensor:
        """[B, 1, h, w] of ``dtype``: 1 where each image covers a map of stride ``stride`` (the
        full input's map, or one ``crop`` gave), 0 elsewhere; made once per map size."""
        key = (stride, cropped)
        if key not in self.masks:
            sides = self.covered(stride) if cropped else [(full + (stride - 1)) // stride for full in self.full]
            own = self.own(stride)
            rows, cols = (paddle.cast(_below(count, side), dtype) for count, side in zip(own, sides))
            self.masks[key] = rows.unsqueeze([1, 3]) * cols.unsqueeze([1, 2])
        return self.masks[key]

    def zero_outside(self, x: paddle.Tensor, stride: int, cropped: bool = False) -> paddle.Tensor:
        """x [B, C, h, w] (a map of stride ``stride``, ``cropped`` or not) with zeros outside each
        image's part."""
        return x * self.inside(stride, cropped, x.dtype)

    def coords(self, x: paddle.Tensor, stride: int) -> paddle.Tensor:
        """x [B, C, h, w] (a cropped map of stride ``stride``) -> [B, C + 2, h, w] with each image's
        CoordConv channels (``layers.coord_features`` of its own part) last."""
        own = self.own(stride)
        height, width = spatial_size(x)
        xs = linspace_rows(own[1], width, x.dtype).unsqueeze([1, 2])       # [B, 1, 1, w]
        ys = linspace_rows(own[0], height, x.dtype).unsqueeze([1, 3])      # [B, 1, h, 1]
        shape = [-1, 1, height, width]
        return paddle.concat([x, paddle.expand(xs, shape), paddle.expand(ys, shape)], axis=1)

    def resize(self, x: paddle.Tensor, stride: int, out_counts: Union[int, List[paddle.Tensor]],
               out_hw: Sequence[Side]) -> paddle.Tensor:
        """Each image's part of x [B, C, h, w] (a cropped map of stride ``stride``) resized
        bilinearly to ``out_counts`` ([rows, cols] as ``own`` gives them, or an int for every side
        of every image), placed at the top left of [B, C, out_hw]."""
        own = self.own(stride)
        height, width = spatial_size(x)
        counts = [out_counts, out_counts] if isinstance(out_counts, int) else out_counts
        rows = bilinear_rows(own[0], counts[0], height, out_hw[0]).astype(x.dtype).unsqueeze(1)
        cols = bilinear_rows(own[1], counts[1], width, out_hw[1]).astype(x.dtype).unsqueeze(1)
        return paddle.matmul(paddle.matmul(rows, x), cols, transpose_y=True)

    def upsample2(self, x: paddle.Tensor, stride: int) -> paddle.Tensor:
        """x [B, C, h, w] (a cropped map of stride ``stride``) -> [B, C, 2h, 2w] bilinearly, each
        image's part as if its map ended at its last row and column."""
        own = self.own(stride)
        x = _repeat_edge(_repeat_edge(x, own[0], 2), own[1], 3)
        height, width = spatial_size(x)
        return resize_bilinear(x, [height + height, width + width])

    def conv_norm_act(self, layer: ConvNormAct, x: paddle.Tensor, stride: int) -> paddle.Tensor:
        """``layer`` (conv, GroupNorm, ReLU) on x [B, C, h, w] (a cropped map of stride
        ``stride``): the conv reads zeros outside each image's part and GroupNorm's statistics
        are each image's part's."""
        inside = self.inside(stride, True, x.dtype)
        y = layer.conv(x * inside)
        norm = layer.norm
        groups, channels = norm._num_groups, y.shape[1]
        grouped = y.reshape([0, groups, channels // groups, -1])                   # [B, G, C/G, h*w]
        weights = inside.reshape([0, 1, 1, -1])
        count = paddle.sum(weights, axis=[2, 3], keepdim=True) * (channels // groups)
        mean = paddle.sum(grouped * weights, axis=[2, 3], keepdim=True) / count
        centred = grouped - mean
        variance = paddle.sum(centred * centred * weights, axis=[2, 3], keepdim=True) / count
        normal = paddle.reshape(centred / paddle.sqrt(variance + norm._epsilon), paddle.shape(y))
        y = normal * norm.weight.reshape([1, -1, 1, 1]) + norm.bias.reshape([1, -1, 1, 1])
        return F.relu(y) if layer.act else y


def zero_outside(x: paddle.Tensor, region: Optional[Region], stride: int) -> paddle.Tensor:
    """``region.zero_outside(x, stride)`` on a map of the full input, or x itself without a region."""
    return x if region is None else region.zero_outside(x, stride)
