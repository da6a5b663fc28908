from config.light448_r50 import Light448R50


class Light512DCNR50(Light448R50):
    """WXinlong/SOLO solov2_light_512_dcn_r50_fpn_8gpu_3x: DCNv1 in C3-C5 and in the
    last conv of both towers."""
    description = 'SOLOv2-Light R50 DCNv1-FPN, 512x852 (original SOLO)'
    backbone_dcn = 'v1'
    backbone_dcn_stages = (1, 2, 3)
    head_convs = 3
    head_dcn = 'v1'
    head_dcn_indices = (2,)
    scale_ranges = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))
    test_short = 512
    test_max = 852
