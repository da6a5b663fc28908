from solov2.config.light512_dcn_r50 import Light512DCNR50


class Light448DCNR50(Light512DCNR50):
    """mmdetection solov2-light_r50-dcn_fpn_ms-3x_coco: the layout of config 7 with DCNv2
    (modulated) instead of DCNv1, tested at 448x768 as mmdetection's light configs."""
    description = 'SOLOv2-Light R50 DCNv2-FPN, 448x768 (mmdetection)'
    backbone_dcn = 'v2'
    head_dcn = 'v2'
    train_max = 768
    test_short = 448
    test_max = 768
