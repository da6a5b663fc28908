"""The one place that reads a config to make layers."""
from solov2.model.fpn import FPN
from solov2.model.mask_feat_head import MaskFeatHead
from solov2.model.resnet import ResNet
from solov2.model.solov2 import SOLOv2
from solov2.model.solov2_head import SOLOv2Head


def build_model(cfg) -> SOLOv2:
    """SOLOv2 network for a config class (see ``config.base.SOLOv2Base``)."""
    backbone = ResNet(depth=cfg.depth, variant=cfg.variant, dcn=cfg.backbone_dcn,
                      dcn_stages=cfg.backbone_dcn_stages, frozen_stages=cfg.frozen_stages,
                      freeze_norm=cfg.freeze_norm, width=cfg.backbone_width,
                      groups=cfg.backbone_groups, base_width=cfg.backbone_base_width)
    neck = FPN(backbone.out_channels, cfg.fpn_channels)
    head = SOLOv2Head(num_classes=cfg.num_classes, in_channels=cfg.fpn_channels,
                      feat_channels=cfg.head_channels, stacked_convs=cfg.head_convs,
                      kernel_channels=cfg.kernel_channels, num_grids=cfg.num_grids,
                      dcn=cfg.head_dcn, dcn_indices=cfg.head_dcn_indices,
                      dcn_bias=cfg.dcn_bias, drop_block=cfg.drop_block)
    mask_head = MaskFeatHead(in_channels=cfg.fpn_channels, mid_channels=cfg.mask_feat_channels,
                             out_channels=cfg.kernel_channels,
                             dcn=cfg.head_dcn if cfg.mask_feat_dcn else None,
                             dcn_bias=cfg.dcn_bias)
    return SOLOv2(backbone, neck, head, mask_head)
