"""PaddleDetection (``ppdet``) as an independent, executable SOLOv2 reference.

A reference, not part of the product: the tests (parity of converted checkpoints) and
``tools/dev/benchmark.py`` (PaddleDetection's speed in the same run) import it; the product
(demo.py, train.py, eval.py, model/, data/, convert/) never imports ``ppdet``.

The installed ``paddledet`` wheel ships no YAML configs, so the SOLOv2
architectures are assembled here directly from ppdet's 2.x modules with the
hyper-parameters of the upstream PaddleDetection configs (see ``FAMILIES``).

Paddle-3.x fixes applied by ``patch_postprocess`` (all in
``SOLOv2Head.get_seg_single`` / ``MaskMatrixNMS.__call__``):

1. ``paddle.cast(im_shape[0], 'int32')[0]``: ``im_shape[0]`` is 0-D in paddle 3,
   so indexing it fails -> reshape to ``[1]`` first.
2. ``paddle.zeros(shape=paddle.shape(X))`` fails for 1-D ``X`` -> ``zeros_like``.
3. ``sum_masks > strides`` mixes float32 and int32 -> strides cast to float32.
4. ``n_samples = paddle.shape(cate_labels)`` used as an ``expand`` size ->
   python ``int``.
5. ``paddle.concat`` with 0-D tensors (the fake-candidate index ``ind_a`` and
   the indices appended to ``keep``) -> the 0-D tensor is reshaped to ``[1]``.

The patch is a textual rewrite of the *installed* ppdet source of the two
functions (``inspect.getsource``), re-compiled in ppdet's own module
namespace, so everything else is exactly ppdet's code.  Every rewrite must
match the expected number of times, otherwise an error is raised instead of
silently running unpatched / differently patched code.
"""

from __future__ import annotations

import inspect
import textwrap

import numpy as np
import paddle
import paddle.nn as nn
from ppdet.modeling import layers as _ppdet_layers
from ppdet.modeling.architectures.solov2 import SOLOv2
from ppdet.modeling.backbones.resnet import ResNet
from ppdet.modeling.heads import solov2_head as _ppdet_solov2_head
from ppdet.modeling.heads.solov2_head import SOLOv2Head, SOLOv2MaskHead
from ppdet.modeling.layers import MaskMatrixNMS
from ppdet.modeling.losses.solov2_loss import SOLOv2Loss
from ppdet.modeling.necks.fpn import FPN

__all__ = [
    'FAMILIES',
    'CATE_BIAS',
    'CATE_OFFSET',
    'NUM_CLASSES',
    'NUM_GRIDS',
    'SEGM_STRIDES',
    'SCORE_THRESHOLD',
    'MASK_THRESHOLD',
    'UPDATE_THRESHOLD',
    'build',
    'randomize',
    'calibrate',
    'save',
    'patch_postprocess',
    'run',
    'clean_ppdet_detections',
]

NUM_CLASSES = 80
NUM_GRIDS = [40, 36, 24, 16, 12]
SEGM_STRIDES = [8, 8, 16, 32, 32]
SCORE_THRESHOLD = 0.1
MASK_THRESHOLD = 0.5
UPDATE_THRESHOLD = 0.05  # MaskMatrixNMS.update_threshold

# ``solo_cate.bias``: the constant CATE_BIAS alone gives ~70 to ~750 candidates (> 0.1 after
# points-NMS, 256x320 N(0,1) image, r50_fpn, seeds 0-3), dominated by a few classes; ``calibrate``
# centres it per class plus CATE_OFFSET: ~50-140 candidates for every family and seed tried.
CATE_BIAS = -5.0
CATE_OFFSET = -4.25
CALIB_SIZE = (128, 160)  # (H, W) of the calibration image
CALIB_GRID_DIV = 2       # calibration pass runs the head on grids ceil(S / 2)


