"""ResNet backbones (depth 18/34/50/101): 'b' (7x7 stem, 1x1 strided shortcut) and 'd' (three 3x3
stem convs, 2x2 average pooling then 1x1 shortcut), stride on the 3x3 conv, optional deformable 3x3
convs in the last three stages; ResNeXt (``groups`` > 1, 50/101): grouped 3x3, bottleneck width
floor(planes * base_width / 64) * groups (mmdetection's). Parameters: ``stem.{i}``,
``layer{1..4}.{k}.conv{1,2,3}``, ``layer{s}.0.shortcut``, each a ConvNormAct.
"""
from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from solov2.core.errors import InputError
from solov2.model.layers import ConvNormAct
from solov2.model.region import Region, zero_outside

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Shortcut(ConvNormAct):
    """Projection shortcut: 1x1 conv + BN, preceded by 2x2 avg-pool in variant 'd'."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, variant: str, frozen_norm: bool):
        self.pool_first = variant == 'd' and stride == 2
        super().__init__(in_channels, out_channels, 1, stride=1 if self.pool_first else stride,
                         act=False, frozen_norm=frozen_norm)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.pool_first:
            x = F.avg_pool2d(x, kernel_size=2, stride=2, padding=0, ceil_mode=True)
        return super().forward(x)


class BasicBlock(nn.Layer):
    """Two 3x3 convs (ResNet-18/34); the first one carries the stride."""
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, variant: str, dcn: Optional[str], frozen_norm: bool):
        super().__init__()
        if dcn is not None:
            raise InputError('deformable conv (backbone_dcn) needs depth 50 or 101')
        self.stride = stride
        self.conv1 = ConvNormAct(in_channels, width, 3, stride=stride, frozen_norm=frozen_norm)
        self.conv2 = ConvNormAct(width, width, 3, act=False, frozen_norm=frozen_norm)
        self.shortcut = (Shortcut(in_channels, width, stride, variant, frozen_norm)
                         if stride != 1 or in_channels != width else None)

    def forward(self, x: paddle.Tensor, region: Optional[Region] = None, scale: int = 1) -> paddle.Tensor:
        """x [B, in, H, W] -> [B, width, H/stride, W/stride]; the 3x3 convs read zeros outside ``region``
        (``scale``: x's stride in the input image)."""
        identity = x if self.shortcut is None else self.shortcut(x)
        inner = self.conv1(zero_outside(x, region, scale))
        return F.relu(self.conv2(zero_outside(inner, region, scale * self.stride)) + identity)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (stride, optional DCN, grouped for ResNeXt) -> 1x1 (x4 channels) bottleneck."""
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, variant: str,
                 dcn: Optional[str], frozen_norm: bool, groups: int = 1, base_width: int = 64):
        super().__init__()
        out_channels = width * self.expansion
        inner = width if groups == 1 else width * base_width // 64 * groups
        self.conv1 = ConvNormAct(in_channels, inner, 1, frozen_norm=frozen_norm)
        self.stride = stride
        self.conv2 = ConvNormAct(inner, inner, 3, stride=stride, dcn=dcn, frozen_norm=frozen_norm, groups=groups)
        self.conv3 = ConvNormAct(inner, out_channels, 1, act=False, frozen_norm=frozen_norm)
        self.shortcut = (Shortcut(in_channels, out_channels, stride, variant, frozen_norm)
                         if stride != 1 or in_channels != out_channels else None)

    def forward(self, x: paddle.Tensor, region: Optional[Region] = None, scale: int = 1) -> paddle.Tensor:
        """x [B, in, H, W] -> [B, 4 width, H/stride, W/stride]; the 3x3 conv reads zeros outside ``region``
        (``scale``: x's stride in the input image)."""
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv3(self.conv2(zero_outside(self.conv1(x), region, scale))) + identity)


class ResNet(nn.Layer):
    """ResNet returning C2..C5.

    Args:
        depth: 18, 34, 50 or 101; variant: 'b' or 'd' (ValueError for another).
        dcn: None, 'v1' or 'v2': deformable conv type for ``dcn_stages``.
        dcn_stages: stage indices (0 = layer1/C2 .. 3 = layer4/C5) that use DCN.
        frozen_stages: -1 trains everything, 0 freezes the stem, k >= 1 also
            freezes layer1..layerk (no gradient).
        freeze_norm: BN uses running statistics and its affine params are fixed.
        width: channels of the first stage (64 for the standard ResNets); every
            stage and the stem scale with it, for narrow CPU-sized models.
        groups, base_width: ResNeXt cardinality and width per group (1 = ResNet).
    """

    def __init__(self, depth: int = 50, variant: str = 'b', dcn: Optional[str] = None,
                 dcn_stages: Sequence[int] = (), frozen_stages: int = -1,
                 freeze_norm: bool = True, width: int = 64, groups: int = 1, base_width: int = 64):
        super().__init__()
        if depth not in STAGE_BLOCKS or variant not in ('b', 'd'):
            raise ValueError(f'no ResNet of depth {depth}, variant {variant!r}: depth one of {sorted(STAGE_BLOCKS)}, '
                             "variant 'b' or 'd'")
        block = Bottleneck if depth >= 50 else BasicBlock
        if groups != 1 and block is BasicBlock:
            raise InputError('grouped (ResNeXt) blocks (backbone_groups) need depth 50 or 101')
        extra = {'groups': groups, 'base_width': base_width} if groups != 1 else {}
        half = width // 2
        stem_specs = ([(3, width, 7, 2)] if variant == 'b'
                      else [(3, half, 3, 2), (half, half, 3, 1), (half, width, 3, 1)])
        self.stem = nn.Sequential(*[ConvNormAct(cin, cout, k, stride=s, frozen_norm=freeze_norm)
                                    for cin, cout, k, s in stem_specs])
        in_channels = width
        self.out_channels: List[int] = []
        self.stages = []
        for index, blocks in enumerate(STAGE_BLOCKS[depth]):
            stage_width = width * 2 ** index
            stage_dcn = dcn if index in dcn_stages else None
            layers = []
            for k in range(blocks):
                stride = 2 if (k == 0 and index > 0) else 1
                layers.append(block(in_channels, stage_width, stride, variant, stage_dcn, freeze_norm, **extra))
                in_channels = stage_width * block.expansion
            stage = nn.Sequential(*layers)
            self.add_sublayer(f'layer{index + 1}', stage)
            self.stages.append(stage)
            self.out_channels.append(in_channels)
        frozen = ([self.stem] if frozen_stages >= 0 else []) + self.stages[:max(frozen_stages, 0)]
        for layer in frozen:
            for param in layer.parameters():
                param.stop_gradient = True

    def forward(self, x: paddle.Tensor, region: Optional[Region] = None) -> List[paddle.Tensor]:
        """x [B, 3, H, W] -> [C2, C3, C4, C5] with strides 4, 8, 16, 32. With ``region``
        every spatial operation reads zeros outside it (``SOLOv2.forward``); the input image
        has them already."""
        for index, conv in enumerate(self.stem):
            x = conv(x if index == 0 else zero_outside(x, region, 2))
        x = F.max_pool2d(zero_outside(x, region, 2), kernel_size=3, stride=2, padding=1)
        feats, scale = [], 4
        for stage in self.stages:
            for block in stage:
                x = block(x, region, scale)
                scale *= block.stride
            feats.append(x)
        return feats
