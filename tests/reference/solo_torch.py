"""Independent PyTorch reference of the ORIGINAL SOLOv2 network (WXinlong/SOLO,
mmdetection 1.x), used only by tests.

The module tree reproduces the mmdet-1.x parameter names exactly, so an
original ``.pth`` checkpoint (``{'state_dict': ..., 'meta': ...}``) loads with
``load_state_dict(..., strict=True)``.  Only inference (eval mode) is modelled;
the outputs are the raw head tensors, before any post-processing:

* ``cate``      list of 5 category logits  [B, num_classes, S, S] (no sigmoid,
                no points-NMS)
* ``kernel``    list of 5 dynamic-kernel maps [B, E, S, S]
* ``mask_feat`` unified mask feature        [B, E, H/4, W/4]

Structure (names in parentheses are the state-dict prefixes):

* ``backbone``  ResNet, style 'pytorch' (stride on the 3x3 conv), BN frozen in
  eval mode, outputs C2..C5.  depth 18/34 -> BasicBlock, 50/101 -> Bottleneck.
* ``neck``      FPN: 1x1 laterals (``lateral_convs.{0..3}.conv``, 0 = C2),
  nearest x2 top-down, 3x3 outputs (``fpn_convs.{0..3}.conv``),
  P6 = max_pool2d(P5, 1, stride=2).
* ``bbox_head`` SOLOv2 head: kernel / category towers of ConvModules
  (conv no bias -> GN(32) -> ReLU), ``solo_kernel`` / ``solo_cate``.
* ``mask_feat_head`` SOLOv2 mask-feature head on P2..P5.

ResNeXt (``groups`` > 1, base width 4 per group, mmdetection's ResNeXt) is optional.
Optional DCNv2 (mmcv ``ModulatedDeformConv2dPack``, as in mmdetection's DCN configs):
``dcn_stages`` (backbone stages whose 3x3 ``conv2`` is deformable, 0 = layer1),
``head_dcn_indices`` (tower convs) and ``mask_dcn`` (every mask-feature conv); the
offset conv sits at ``<conv>.conv_offset`` and the deformable conv has no bias.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['build_solo_torch', 'load_solo_checkpoint', 'coord_feat',
           'SOLOv2Torch', 'ResNet', 'FPN', 'SOLOv2Head', 'MaskFeatHead',
           'ConvModule', 'ModulatedDeformConvPack', 'ARCH_ARGS']

# Constructor arguments of the two reference configurations (checked against
# the key lists in tests/fixtures/solo_keys/).
ARCH_ARGS = {
    'solov2_light_448_r18_fpn_8gpu_3x': dict(
        depth=18, stacked_convs=2, seg_feat_channels=256,
        kernel_out_channels=128, mask_mid_channels=128, mask_out_channels=128),
    'solov2_r50_fpn_8gpu_3x': dict(
        depth=50, stacked_convs=4, seg_feat_channels=512,
        kernel_out_channels=256, mask_mid_channels=128, mask_out_channels=256),
}


def coord_feat(x):
    """Two coordinate channels for feature map ``x`` [B, C, H, W]:
    channel 0 = x = linspace(-1, 1, W) along W, channel 1 = y =
    linspace(-1, 1, H) along H.  Returns [B, 2, H, W] (same dtype/device)."""
    b, _, h, w = x.shape
    x_range = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device)
    y_range = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device)
    yy, xx = torch.meshgrid(y_range, x_range, indexing='ij')
    yy = yy.expand(b, 1, -1, -1)
    xx = xx.expand(b, 1, -1, -1)
    return torch.cat([xx, yy], 1)


class ModulatedDeformConvPack(nn.Module):
    """DCNv2 written from its definition (mmcv ``ModulatedDeformConv2dPack``).

    ``conv_offset`` (k x k conv with bias, same stride) predicts 3*k*k channels:
    chunked in three, the first two thirds are the offsets (channel 2t = dy, 2t+1 = dx
    of tap t = i*k + j, taps row-major) and the last third the mask logits. Tap t of
    output (y, x) reads the input bilinearly, zero outside, at
    (y*stride - pad + i + dy, x*stride - pad + j + dx), times sigmoid(mask), and
    ``weight`` [out, in/groups, k, k] (no bias) sums the taps of each group's channels."""

    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__()
        self.k, self.stride, self.pad, self.groups = k, stride, k // 2, groups
        self.weight = nn.Parameter(torch.zeros(cout, cin // groups, k, k))
        self.conv_offset = nn.Conv2d(cin, 3 * k * k, k, stride, k // 2, bias=True)

    def forward(self, x):
        _, _, h, w = x.shape
        o1, o2, mask = torch.chunk(self.conv_offset(x), 3, dim=1)
        offset, mask = torch.cat([o1, o2], 1), mask.sigmoid()
        rows = (torch.arange(offset.shape[2], dtype=x.dtype) * self.stride - self.pad)[:, None]
        cols = (torch.arange(offset.shape[3], dtype=x.dtype) * self.stride - self.pad)[None, :]
        taps = []
        for t in range(self.k * self.k):
            y = rows + t // self.k + offset[:, 2 * t]             # [B, Ho, Wo], pixels
            xx = cols + t % self.k + offset[:, 2 * t + 1]
            grid = torch.stack([2 * xx / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], -1)
            sampled = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros',
                                    align_corners=True)           # [B, C, Ho, Wo]
            taps.append(sampled * mask[:, t:t + 1])
        columns = torch.stack(taps, 2).flatten(1, 2).flatten(2)           # [B, C*k*k, Ho*Wo]
        columns = columns.unflatten(1, (self.groups, -1))                 # [B, G, C/G*k*k, Ho*Wo]
        weight = self.weight.flatten(1).unflatten(0, (self.groups, -1))   # [G, out/G, C/G*k*k]
        out = torch.matmul(weight, columns)                               # [B, G, out/G, Ho*Wo]
        return out.reshape(out.shape[0], -1, *offset.shape[2:])


def _conv3x3(cin, cout, stride, dcn, groups=1):
    if dcn:
        return ModulatedDeformConvPack(cin, cout, 3, stride, groups)
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False, groups=groups)


# --------------------------------------------------------------------------
# backbone
# --------------------------------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dcn=False):
        super().__init__()
        if dcn:
            raise ValueError('the mirror has DCN in Bottleneck blocks only')
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=1e-5)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dcn=False, groups=1, base_width=4):
        super().__init__()
        # style 'pytorch': the stride sits on the 3x3 conv2; ResNeXt (groups > 1): a
        # grouped conv2, floor(planes * base_width / 64) * groups channels inside
        width = planes if groups == 1 else planes * base_width // 64 * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.conv2 = _conv3x3(width, width, stride, dcn, groups)
        self.bn2 = nn.BatchNorm2d(width, eps=1e-5)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
    }

    def __init__(self, depth, dcn_stages=(), groups=1, base_width=4):
        super().__init__()
        if depth not in self.arch_settings:
            raise KeyError('invalid depth %r for resnet' % (depth,))
        block, stage_blocks = self.arch_settings[depth]
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        self.out_channels = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = 64 * 2 ** i
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, stride,
                              bias=False),
                    nn.BatchNorm2d(planes * block.expansion, eps=1e-5))
            extra = dict(dcn=i in dcn_stages, **(dict(groups=groups, base_width=base_width) if groups > 1 else {}))
            layers = [block(inplanes, planes, stride, downsample, **extra)]
            inplanes = planes * block.expansion
            for _ in range(1, num_blocks):
                layers.append(block(inplanes, planes, 1, None, **extra))
            self.add_module('layer%d' % (i + 1), nn.Sequential(*layers))
            self.out_channels.append(inplanes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(4):
            x = getattr(self, 'layer%d' % (i + 1))(x)
            outs.append(x)
        return outs  # C2, C3, C4, C5


# --------------------------------------------------------------------------
# neck
# --------------------------------------------------------------------------
class _ConvWrap(nn.Module):
    """mmdet ConvModule without norm/activation: only ``.conv`` (with bias)."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=True)

    def forward(self, x):
        return self.conv(x)


class FPN(nn.Module):
    def __init__(self, in_channels, out_channels=256, num_outs=5):
        super().__init__()
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(
            [_ConvWrap(c, out_channels, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList(
            [_ConvWrap(out_channels, out_channels, 3) for _ in in_channels])

    def forward(self, inputs):
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], scale_factor=2, mode='nearest')
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs  # P2..P6


# --------------------------------------------------------------------------
# heads
# --------------------------------------------------------------------------
class ConvModule(nn.Module):
    """mmdet ConvModule conv (no bias) -> GroupNorm(32) (``.gn``) -> ReLU."""

    def __init__(self, cin, cout, k, num_groups=32, dcn=False):
        super().__init__()
        self.conv = (ModulatedDeformConvPack(cin, cout, k) if dcn
                     else nn.Conv2d(cin, cout, k, 1, k // 2, bias=False))
        self.gn = nn.GroupNorm(num_groups, cout, eps=1e-5)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activate(self.gn(self.conv(x)))


class SOLOv2Head(nn.Module):
    def __init__(self, num_classes=80, in_channels=256, seg_feat_channels=256,
                 stacked_convs=4, kernel_out_channels=256,
                 num_grids=(40, 36, 24, 16, 12), dcn_indices=()):
        super().__init__()
        self.num_classes = num_classes
        self.seg_num_grids = tuple(num_grids)
        self.kernel_convs = nn.ModuleList()
        self.cate_convs = nn.ModuleList()
        for i in range(stacked_convs):
            cin = in_channels + 2 if i == 0 else seg_feat_channels
            dcn = i in dcn_indices
            self.kernel_convs.append(ConvModule(cin, seg_feat_channels, 3, dcn=dcn))
            cin = in_channels if i == 0 else seg_feat_channels
            self.cate_convs.append(ConvModule(cin, seg_feat_channels, 3, dcn=dcn))
        self.solo_kernel = nn.Conv2d(seg_feat_channels, kernel_out_channels,
                                     3, 1, 1, bias=True)
        self.solo_cate = nn.Conv2d(seg_feat_channels, num_classes, 3, 1, 1,
                                   bias=True)

    @staticmethod
    def split_feats(feats):
        return (F.interpolate(feats[0], scale_factor=0.5, mode='bilinear',
                              align_corners=False),
                feats[1], feats[2], feats[3],
                F.interpolate(feats[4], size=feats[3].shape[-2:],
                              mode='bilinear', align_corners=False))

    def forward_single(self, x, idx):
        kernel_feat = torch.cat([x, coord_feat(x)], 1)
        seg_num_grid = self.seg_num_grids[idx]
        kernel_feat = F.interpolate(kernel_feat, size=(seg_num_grid,) * 2,
                                    mode='bilinear', align_corners=False)
        cate_feat = kernel_feat[:, :-2]
        for conv in self.kernel_convs:
            kernel_feat = conv(kernel_feat)
        kernel_pred = self.solo_kernel(kernel_feat)
        for conv in self.cate_convs:
            cate_feat = conv(cate_feat)
        cate_pred = self.solo_cate(cate_feat)
        return cate_pred, kernel_pred

    def forward(self, feats):
        new_feats = self.split_feats(feats)
        cate, kernel = [], []
        for i, x in enumerate(new_feats):
            c, k = self.forward_single(x, i)
            cate.append(c)
            kernel.append(k)
        return cate, kernel


class MaskFeatHead(nn.Module):
    def __init__(self, in_channels=256, out_channels=128, num_classes=256,
                 start_level=0, end_level=3, dcn=False):
        # (mmdet-1.x naming: ``out_channels`` is the mid width, ``num_classes``
        # the output width E)
        super().__init__()
        self.start_level = start_level
        self.end_level = end_level
        self.convs_all_levels = nn.ModuleList()
        for i in range(start_level, end_level + 1):
            seq = nn.Sequential()
            if i == 0:
                seq.add_module('conv0', ConvModule(in_channels, out_channels, 3, dcn=dcn))
                self.convs_all_levels.append(seq)
                continue
            for j in range(i):
                if j == 0:
                    cin = in_channels + 2 if i == end_level else in_channels
                else:
                    cin = out_channels
                seq.add_module('conv%d' % j, ConvModule(cin, out_channels, 3, dcn=dcn))
                seq.add_module('upsample%d' % j, nn.Upsample(
                    scale_factor=2, mode='bilinear', align_corners=False))
            self.convs_all_levels.append(seq)
        self.conv_pred = nn.Sequential(
            ConvModule(out_channels, num_classes, 1, dcn=dcn))

    def forward(self, inputs):
        out = None
        for i in range(self.end_level - self.start_level + 1):
            x = inputs[i]
            if i == 3:
                x = torch.cat([x, coord_feat(x)], 1)
            y = self.convs_all_levels[i](x)
            out = y if out is None else out + y
        return self.conv_pred(out)


# --------------------------------------------------------------------------
# whole detector
# --------------------------------------------------------------------------
class SOLOv2Torch(nn.Module):
    def __init__(self, depth, stacked_convs, seg_feat_channels,
                 kernel_out_channels, mask_mid_channels, mask_out_channels,
                 num_classes=80, num_grids=(40, 36, 24, 16, 12), dcn_stages=(),
                 head_dcn_indices=(), mask_dcn=False, groups=1):
        super().__init__()
        self.backbone = ResNet(depth, dcn_stages, groups)
        self.neck = FPN(self.backbone.out_channels, 256, num_outs=5)
        self.bbox_head = SOLOv2Head(
            num_classes=num_classes, in_channels=256,
            seg_feat_channels=seg_feat_channels, stacked_convs=stacked_convs,
            kernel_out_channels=kernel_out_channels, num_grids=num_grids,
            dcn_indices=head_dcn_indices)
        self.mask_feat_head = MaskFeatHead(
            in_channels=256, out_channels=mask_mid_channels,
            num_classes=mask_out_channels, start_level=0, end_level=3, dcn=mask_dcn)

    def forward(self, img, return_intermediates=False):
        """img float32 [B, 3, H, W], H and W multiples of 32.

        Returns ``{'cate': [5 x [B, C, S, S]] (raw logits), 'kernel':
        [5 x [B, E, S, S]], 'mask_feat': [B, E, H/4, W/4]}``; with
        ``return_intermediates=True`` also ``'backbone'`` (C2..C5) and
        ``'fpn'`` (P2..P6)."""
        cs = self.backbone(img)
        ps = self.neck(cs)
        cate, kernel = self.bbox_head(ps)
        mask_feat = self.mask_feat_head(ps[0:4])
        out = {'cate': cate, 'kernel': kernel, 'mask_feat': mask_feat}
        if return_intermediates:
            out['backbone'] = cs
            out['fpn'] = ps
        return out


def build_solo_torch(depth, stacked_convs, seg_feat_channels,
                     kernel_out_channels, mask_mid_channels, mask_out_channels,
                     num_classes=80, num_grids=(40, 36, 24, 16, 12), **dcn):
    """Build the reference network in eval mode (BN uses running stats);
    ``dcn``: ``dcn_stages``, ``head_dcn_indices``, ``mask_dcn`` (see the module doc) and
    ``groups`` (ResNeXt 64x4d: 64)."""
    model = SOLOv2Torch(depth, stacked_convs, seg_feat_channels,
                        kernel_out_channels, mask_mid_channels,
                        mask_out_channels, num_classes=num_classes,
                        num_grids=num_grids, **dcn)
    return model.eval()


def load_solo_checkpoint(model, path):
    """Strictly load an mmdet-1.x checkpoint (dict with ``state_dict``, or a
    bare state dict) into ``model``.  Returns the checkpoint's ``meta``
    (``{}`` if absent)."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except TypeError:  # very old torch without weights_only
        ckpt = torch.load(path, map_location='cpu')
    if isinstance(ckpt, dict) and 'state_dict' in ckpt:
        sd, meta = ckpt['state_dict'], ckpt.get('meta', {}) or {}
    else:
        sd, meta = ckpt, {}
    model.load_state_dict(sd, strict=True)
    model.eval()
    return meta