def _mask_nms():
    return MaskMatrixNMS(update_threshold=UPDATE_THRESHOLD, pre_nms_top_n=500,
                         post_nms_top_n=100, kernel='gaussian', sigma=2.0)


def _loss():
    return SOLOv2Loss(ins_loss_weight=3.0, focal_loss_gamma=2.0,
                      focal_loss_alpha=0.25)


def _assemble(backbone_kw, head_kw, mask_head_kw):
    backbone = ResNet(norm_type='bn', freeze_at=0, return_idx=[0, 1, 2, 3],
                      num_stages=4, **backbone_kw)
    neck = FPN(in_channels=[s.channels for s in backbone.out_shape],
               out_channel=256)
    head = SOLOv2Head(num_classes=NUM_CLASSES, in_channels=256,
                      num_grids=list(NUM_GRIDS), segm_strides=list(SEGM_STRIDES),
                      score_threshold=SCORE_THRESHOLD,
                      mask_threshold=MASK_THRESHOLD, solov2_loss=_loss(),
                      mask_nms=_mask_nms(), norm_type='gn', **head_kw)
    mask_head = SOLOv2MaskHead(in_channels=256, start_level=0, end_level=3,
                               norm_type='gn', **mask_head_kw)
    return SOLOv2(backbone=backbone, solov2_head=head, mask_head=mask_head,
                  neck=neck)


def _r50_fpn():
    # configs/solov2/_base_/solov2_r50_fpn.yml (solov2_r50_fpn_1x/3x_coco)
    return _assemble(
        dict(depth=50, variant='b'),
        dict(seg_feat_channels=512, stacked_convs=4, kernel_out_channels=256),
        dict(mid_channels=128, out_channels=256))


def _r50_enhance():
    # configs/solov2/solov2_r50_enhance_coco.yml (sync_bn -> bn on CPU)
    return _assemble(
        dict(depth=50, variant='d', freeze_norm=False, dcn_v2_stages=[1, 2, 3],
             lr_mult_list=[0.05, 0.05, 0.1, 0.15]),
        dict(seg_feat_channels=256, stacked_convs=3, kernel_out_channels=128,
             dcn_v2_stages=[2], drop_block=True),
        dict(mid_channels=128, out_channels=128, use_dcn_in_tower=True))


def _r101_vd_dcn():
    # configs/solov2/solov2_r101_vd_fpn_3x_coco.yml on top of
    # configs/solov2/_base_/solov2_r50_fpn.yml (upstream PaddleDetection)
    return _assemble(
        dict(depth=101, variant='d', dcn_v2_stages=[1, 2, 3]),
        dict(seg_feat_channels=512, stacked_convs=4, kernel_out_channels=256,
             dcn_v2_stages=[0, 1, 2, 3]),
        dict(mid_channels=128, out_channels=256, use_dcn_in_tower=True))


def _light448_r50():
    # the original SOLO light-448 R50 layout (our config 1) built from 2.x modules:
    # ResNet50-vb, head 2x256, E=128, mask head 128 -> 128, no DCN
    return _assemble(
        dict(depth=50, variant='b'),
        dict(seg_feat_channels=256, stacked_convs=2, kernel_out_channels=128),
        dict(mid_channels=128, out_channels=128))


def _light_r50_vd_dcn_v05():
    # PaddleDetection 0.5 static configs/solov2/solov2_light_r50_vd_fpn_dcn_512_3x.yml
    # rebuilt from 2.x modules: ResNet50-vd, DCNv2 in res3-res5 (0.5 stages
    # [3,4,5] == 2.x indices [1,2,3]); head 3x256, E=128, DCN at tower index 2
    # (kernel and cate towers); mask head 128 -> 128 without DCN.
    return _assemble(
        dict(depth=50, variant='d', dcn_v2_stages=[1, 2, 3],
             lr_mult_list=[0.05, 0.05, 0.1, 0.15]),
        dict(seg_feat_channels=256, stacked_convs=3, kernel_out_channels=128,
             dcn_v2_stages=[2], drop_block=True),
        dict(mid_channels=128, out_channels=128, use_dcn_in_tower=False))


