from config.r101_fpn import R101FPN


class R101DCN(R101FPN):
    """mmdetection solov2_r101-dcn_fpn_ms-3x_coco: R101 (7x7 stem) with DCNv2 in C3-C5,
    every tower conv and every mask-feature conv deformable, no bias on them."""
    description = 'SOLOv2 R101 DCNv2-FPN 3x, 800x1333 (mmdetection)'
    backbone_dcn = 'v2'
    backbone_dcn_stages = (1, 2, 3)
    head_dcn = 'v2'
    head_dcn_indices = (0, 1, 2, 3)
    mask_feat_dcn = True
