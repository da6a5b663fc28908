from solov2.config.light448_r18 import Light448R18


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