FAMILIES = {
    'r50_fpn': _r50_fpn,
    'r50_enhance': _r50_enhance,
    'r101_vd_dcn': _r101_vd_dcn,
    'light_r50_vd_dcn_v05': _light_r50_vd_dcn_v05,
    'light448_r50': _light448_r50,
}


_OFFSET_W_GAIN = 0.05   # conv_offset weight std = gain / sqrt(fan_in)
_OFFSET_B_STD = 0.05    # conv_offset bias std


def _set(param, value):
    value = np.asarray(value, dtype=np.float32).reshape(param.shape)
    param.set_value(value)


def randomize(model, seed, cate_bias=CATE_BIAS):
    """Overwrite every parameter of ``model`` deterministically.

    * BatchNorm: weight U(0.8,1.2), bias N(0,0.05), _mean N(0,0.05),
      _variance U(0.8,1.2).  GroupNorm: weight U(0.8,1.2), bias N(0,0.05).
    * conv weights N(0, sqrt(1/fan_in)) in the backbone, N(0, sqrt(2/fan_in))
      elsewhere; conv biases N(0, 0.01).
    * DCN offset/mask convs (``conv_offset``, zero-initialised by ppdet):
      weight N(0, 0.05/sqrt(fan_in)), bias N(0, 0.05) so that offsets are
      nonzero but well below one pixel and the modulation masks are ~0.5+-eps.
    * ``solov2_head.solo_cate.bias`` (alias ``solov2_head.bbox_head.solo_cate.bias``)
      = ``cate_bias``.
    """
    paddle.seed(seed)
    rng = np.random.RandomState(seed)
    done = set()
    for name, layer in model.named_sublayers(include_self=False):
        own = [p for p in layer.parameters(include_sublayers=False)]
        if not own:
            continue
        in_backbone = name.startswith('backbone.')
        if isinstance(layer, nn.layer.norm._BatchNormBase):
            _set(layer.weight, rng.uniform(0.8, 1.2, layer.weight.shape))
            _set(layer.bias, rng.normal(0.0, 0.05, layer.bias.shape))
            _set(layer._mean, rng.normal(0.0, 0.05, layer._mean.shape))
            _set(layer._variance, rng.uniform(0.8, 1.2, layer._variance.shape))
            params = [layer.weight, layer.bias, layer._mean, layer._variance]
        elif isinstance(layer, nn.GroupNorm):
            _set(layer.weight, rng.uniform(0.8, 1.2, layer.weight.shape))
            _set(layer.bias, rng.normal(0.0, 0.05, layer.bias.shape))
            params = [layer.weight, layer.bias]
        elif isinstance(layer, (nn.Conv2D, paddle.vision.ops.DeformConv2D)):
            w = layer.weight
            fan_in = int(np.prod(w.shape[1:]))
            if name.split('.')[-1] == 'conv_offset':
                _set(w, rng.normal(0.0, _OFFSET_W_GAIN / np.sqrt(fan_in), w.shape))
                bias_std = _OFFSET_B_STD
            else:
                gain = 1.0 if in_backbone else 2.0
                _set(w, rng.normal(0.0, np.sqrt(gain / fan_in), w.shape))
                bias_std = 0.01
            params = [w]
            if layer.bias is not None:
                _set(layer.bias, rng.normal(0.0, bias_std, layer.bias.shape))
                params.append(layer.bias)
        else:
            raise TypeError(f'unhandled parametrised layer {name}: {type(layer)}')
        for p in params:
            done.add(id(p))
        missing = [p.name for p in own if id(p) not in done]
        if missing:
            raise RuntimeError(f'parameters of {name} not randomised: {missing}')
    cate = model.solov2_head.solo_cate.bias
    _set(cate, np.full(cate.shape, cate_bias))
    n_params = {id(p) for p in model.parameters()}
    if not n_params <= done:
        raise RuntimeError('some parameters were not randomised')
    return model


