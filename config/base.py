"""Every knob of a SOLOv2 setup, declared once: ``name = Setting(default, 'one-line doc',
group=..., rule=...)`` (config/setting.py). ``group='model'``: shapes the network or fixes what its
outputs mean (recorded in the sidecar; a command line may not contradict it); ``'test'``: pre- and
post-processing (recorded, free to change); none: training only. ``rule``: the values it accepts
(config/checks.py). Variants subclass ``SOLOv2Base`` and override only what differs (``depth = 101``)."""
from solov2.config.checks import (
    FRACTION,
    LEVEL_RANGES,
    LEVEL_SIZES,
    NON_NEGATIVE,
    NON_NEGATIVE_NUMBER,
    POSITIVE,
    POSITIVE_NUMBER,
    integer,
    number,
    one_of,
    sizes,
)
from solov2.config.setting import Setting, declared_settings

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')

FULL_SCALE_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))


class SOLOv2Base:
    """SOLOv2 R50-FPN, 3x schedule, 800x1333 test size (WXinlong/SOLO
    solov2_r50_fpn_8gpu_3x; PaddleDetection solov2_r50_fpn_3x)."""

    description = Setting('SOLOv2 R50-FPN 3x, 800x1333', 'one-line summary of the config (configs list, --help)')

    # ---- backbone -------------------------------------------------------------
    depth = Setting(50, 'ResNet depth: 18, 34, 50 or 101', group='model', rule=one_of(18, 34, 50, 101))
    variant = Setting('b', "'b' (7x7 stem) or 'd' (deep stem, avg-pool shortcut)", group='model', rule=one_of('b', 'd'))
    backbone_width = Setting(64, 'first-stage channels (64 = standard ResNet; smaller = narrow)',
                             group='model', rule=POSITIVE)
    backbone_groups = Setting(1, 'ResNeXt cardinality of the 3x3 convs (1 = ResNet; depth 50/101)',
                              group='model', rule=POSITIVE)
    backbone_base_width = Setting(4, 'ResNeXt channels per group in the first stage (64x4d: 64, 4)',
                                  group='model', rule=POSITIVE)
    backbone_dcn = Setting(None, "None, 'v1' (DCN, no mask) or 'v2' (modulated DCN)",
                           group='model', rule=one_of(None, 'v1', 'v2'))
    backbone_dcn_stages = Setting((), 'stages with DCN: 0 = C2 .. 3 = C5 (e.g. (1, 2, 3))', group='model')
    frozen_stages = Setting(1, '-1 none, 0 stem, k: stem + first k stages get no gradient', rule=integer(-1))
    freeze_norm = Setting(True, 'BN uses running statistics, affine params fixed')

    # ---- neck -----------------------------------------------------------------
    fpn_channels = Setting(256, 'FPN output channels, every level', group='model', rule=POSITIVE)

    # ---- instance head --------------------------------------------------------
    num_classes = Setting(80, 'foreground classes, no background channel', group='model', rule=POSITIVE)
    class_names = Setting(COCO_CLASSES, 'one name per class, for results, drawings and COCO category matching',
                          group='test')
    head_convs = Setting(4, 'convs per tower (kernel and category)', group='model', rule=POSITIVE)
    head_channels = Setting(512, 'tower width', group='model', rule=POSITIVE)
    kernel_channels = Setting(256, 'E: dynamic kernel size = mask-feature channels', group='model', rule=POSITIVE)
    num_grids = Setting((40, 36, 24, 16, 12), 'S per FPN level: an S x S grid of instance cells',
                        group='model', rule=LEVEL_SIZES)
    head_dcn = Setting(None, "None, 'v1' or 'v2' for the tower convs in head_dcn_indices",
                       group='model', rule=one_of(None, 'v1', 'v2'))
    head_dcn_indices = Setting((), 'tower conv indices with DCN (both towers)', group='model')
    dcn_bias = Setting(False, 'head/mask-feature DCN convs carry a bias (PaddleDetection 2.x)', group='model')
    drop_block = Setting(False, 'DropBlock after the towers, training only')

    # ---- mask-feature head ----------------------------------------------------
    mask_feat_channels = Setting(128, 'middle width; output width is kernel_channels', group='model', rule=POSITIVE)
    mask_feat_dcn = Setting(False, 'every mask-feature conv deformable (type head_dcn)', group='model')

    # ---- targets (training) ---------------------------------------------------
    scale_ranges = Setting(FULL_SCALE_RANGES, 'sqrt(w*h) range of the objects each level learns (they overlap)',
                           rule=LEVEL_RANGES)
    sigma = Setting(0.2, 'centre region: the box scaled by sigma around the mass centre',
                    rule=number(0, 1, open_low=True))
    segm_strides = Setting((8, 8, 16, 32, 32), 'stride per level: inference drops a mask not larger than it',
                           group='model', rule=LEVEL_SIZES)

    # ---- data (paths relative to the working directory) ------------------------
    dataset_dir = Setting('datasets/coco', 'dataset folder; the four paths below are inside it')
    train_ann = Setting('annotations/instances_train2017.json', 'training annotations (COCO json)')
    train_images = Setting('train2017', 'training images folder')
    val_ann = Setting('annotations/instances_val2017.json', 'validation annotations (train.py evaluation, eval.py)')
    val_images = Setting('val2017', 'validation images folder')
    keep_empty_images = Setting(True, 'images without objects stay in training (negatives)')
    max_image_pixels = Setting(100_000_000, 'larger images are refused with a clear message (0 = no limit)',
                               rule=NON_NEGATIVE)

    # ---- training -------------------------------------------------------------
    batch_size = Setting(2, 'images per device per step', rule=POSITIVE)
    reference_batch = Setting(16, 'total batch that base_lr is meant for (train.py --scale-lr scales linearly)',
                              rule=POSITIVE)
    optimizer = Setting('momentum', "'momentum' (SGD, as SOLO) or 'adamw'", rule=one_of('momentum', 'adamw'))
    base_lr = Setting(0.01, 'learning rate after warm-up, before any decay', rule=POSITIVE_NUMBER)
    momentum = Setting(0.9, 'SGD momentum', rule=FRACTION)
    weight_decay = Setting(1e-4, 'L2 decay (momentum) or decoupled weight decay (adamw)', rule=NON_NEGATIVE_NUMBER)
    epochs = Setting(36, 'passes over the training images', rule=POSITIVE)
    lr_schedule = Setting('step', "'step' (lr_steps, lr_gamma) or 'cosine' (to 0 at the end or at --max-minutes)",
                          rule=one_of('step', 'cosine'))
    lr_steps = Setting((27, 33), 'epochs after which LR *= lr_gamma (scaled when only epochs changes)')
    lr_gamma = Setting(0.1, 'LR factor at each of lr_steps', rule=FRACTION)
    warmup_iters = Setting(500, 'linear warm-up iterations from base_lr * warmup_ratio (unset: <= 1/10 of run)',
                           rule=NON_NEGATIVE)
    warmup_ratio = Setting(0.01, 'LR at iteration 0 as a fraction of base_lr', rule=FRACTION)
    grad_clip = Setting(35.0, 'max global gradient norm (0 = no clipping)', rule=NON_NEGATIVE_NUMBER)
    ema_decay = Setting(0.0, '0 = no EMA of the weights, else e.g. 0.9998', rule=FRACTION)
    ema_ramp = Setting(2000, 'EMA decay ramps up as 1 - exp(-updates / ema_ramp)', rule=POSITIVE)
    train_shorts = Setting((640, 672, 704, 736, 768, 800), 'multi-scale: short side picked per image', rule=sizes())
    train_max = Setting(1333, 'training resize: longer side at most this', rule=POSITIVE)
    flip_prob = Setting(0.5, 'probability of a horizontal flip per training image', rule=FRACTION)
    colour_strength = Setting(0.0, 'colour jitter strength (0 = off)', rule=NON_NEGATIVE_NUMBER)
    crop_prob = Setting(0.0, 'probability of a random crop that keeps objects', rule=FRACTION)
    ins_loss_weight = Setting(3.0, 'dice loss weight', rule=NON_NEGATIVE_NUMBER)
    focal_alpha = Setting(0.25, 'focal loss: positive cells weigh alpha, negative ones 1 - alpha', rule=FRACTION)
    focal_gamma = Setting(2.0, 'focal loss exponent: larger = less weight on easy cells', rule=NON_NEGATIVE_NUMBER)
    num_workers = Setting(2, 'data-loading processes', rule=NON_NEGATIVE)
    pretrained = Setting('', "backbone checkpoint from convert/ ('' = random init; a whole model: --weights)")
    seed = Setting(0, 'seed of the initial weights, augmentation and DropBlock', rule=NON_NEGATIVE)

    # ---- inference ------------------------------------------------------------
    test_short = Setting(800, 'inference resize: shorter side to this, unless test_max is exceeded',
                         group='test', rule=POSITIVE)
    test_max = Setting(1333, 'inference resize: longer side at most this', group='test', rule=POSITIVE)
    score_threshold = Setting(0.1, 'category score to become a candidate', group='test', rule=FRACTION)
    mask_threshold = Setting(0.5, 'sigmoid threshold for binary masks', group='test', rule=FRACTION)
    nms_pre = Setting(500, 'candidates kept before Matrix NMS', group='test', rule=POSITIVE)
    update_threshold = Setting(0.05, 'score kept after Matrix NMS decay', group='test', rule=FRACTION)
    max_per_image = Setting(100, 'most detections kept per image', group='test', rule=POSITIVE)
    nms_kernel = Setting('gaussian', "Matrix NMS decay: 'gaussian' exp(-sigma*iou^2) or 'linear'",
                         group='test', rule=one_of('gaussian', 'linear'))
    nms_sigma = Setting(2.0, "sigma of the 'gaussian' Matrix NMS decay", group='test', rule=POSITIVE_NUMBER)
    openvino_buckets = Setting('int8', 'openvino: padded to one of 7 sizes (same results): int8|all (int8, f32)|none',
                               rule=one_of('int8', 'all', 'none'))
    openvino_streams = Setting(1, 'openvino: calls from threads that run at once, each on a share of the threads',
                               rule=POSITIVE)

    @classmethod
    def settings(cls) -> dict:
        """All knobs as {name: value}, in declaration order."""
        return {name: getattr(cls, name) for name in declared_settings(cls)}
