"""SOLOv2 instance head: category and kernel branches on S x S grids.

Dimension letters: B batch, L = 5 pyramid levels, S grid size of a level,
C classes, E dynamic-kernel channels (= mask-feature channels).

Parameters: ``kernel_tower.{i}`` / ``cate_tower.{i}`` (ConvNormAct with GN and ReLU,
no bias, optionally deformable), ``kernel_pred`` [E, W, 3, 3] and ``cate_pred``
[C, W, 3, 3] (with bias).
"""
import math
from typing import List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from solov2.model.layers import Conv2D, ConvNormAct, append_coords, resize_bilinear, spatial_size
from solov2.model.region import Region

CATE_PRIOR = 0.01


class DropBlock(nn.Layer):
    """DropBlock regularisation (training only): zero random block_size x block_size
    squares so that about (1 - keep_prob) of the activations are dropped."""
    block_size = 3
    keep_prob = 0.9

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """x [B, C, H, W] -> same shape; identity in eval mode."""
        if not self.training:
            return x
        height, width = x.shape[2], x.shape[3]
        gamma = ((1.0 - self.keep_prob) / self.block_size ** 2 * height * width
                 / max((height - self.block_size + 1) * (width - self.block_size + 1), 1))
        seeds = (paddle.rand(x.shape, dtype=x.dtype) < gamma).astype(x.dtype)
        blocks = F.max_pool2d(seeds, self.block_size, stride=1, padding=self.block_size // 2)
        keep = 1.0 - blocks[:, :, :height, :width]
        return x * keep * (keep.numel().astype(x.dtype) / (keep.sum() + 1e-6))


class SOLOv2Head(nn.Layer):
    """Predicts per-cell category logits and dynamic mask kernels.

    Args:
        num_classes: C, foreground classes (no background channel).
        in_channels: FPN width.
        feat_channels: tower width W.
        stacked_convs: convs per tower.
        kernel_channels: E.
        num_grids: S per level, coarse grids for large objects last.
        dcn: None, 'v1' or 'v2' for the tower convs listed in ``dcn_indices``.
        dcn_bias: whether those deformable convs carry a bias.
        drop_block: DropBlock after both towers in training.
    """

    def __init__(self, num_classes: int = 80, in_channels: int = 256, feat_channels: int = 512, stacked_convs: int = 4,
                 kernel_channels: int = 256, num_grids: Sequence[int] = (40, 36, 24, 16, 12), dcn: Optional[str] = None,
                 dcn_indices: Sequence[int] = (), dcn_bias: bool = False, drop_block: bool = False):
        super().__init__()
        self.num_classes, self.kernel_channels, self.num_grids = num_classes, kernel_channels, tuple(num_grids)

        def tower(first_in: int) -> nn.LayerList:
            return nn.LayerList([ConvNormAct(first_in if i == 0 else feat_channels, feat_channels, 3, norm='gn',
                                             dcn=dcn if i in dcn_indices else None,
                                             bias=dcn_bias and i in dcn_indices, weight_std=0.01)
                                 for i in range(stacked_convs)])

        self.kernel_tower = tower(in_channels + 2)
        self.cate_tower = tower(in_channels)
        self.drop_block = DropBlock() if drop_block else None
        self.kernel_pred = Conv2D(feat_channels, kernel_channels, 3, padding=1,
                                  weight_attr=nn.initializer.Normal(0.0, 0.01))
        prior_bias = -math.log((1 - CATE_PRIOR) / CATE_PRIOR)
        self.cate_pred = Conv2D(feat_channels, num_classes, 3, padding=1, weight_attr=nn.initializer.Normal(0.0, 0.01),
                                bias_attr=nn.initializer.Constant(prior_bias))

    def _run_tower(self, tower: nn.LayerList, x: paddle.Tensor) -> paddle.Tensor:
        for conv in tower:
            x = conv(x)
        return x if self.drop_block is None else self.drop_block(x)

    def forward(self, feats: Sequence[paddle.Tensor], region: Optional[Region] = None
                ) -> Tuple[List[paddle.Tensor], List[paddle.Tensor]]:
        """P2..P6 -> (category logits [B, C, S, S] x L, kernels [B, E, S, S] x L); P2 halved and P6
        resized to P5's size first (strides 8, 8, 16, 32, 32), each image's part with ``region`` (halving
        P2 needs none: every image's sides are multiples of 8 there, so its part halves exactly). The
        category branch's input [B, 256, S, S] is split off the kernel branch's, not sliced: the split's
        backward is a concat, 5x cheaper on CPU."""
        p2, p3, p4, p5, p6 = feats
        p2_h, p2_w = spatial_size(p2)
        p5_hw = list(spatial_size(p5))
        levels = [resize_bilinear(p2, [p2_h // 2, p2_w // 2]), p3, p4, p5,
                  resize_bilinear(p6, p5_hw) if region is None else region.resize(p6, 64, region.own(32), p5_hw)]
        cate_logits, kernels = [], []
        for feat, grid, stride in zip(levels, self.num_grids, (8, 8, 16, 32, 32)):
            kernel_feat = (resize_bilinear(append_coords(feat), [grid, grid]) if region is None      # [B, 256+2, S, S]
                           else region.resize(region.coords(feat, stride), stride, grid, [grid, grid]))
            cate_feat = paddle.split(kernel_feat, [feat.shape[1], 2], axis=1)[0]
            kernels.append(self.kernel_pred(self._run_tower(self.kernel_tower, kernel_feat)))
            cate_logits.append(self.cate_pred(self._run_tower(self.cate_tower, cate_feat)))
        return cate_logits, kernels
