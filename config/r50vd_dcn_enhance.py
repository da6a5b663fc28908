from solov2.config.base import FULL_SCALE_RANGES
from solov2.config.light512_r50vd_dcn import Light512R50vdDCN


class R50vdDCNEnhance(Light512R50vdDCN):
    """PaddleDetection 2.x solov2_r50_enhance_coco (Light-R50-VD-DCN-FPN, 512)."""
    description = 'SOLOv2 enhance R50-vd DCNv2-FPN, 512x852 (PaddleDetection 2.x)'
    dcn_bias = True
    mask_feat_dcn = True
    drop_block = True
    scale_ranges = FULL_SCALE_RANGES
    colour_strength = 0.5
    crop_prob = 0.5
    ema_decay = 0.9998
