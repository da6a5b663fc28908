"""The numbered configs but 0 (``config.CONFIGS``), in number order: each a variant of ``SOLOv2Base``
or of an earlier one that overrides only what differs (docs/configs.md)."""
from solov2.config.base import FULL_SCALE_RANGES, SOLOv2Base


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


class R101vdDCN(SOLOv2Base):
    """PaddleDetection 2.x solov2_r101_vd_fpn_3x_coco: R101-vd with DCNv2 in C3-C5,
    every tower conv and every mask-feature conv deformable."""
    description = 'SOLOv2 R101-vd DCNv2-FPN 3x, 800x1333 (PaddleDetection 2.x)'
    depth = 101
    variant = 'd'
    backbone_dcn = 'v2'
    backbone_dcn_stages = (1, 2, 3)
    head_dcn = 'v2'
    head_dcn_indices = (0, 1, 2, 3)
    dcn_bias = True
    mask_feat_dcn = True


class Light448R18(Light448R50):
    """WXinlong/SOLO solov2_light_448_r18_fpn_8gpu_3x."""
    description = 'SOLOv2-Light R18-FPN, 448x768'
    depth = 18


class Light448R34(Light448R50):
    """WXinlong/SOLO solov2_light_448_r34_fpn_8gpu_3x."""
    description = 'SOLOv2-Light R34-FPN, 448x768'
    depth = 34


class Light512DCNR50(Light512R50vdDCN):
    """WXinlong/SOLO solov2_light_512_dcn_r50_fpn_8gpu_3x: the light-512 layout of
    config 2 with a plain R50 and DCNv1 (no modulation) in C3-C5 and in the last conv
    of both towers."""
    description = 'SOLOv2-Light R50 DCNv1-FPN, 512x852 (original SOLO)'
    variant = 'b'
    backbone_dcn = 'v1'
    head_dcn = 'v1'
    frozen_stages = 1


class R101FPN(SOLOv2Base):
    """WXinlong/SOLO solov2_r101_fpn_8gpu_3x."""
    description = 'SOLOv2 R101-FPN 3x, 800x1333 (original SOLO)'
    depth = 101


class ShapesR18(Light448R18):
    """A narrow R18 SOLOv2 for the synthetic shapes dataset (tools/make_shapes_dataset.py),
    small enough to train from scratch on a 2-core CPU in under half an hour."""
    description = 'Shapes: narrow R18-FPN for the synthetic shapes dataset, 320x640'
    backbone_width = 16         # a quarter of ResNet-18's channels
    frozen_stages = -1
    freeze_norm = False
    fpn_channels = 32
    head_channels = 64
    kernel_channels = 32
    mask_feat_channels = 32
    num_classes = 4
    class_names = ('circle', 'square', 'triangle', 'star')
    num_grids = (20, 16, 12, 8, 6)
    scale_ranges = ((1, 48), (24, 96), (48, 192), (96, 384), (192, 1024))
    dataset_dir = 'datasets/shapes'
    train_ann = 'annotations/instances_train.json'
    train_images = 'train'
    val_ann = 'annotations/instances_val.json'
    val_images = 'val'
    batch_size = 4              # twice the steps of batch 8 for the same images: AP 0.603 vs 0.569 at 30 min
    reference_batch = 4
    optimizer = 'adamw'         # from scratch, AdamW learns ~3x faster than SGD here
    base_lr = 0.002
    epochs = 80                 # 12000 iterations; train.py --max-minutes 30 compresses the
    lr_steps = (70, 76)         # schedule into the budget: LR drops at 87.5% and 95% of it
    warmup_iters = 200
    train_shorts = (192, 224, 256, 288, 320)  # up to the test size: large shapes at 320
    train_max = 448
    test_short = 320            # above the images' 256: finer 1/4-scale masks for small shapes
    test_max = 640


class R101DCN(R101vdDCN):
    """mmdetection solov2_r101-dcn_fpn_ms-3x_coco: the layout of config 4 (DCNv2 in C3-C5,
    in every tower conv and every mask-feature conv) on a 7x7-stem R101, and no bias on
    the deformable head and mask-feature convs."""
    description = 'SOLOv2 R101 DCNv2-FPN 3x, 800x1333 (mmdetection)'
    variant = 'b'
    dcn_bias = False


class Light448DCNR50(Light512DCNR50):
    """mmdetection solov2-light_r50-dcn_fpn_ms-3x_coco: the layout of config 7 with DCNv2
    (modulated) instead of DCNv1, tested at 448x768 as mmdetection's light configs."""
    description = 'SOLOv2-Light R50 DCNv2-FPN, 448x768 (mmdetection)'
    backbone_dcn = 'v2'
    head_dcn = 'v2'
    train_max = 768
    test_short = 448
    test_max = 768


class X101DCN(R101DCN):
    """mmdetection solov2_x101-dcn_fpn_ms-3x_coco: config 10 on a ResNeXt-101 64x4d
    (DCNv2 in the grouped 3x3 convs of C3-C5)."""
    description = 'SOLOv2 X101-64x4d DCNv2-FPN 3x, 800x1333 (mmdetection)'
    backbone_groups = 64
