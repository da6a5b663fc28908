"""Range and type checks of every config value, run whenever a config is built with
overrides or another class list, so a bad value fails at once with a message naming the
knob and what it accepts (not as zero detections or a traceback an hour later)."""
from numbers import Real

LEVELS = 5      # FPN levels: num_grids, scale_ranges and segm_strides have one entry each


def _integer(low):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f'an integer >= {low}'


def _number(low, high=None, open_low=False):
    def ok(v):
        if not isinstance(v, Real) or isinstance(v, bool):
            return False
        return (v > low if open_low else v >= low) and (high is None or v <= high)
    bound = f'> {low}' if open_low else f'>= {low}'
    return ok, f'a number in [{low}, {high}]' if high is not None else f'a number {bound}'


def _choice(*values):
    return (lambda v: v in values), 'one of ' + ', '.join(repr(v) for v in values)


def _sizes(count=None):
    def ok(v):
        return (isinstance(v, tuple) and len(v) >= 1 and (count is None or len(v) == count)
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v))
    return ok, (f'{count} integers >= 1 (one per FPN level)' if count else 'a non-empty tuple of integers >= 1')


def _ranges(v):
    return (isinstance(v, tuple) and len(v) == LEVELS
            and all(isinstance(r, tuple) and len(r) == 2 and 0 <= r[0] < r[1] for r in v))


POSITIVE = _integer(1)
NON_NEGATIVE = _integer(0)
FRACTION = _number(0, 1)

RULES = {
    'depth': _choice(18, 34, 50, 101), 'variant': _choice('b', 'd'),
    'backbone_width': POSITIVE, 'backbone_groups': POSITIVE, 'backbone_base_width': POSITIVE,
    'backbone_dcn': _choice(None, 'v1', 'v2'), 'frozen_stages': _integer(-1),
    'fpn_channels': POSITIVE, 'num_classes': POSITIVE, 'head_convs': POSITIVE, 'head_channels': POSITIVE,
    'kernel_channels': POSITIVE, 'num_grids': _sizes(LEVELS), 'head_dcn': _choice(None, 'v1', 'v2'),
    'mask_feat_channels': POSITIVE, 'scale_ranges': (_ranges, f'{LEVELS} pairs (low, high), 0 <= low < high'),
    'sigma': _number(0, 1, open_low=True), 'segm_strides': _sizes(LEVELS),
    'max_image_pixels': NON_NEGATIVE, 'batch_size': POSITIVE, 'reference_batch': POSITIVE,
    'optimizer': _choice('momentum', 'adamw'), 'base_lr': _number(0, open_low=True), 'momentum': FRACTION,
    'weight_decay': _number(0), 'epochs': POSITIVE, 'lr_schedule': _choice('step', 'cosine'),
    'lr_gamma': FRACTION, 'warmup_iters': NON_NEGATIVE, 'warmup_ratio': FRACTION, 'grad_clip': _number(0),
    'ema_decay': FRACTION, 'ema_ramp': POSITIVE, 'train_shorts': _sizes(), 'train_max': POSITIVE,
    'flip_prob': FRACTION, 'colour_strength': _number(0), 'crop_prob': FRACTION,
    'ins_loss_weight': _number(0), 'focal_alpha': FRACTION, 'focal_gamma': _number(0),
    'num_workers': NON_NEGATIVE, 'seed': NON_NEGATIVE, 'test_short': POSITIVE, 'test_max': POSITIVE,
    'score_threshold': FRACTION, 'mask_threshold': FRACTION, 'nms_pre': POSITIVE,
    'update_threshold': FRACTION, 'max_per_image': POSITIVE, 'nms_kernel': _choice('gaussian', 'linear'),
    'nms_sigma': _number(0, open_low=True),
}


def accepted(name: str) -> str:
    """What ``name`` accepts, in words ('' when the knob has no rule)."""
    return RULES[name][1] if name in RULES else ''


def check_config(cfg) -> None:
    """ValueError naming the first knob of ``cfg`` whose value is out of range or of the
    wrong type, and what it accepts; also ``class_names`` must hold ``num_classes`` names."""
    settings = cfg.settings()
    for name, (ok, text) in RULES.items():
        if name in settings and not ok(settings[name]):
            raise ValueError(f'bad value {name}={settings[name]!r}: {name} takes {text} '
                             f'— fix it in --opt or in the config')
    names = settings.get('class_names', ())
    if len(names) != settings.get('num_classes', len(names)):
        raise ValueError(f'num_classes={settings["num_classes"]} but class_names holds {len(names)} names '
                         '— give as many class names as classes')
