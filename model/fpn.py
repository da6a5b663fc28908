"""Feature pyramid: P2..P5 from C2..C5 plus P6 by stride-2 subsampling of P5."""
from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from solov2.model.fast_ops import upsample_nearest
from solov2.model.layers import Conv2D, spatial_size
from solov2.model.region import Region, zero_outside


class FPN(nn.Layer):
    """Lateral 1x1 convs, nearest x2 top-down sum, 3x3 output convs (all with
    bias, no norm, no activation). Parameters: ``lateral.{i}`` and ``output.{i}``,
    index 0 = C2/P2 .. 3 = C5/P5. ``strides``: the outputs' strides in the input, P2..P5, then P6 (P5
    subsampled by 2)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256):
        super().__init__()
        self.lateral = nn.LayerList([Conv2D(c, out_channels, 1) for c in in_channels])
        self.output = nn.LayerList([Conv2D(out_channels, out_channels, 3, padding=1) for _ in in_channels])
        self.out_channels = out_channels
        self.strides = [4 * 2 ** level for level in range(len(in_channels) + 1)]

    def forward(self, feats: Sequence[paddle.Tensor], region: Optional[Region] = None) -> List[paddle.Tensor]:
        """[C2..C5] -> [P2, P3, P4, P5, P6], each [B, out, ceil(H/s), ceil(W/s)], s = ``strides``
        (4..64; ``region``: the 3x3 convs read zeros outside it, see ``SOLOv2.forward``)."""
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            finer = laterals[i - 1]
            laterals[i - 1] = finer + upsample_nearest(laterals[i], list(spatial_size(finer)))
        outs = [conv(zero_outside(x, region, stride)) for conv, x, stride in zip(self.output, laterals, self.strides)]
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs
