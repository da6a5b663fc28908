from solov2.config.base import SOLOv2Base


class R101vdDCN(SOLOv2Base):
    """PaddleDetection 2.x solov2_r101_vd_fpn_3x_coco: R101-vd with DCNv2 in C3-C5,
    every tower conv and every mask-feature conv deformable."""
    description = 'SOLOv2 R101-vd DCNv2-FPN 3x, 800x1333 (PaddleDetection 2.x)'
    depth = 101
    variant = 'd'
    backbone_dcn = 'v2'
    backbone_dcn_stages = (1, 2, 3)
    head_dcn = 'v2'
    head_dcn_indices = (0, 1, 2, 3)
    dcn_bias = True
    mask_feat_dcn = True
