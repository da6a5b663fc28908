from solov2.config.base import SOLOv2Base


class Light448R50(SOLOv2Base):
    """SOLOv2-Light 448, R50-FPN (WXinlong/SOLO solov2_light_448_r50_fpn_8gpu_3x)."""
    description = 'SOLOv2-Light R50-FPN, 448x768'
    head_convs = 2
    head_channels = 256
    kernel_channels = 128
    scale_ranges = ((1, 56), (28, 112), (56, 224), (112, 448), (224, 896))
    train_shorts = (352, 384, 416, 448, 480, 512)
    train_max = 768
    test_short = 448
    test_max = 768
