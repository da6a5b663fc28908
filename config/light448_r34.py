from solov2.config.light448_r50 import Light448R50


class Light448R34(Light448R50):
    """WXinlong/SOLO solov2_light_448_r34_fpn_8gpu_3x."""
    description = 'SOLOv2-Light R34-FPN, 448x768'
    depth = 34
