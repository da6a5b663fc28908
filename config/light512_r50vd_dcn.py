from solov2.config.light448_r50 import Light448R50


class Light512R50vdDCN(Light448R50):
    """SOLOv2-Light 512, R50-vd with DCNv2 (PaddleDetection 0.5
    solov2_light_r50_vd_fpn_dcn_512_3x)."""
    description = 'SOLOv2-Light R50-vd DCNv2-FPN, 512x852 (PaddleDetection 0.5)'
    variant = 'd'
    backbone_dcn = 'v2'
    backbone_dcn_stages = (1, 2, 3)
    frozen_stages = -1
    head_convs = 3
    head_dcn = 'v2'
    head_dcn_indices = (2,)
    scale_ranges = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))
    train_max = 852
    test_short = 512
    test_max = 852
