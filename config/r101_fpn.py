from solov2.config.base import SOLOv2Base


class R101FPN(SOLOv2Base):
    """WXinlong/SOLO solov2_r101_fpn_8gpu_3x."""
    description = 'SOLOv2 R101-FPN 3x, 800x1333 (original SOLO)'
    depth = 101