def _calibration_image(seed):
    rng = np.random.RandomState(seed + 7919)
    return rng.standard_normal((1, 3) + CALIB_SIZE).astype(np.float32)


def _head_outputs(model, seed):
    """{'cate': [[1, C, S, S]] x5, 'kernel': [[1, E, S, S]] x5} of one forward on the
    calibration image, with the grids coarsened by ``CALIB_GRID_DIV``."""
    head = model.solov2_head
    grabbed = {'cate': [], 'kernel': []}
    hooks = [
        head.solo_cate.register_forward_post_hook(
            lambda layer, inp, out: grabbed['cate'].append(out.numpy())),
        head.solo_kernel.register_forward_post_hook(
            lambda layer, inp, out: grabbed['kernel'].append(out.numpy())),
    ]
    was_training = model.training
    grids = head.seg_num_grids
    model.eval()
    try:
        # the head's cost is set by the grid sizes, not the image size: run the
        # calibration pass on coarser grids (a bilinear resample of the same
        # features, so the per-channel means barely change) to save time
        head.seg_num_grids = [max(2, -(-g // CALIB_GRID_DIV)) for g in grids]
        with paddle.no_grad():
            feats = model.neck(model.backbone(
                {'image': paddle.to_tensor(_calibration_image(seed))}))
            head(feats)
    finally:
        head.seg_num_grids = grids
        for h in hooks:
            h.remove()
        if was_training:
            model.train()
    return grabbed


def calibrate(model, seed, cate_offset=CATE_OFFSET):
    """Centre the head's output biases on a seeded calibration image.

    With random weights both head outputs carry a large per-channel common mode
    (their inputs are post-ReLU, hence non-negative with nonzero mean):

    * the dynamic kernels share a per-channel offset, so every mask logit
      ``sum_c k_c * mask_feat_c`` is dominated by one seed-dependent constant
      and the masks come out all-ones (or all-empty) for every grid cell;
    * the category logits of a few classes sit far above the rest, so the
      number of candidates above ``score_threshold`` swings by ~10x between
      seeds and a handful of labels take them all.

    So both biases are centred on their mean over all grid cells (all 5 levels, one forward with the
    grids coarsened by ``CALIB_GRID_DIV``), the category ones plus ``cate_offset``; weights are left
    as ``randomize`` made them. A bias is shared by the 5 levels, so a per-level offset of the mask
    logits remains.
    Deterministic for a seed.
    """
    head = model.solov2_head
    grabbed = _head_outputs(model, seed)

    def cell_mean(maps):  # list of [1,C,S,S] -> [C]
        flat = np.concatenate([m[0].reshape(m.shape[1], -1) for m in maps], axis=1)
        return flat.astype(np.float64).mean(axis=1)

    kb = head.solo_kernel.bias
    _set(kb, kb.numpy().astype(np.float64) - cell_mean(grabbed['kernel']))
    cb = head.solo_cate.bias
    _set(cb, cate_offset + cb.numpy().astype(np.float64) - cell_mean(grabbed['cate']))
    return model


def build(family, seed=0, calibrated=True):
    """Build ``family`` with deterministic random weights, in eval mode.

    ``randomize`` then (``calibrated=True``, default) ``calibrate``.  With
    ``calibrated=False`` the category bias is the plain constant ``CATE_BIAS``.
    """
    if family not in FAMILIES:
        raise KeyError(f'unknown family {family!r}; known: {sorted(FAMILIES)}')
    paddle.seed(seed)
    model = FAMILIES[family]()
    randomize(model, seed)
    model.eval()
    if calibrated:
        calibrate(model, seed)
    return model


def save(model, path):
    """Write a PaddleDetection-format ``.pdparams`` (with duplicate alias keys)."""
    paddle.save(model.state_dict(), str(path))


# (old, new, expected number of occurrences) per function
_SEG_SINGLE_FIXES = [
    # fix 1: 0-D im_shape entries
    ("paddle.cast(im_shape[0], 'int32')[0]",
     "paddle.cast(im_shape[0], 'int32').reshape([1])[0]", 1),
    ("paddle.cast(im_shape[1], 'int32')[0]",
     "paddle.cast(im_shape[1], 'int32').reshape([1])[0]", 1),
    # fix 2: zeros(shape=shape(1-D)) -> zeros_like
    ("paddle.zeros(shape=paddle.shape(sum_masks), dtype='float32')",
     "paddle.zeros_like(sum_masks, dtype='float32')", 1),
    # fix 3: float32 vs int32 comparison
    ('sum_masks > strides', "sum_masks > paddle.cast(strides, 'float32')", 1),
    # fix 5: concat of 0-D indices
    ("paddle.cast(paddle.shape(sum_masks)[0] - 1, 'int64')",
     "paddle.cast(paddle.shape(sum_masks)[0] - 1, 'int64').reshape([1])", 1),
    ("paddle.cast(paddle.shape(sum_masks)[0], 'int64')",
     "paddle.cast(paddle.shape(sum_masks)[0], 'int64').reshape([1])", 1),
    ("paddle.cast(paddle.shape(kernel_preds)[0], 'int64')",
     "paddle.cast(paddle.shape(kernel_preds)[0], 'int64').reshape([1])", 1),
]
_NMS_FIXES = [
    # fix 4: python int expand size
    ('n_samples = paddle.shape(cate_labels)', 'n_samples = int(cate_labels.shape[0])', 1),
    # fix 2
    ("paddle.zeros(shape=paddle.shape(cate_scores), dtype='float32')",
     "paddle.zeros_like(cate_scores, dtype='float32')", 1),
    # fix 5
    ("paddle.cast(paddle.shape(cate_scores)[0] - 1, 'int64')",
     "paddle.cast(paddle.shape(cate_scores)[0] - 1, 'int64').reshape([1])", 1),
]

_ORIGINALS = {}


def _rewrite(func, fixes, module):
    src = textwrap.dedent(inspect.getsource(func))
    for old, new, count in fixes:
        found = src.count(old)
        if found != count:
            raise RuntimeError(
                f'ppdet source of {func.__qualname__} changed: expected {count} '
                f'occurrence(s) of {old!r}, found {found}')
        src = src.replace(old, new)
    namespace = {}
    exec(compile(src, f'<patched {func.__module__}.{func.__qualname__}>', 'exec'),
         module.__dict__, namespace)
    patched = namespace[func.__name__]
    patched.__qualname__ = func.__qualname__
    patched._ppdet_ref_patched = True
    return patched


def patch_postprocess():
    """Make ppdet's SOLOv2 eval post-processing run on paddle 3.x (idempotent)."""
    if getattr(SOLOv2Head.get_seg_single, '_ppdet_ref_patched', False) and \
            getattr(MaskMatrixNMS.__call__, '_ppdet_ref_patched', False):
        return
    seg = _ORIGINALS.setdefault('get_seg_single', SOLOv2Head.get_seg_single)
    nms = _ORIGINALS.setdefault('nms_call', MaskMatrixNMS.__call__)
    SOLOv2Head.get_seg_single = _rewrite(seg, _SEG_SINGLE_FIXES, _ppdet_solov2_head)
    MaskMatrixNMS.__call__ = _rewrite(nms, _NMS_FIXES, _ppdet_layers)


def _np(t):
    return np.asarray(t.numpy())


def run(model, image):
    """Run ``model`` (eval mode) on a normalised float32 [1,3,H,W] image.

    Mirrors ``SOLOv2.model_arch`` + ``SOLOv2.get_pred`` (im_shape [[H,W]], scale_factor [[1,1]]).
    Returns numpy arrays: ``cate`` (list of 5 [1,S,S,80]), ``kernel`` (list of
    5 [1,E,S,S]), ``mask_feat`` [1,E,H/4,W/4], ``masks`` [N,H,W] uint8,
    ``labels`` [N] int64, ``scores`` [N] float32 -- the raw ppdet output
    including its fake entries (see ``clean_ppdet_detections``).
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f'expected [1,3,H,W], got {image.shape}')
    h, w = image.shape[2:]
    if h % 32 or w % 32:
        raise ValueError(f'H and W must be multiples of 32, got {h}x{w}')
    patch_postprocess()
    if model.training:
        raise ValueError('model must be in eval mode')
    with paddle.no_grad():
        inputs = {
            'image': paddle.to_tensor(image),
            'im_shape': paddle.to_tensor(np.array([[h, w]], np.float32)),
            'scale_factor': paddle.to_tensor(np.array([[1.0, 1.0]], np.float32)),
        }
        body_feats = model.backbone(inputs)
        body_feats = model.neck(body_feats)
        seg_pred = model.mask_head(body_feats)
        cate_list, kernel_list = model.solov2_head(body_feats)
        out = {
            'cate': [_np(c) for c in cate_list],
            'kernel': [_np(k) for k in kernel_list],
            'mask_feat': _np(seg_pred),
        }
        masks, labels, scores, _ = model.solov2_head.get_prediction(
            cate_list, kernel_list, seg_pred, inputs['im_shape'],
            inputs['scale_factor'])
        out['masks'] = _np(masks).astype(np.uint8)
        out['labels'] = _np(labels).astype(np.int64)
        out['scores'] = _np(scores).astype(np.float32)
    return out


def clean_ppdet_detections(masks, labels, scores, update_threshold=UPDATE_THRESHOLD):
    """Remove the "fake data" entries ppdet adds to SOLOv2 results.

    ppdet pads the data at two places "to prevent empty" outputs:

    * ``SOLOv2Head.get_seg_single`` appends a fake candidate (kernel of ones,
      label 0, category score 0, stride 0) after the thresholded grid cells;
      after the mask-area filter it appends that fake candidate once more with
      score 0.  Mask scoring multiplies, so every fake candidate reaches Matrix
      NMS with score 0 (or NaN when its mask is empty: 0/0 in the mask score).
    * ``MaskMatrixNMS.__call__`` keeps the entries whose decayed score is
      ``>= update_threshold`` and then ALWAYS appends the last entry of its
      score-sorted (top ``pre_nms_top_n``) list.  That appended entry is one
      of: (a) a fake candidate with score 0 (or NaN), (b) a real candidate whose
      decayed score fell below ``update_threshold`` (NMS meant to drop it), or
      (c) only when the pre-NMS list was full, a real candidate that was already
      kept -- i.e. an exact duplicate (same mask, label and score).
      The final top-``post_nms_top_n`` sort may or may not cut it.

    Every genuine detection has a finite score ``>= update_threshold``, so the
    rule is: drop entries whose score is non-finite or ``< update_threshold``
    (cases a, b and ppdet's zero-score padding), then drop entries that are
    exact duplicates (label, score and mask) of an earlier entry (case c).
    Returns (masks, labels, scores) with the order otherwise unchanged.
    """
    masks = np.asarray(masks)
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores).reshape(-1)
    if not (len(masks) == len(labels) == len(scores)):
        raise ValueError('masks/labels/scores length mismatch')
    keep = []
    for i in range(len(scores)):
        s = scores[i]
        if not np.isfinite(s) or s < update_threshold:
            continue
        dup = any(labels[j] == labels[i] and scores[j] == s
                  and np.array_equal(masks[j], masks[i]) for j in keep)
        if not dup:
            keep.append(i)
    keep = np.asarray(keep, dtype=np.int64)
    return masks[keep], labels[keep], scores[keep]
