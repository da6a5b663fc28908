"""Unified mask-feature branch: fuses P2..P5 into one [B, E, H/4, W/4] map.

Parameters: ``levels.{i}.{j}`` (level i has max(1, i) ConvNormAct 3x3 with GN + ReLU,
each but level 0's followed by a bilinear x2 upsample) and ``pred`` (1x1 ConvNormAct
with GN + ReLU). The coarsest level (P5) gets CoordConv channels first.
"""
from typing import Optional, Sequence

import paddle
import paddle.nn as nn

from solov2.model.layers import ConvNormAct, append_coords, resize_bilinear, spatial_size
from solov2.model.region import Region


class MaskFeatHead(nn.Layer):
    """Args: in_channels (FPN width), mid_channels, out_channels (E), num_levels
    (4 = P2..P5), dcn (None/'v1'/'v2' for every conv here), dcn_bias."""

    def __init__(self, in_channels: int = 256, mid_channels: int = 128, out_channels: int = 256,
                 num_levels: int = 4, dcn: Optional[str] = None, dcn_bias: bool = False):
        super().__init__()

        def conv(cin: int, cout: int, kernel: int) -> ConvNormAct:
            return ConvNormAct(cin, cout, kernel, norm='gn', dcn=dcn, bias=dcn_bias and dcn is not None,
                               weight_std=0.01)

        self.levels = nn.LayerList()
        for i in range(num_levels):
            first_in = in_channels + 2 if i == num_levels - 1 else in_channels
            count = max(1, i)
            self.levels.append(nn.LayerList([conv(first_in if j == 0 else mid_channels, mid_channels, 3)
                                             for j in range(count)]))
        self.pred = conv(mid_channels, out_channels, 1)
        self.out_channels = out_channels

    def forward(self, feats: Sequence[paddle.Tensor], region: Optional[Region] = None) -> paddle.Tensor:
        """[P2, P3, P4, P5] -> mask features [B, E, H2, W2] at P2's resolution (with ``region``,
        ``model.region``: each image's own part of the cropped maps, the rest undefined). The x2 upsample
        is to a size written as a sum, not * 2: paddle2onnx writes * 2 through float, which OpenVINO's INT8
        passes take for a dequantization ("Accessing out-of-range dimension")."""
        fused = None
        last = len(self.levels) - 1
        for i, (convs, x) in enumerate(zip(self.levels, feats)):
            stride = 4 * 2 ** i
            if i == last and i > 0:
                x = append_coords(x) if region is None else region.coords(x, stride)
            for conv in convs:
                x = conv(x) if region is None else region.conv_norm_act(conv, x, stride)
                if i > 0 and region is not None:
                    x, stride = region.upsample2(x, stride), stride // 2
                elif i > 0:
                    height, width = spatial_size(x)
                    x = resize_bilinear(x, [height + height, width + width])
            fused = x if fused is None else fused + x
        return self.pred(fused) if region is None else region.conv_norm_act(self.pred, fused, 4)
