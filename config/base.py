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
