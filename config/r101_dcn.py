from solov2.config.r101vd_dcn import R101vdDCN


class R101DCN(R101vdDCN):
    """mmdetection solov2_r101-dcn_fpn_ms-3x_coco: the layout of config 4 (DCNv2 in C3-C5,
    in every tower conv and every mask-feature conv) on a 7x7-stem R101, and no bias on
    the deformable head and mask-feature convs."""
    description = 'SOLOv2 R101 DCNv2-FPN 3x, 800x1333 (mmdetection)'
    variant = 'b'
    dcn_bias = False
