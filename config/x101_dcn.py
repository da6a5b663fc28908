from solov2.config.r101_dcn import R101DCN


class X101DCN(R101DCN):
    """mmdetection solov2_x101-dcn_fpn_ms-3x_coco: config 10 on a ResNeXt-101 64x4d
    (DCNv2 in the grouped 3x3 convs of C3-C5)."""
    description = 'SOLOv2 X101-64x4d DCNv2-FPN 3x, 800x1333 (mmdetection)'
    backbone_groups = 64
