"""Every knob of a SOLOv2 setup, grouped and commented. Variants in this package
subclass ``SOLOv2Base`` and override only what differs. Plain values only."""

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

    description = 'SOLOv2 R50-FPN 3x, 800x1333'

    # ---- backbone -------------------------------------------------------------
    depth = 50                  # ResNet depth: 18, 34, 50, 101
    variant = 'b'               # 'b' (7x7 stem) or 'd' (deep stem, avg-pool shortcut)
    backbone_width = 64         # first-stage channels (64 = standard ResNet; smaller = narrow)
    backbone_groups = 1         # ResNeXt cardinality of the 3x3 convs (1 = ResNet; depth 50/101)
    backbone_base_width = 4     # ResNeXt channels per group in the first stage (64x4d: 64, 4)
    backbone_dcn = None         # None, 'v1' (DCN, no mask) or 'v2' (modulated DCN)
    backbone_dcn_stages = ()    # stages with DCN: 0 = C2 .. 3 = C5 (e.g. (1, 2, 3))
    frozen_stages = 1           # -1 none, 0 stem, k: stem + first k stages get no gradient
    freeze_norm = True          # BN uses running statistics, affine params fixed

    # ---- neck -----------------------------------------------------------------
    fpn_channels = 256

    # ---- instance head --------------------------------------------------------
    num_classes = 80            # foreground classes, no background channel
    class_names = COCO_CLASSES
    head_convs = 4              # convs per tower (kernel and category)
    head_channels = 512         # tower width
    kernel_channels = 256       # E: dynamic kernel size = mask-feature channels
    num_grids = (40, 36, 24, 16, 12)
    head_dcn = None             # None, 'v1' or 'v2' for the tower convs below
    head_dcn_indices = ()       # tower conv indices with DCN (both towers)
    dcn_bias = False            # head/mask-feature DCN convs carry a bias (PaddleDetection 2.x)
    drop_block = False          # DropBlock after the towers, training only

    # ---- mask-feature head ----------------------------------------------------
    mask_feat_channels = 128    # middle width; output width is kernel_channels
    mask_feat_dcn = False       # every mask-feature conv deformable (type head_dcn)

    # ---- targets (training) ---------------------------------------------------
    scale_ranges = FULL_SCALE_RANGES  # sqrt(w*h) range per level (they overlap)
    sigma = 0.2                 # centre-region scale
    segm_strides = (8, 8, 16, 32, 32)

    # ---- data (paths relative to the working directory) ------------------------
    dataset_dir = 'datasets/coco'
    train_ann = 'annotations/instances_train2017.json'
    train_images = 'train2017'
    val_ann = 'annotations/instances_val2017.json'
    val_images = 'val2017'
    keep_empty_images = True    # images without objects stay in training (negatives)
    max_image_pixels = 100_000_000  # larger images are refused with a clear message (0 = no limit)

    # ---- training -------------------------------------------------------------
    batch_size = 2              # images per device per step
    reference_batch = 16        # total batch that base_lr is meant for (linear LR scaling)
    optimizer = 'momentum'      # 'momentum' (SGD, as SOLO) or 'adamw'
    base_lr = 0.01
    momentum = 0.9              # SGD momentum
    weight_decay = 1e-4
    epochs = 36
    lr_schedule = 'step'        # 'step' (lr_steps, lr_gamma) or 'cosine' (to 0 at the end of
                                # the epochs, or of train.py --max-minutes if that comes first)
    lr_steps = (27, 33)         # epochs after which LR *= lr_gamma
    lr_gamma = 0.1
    warmup_iters = 500          # linear warm-up from base_lr * warmup_ratio
    warmup_ratio = 0.01
    grad_clip = 35.0            # max global gradient norm (0 = no clipping)
    ema_decay = 0.0             # 0 = no EMA of the weights, else e.g. 0.9998
    ema_ramp = 2000             # EMA decay ramps up as 1 - exp(-updates / ema_ramp)
    train_shorts = (640, 672, 704, 736, 768, 800)  # multi-scale: short side picked per image
    train_max = 1333
    flip_prob = 0.5
    colour_strength = 0.0       # colour jitter strength (0 = off)
    crop_prob = 0.0             # probability of a random crop that keeps objects
    ins_loss_weight = 3.0       # dice loss weight
    focal_alpha = 0.25
    focal_gamma = 2.0
    num_workers = 2             # data-loading processes
    pretrained = ''             # backbone-only checkpoint from convert/ ('' = random init)
    seed = 0

    # ---- inference ------------------------------------------------------------
    test_short = 800            # resize shorter side to this ...
    test_max = 1333             # ... unless the longer side would exceed this
    score_threshold = 0.1       # category score to become a candidate
    mask_threshold = 0.5        # sigmoid threshold for binary masks
    nms_pre = 500               # candidates kept before Matrix NMS
    update_threshold = 0.05     # score kept after Matrix NMS decay
    max_per_image = 100
    nms_kernel = 'gaussian'     # Matrix NMS decay: 'gaussian' exp(-sigma*iou^2) or 'linear'
    nms_sigma = 2.0

    @classmethod
    def settings(cls) -> dict:
        """All knobs as {name: value}, in definition order through the class hierarchy."""
        names = []
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if not name.startswith('_') and not callable(value) and \
                        not isinstance(value, classmethod) and name not in names:
                    names.append(name)
        return {name: getattr(cls, name) for name in names}
