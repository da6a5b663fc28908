from solov2.config.light512_r50vd_dcn import Light512R50vdDCN


class Light512DCNR50(Light512R50vdDCN):
    """WXinlong/SOLO solov2_light_512_dcn_r50_fpn_8gpu_3x: the light-512 layout of
    config 2 with a plain R50 and DCNv1 (no modulation) in C3-C5 and in the last conv
    of both towers."""
    description = 'SOLOv2-Light R50 DCNv1-FPN, 512x852 (original SOLO)'
    variant = 'b'
    backbone_dcn = 'v1'
    head_dcn = 'v1'
    frozen_stages = 1
