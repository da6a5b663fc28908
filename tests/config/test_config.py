"""Config numbering, variant deltas, overrides, class lists and the settings table."""
import subprocess
import sys

import pytest

from solov2 import config
from solov2.config import (
    COCO_CLASSES,
    CONFIGS,
    describe_configs,
    format_settings,
    get_config,
    with_classes,
    with_overrides,
)
from solov2.config.base import FULL_SCALE_RANGES, SOLOv2Base
from solov2.config.checks import check_config
from solov2.config.setting import Setting, declared_settings
from solov2.config.sidecar import MODEL_SETTINGS, TEST_SETTINGS
from solov2.config.variants import (
    R101FPN,
    Light448R18,
    Light448R34,
    Light448R50,
    Light512DCNR50,
    Light512R50vdDCN,
    R50vdDCNEnhance,
    R101vdDCN,
)
from solov2.core.errors import InputError
from tests.helpers import REPO_DIR

EXPECTED_NUMBERING = {
    0: SOLOv2Base,
    1: Light448R50,
    2: Light512R50vdDCN,
    3: R50vdDCNEnhance,
    4: R101vdDCN,
    5: Light448R18,
    6: Light448R34,
    7: Light512DCNR50,
    8: R101FPN,
}


# settings that shape the network or its inference (training/data knobs are checked
# only where a variant is a pure backbone swap): the recorded ones and those of the targets
SHAPING = set(MODEL_SETTINGS + TEST_SETTINGS) | {
    'description', 'frozen_stages', 'freeze_norm', 'drop_block', 'scale_ranges', 'sigma'}


def _delta(a, b) -> set:
    """Names whose value differs between two configs' settings."""
    sa, sb = a.settings(), b.settings()
    assert list(sa) == list(sb)
    return {name for name in sa if sa[name] != sb[name]}


# ---- numbering and descriptions --------------------------------------------------------------

def test_numbering_is_stable():
    # 0..8 never move; later configs may only be appended
    assert {n: CONFIGS[n] for n in EXPECTED_NUMBERING} == EXPECTED_NUMBERING
    assert list(CONFIGS) == list(range(len(CONFIGS)))
    assert len(set(CONFIGS.values())) == len(CONFIGS)
    for number, cls in EXPECTED_NUMBERING.items():
        assert get_config(number) is cls


@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_each_config_has_its_own_one_line_description(number):
    cls = CONFIGS[number]
    assert 'description' in vars(cls)          # not inherited from the parent
    text = cls.description
    assert isinstance(text, str) and text.strip() == text and text
    assert '\n' not in text
    assert cls.__doc__ and cls.__doc__.strip()


def test_descriptions_are_unique_and_listed():
    descriptions = [cls.description for cls in CONFIGS.values()]
    assert len(set(descriptions)) == len(descriptions)
    table = describe_configs().splitlines()
    assert len(table) == len(CONFIGS)
    for line, (number, cls) in zip(table, CONFIGS.items()):
        assert line.strip().startswith(f'{number}: {cls.__name__}')
        assert cls.description in line


# ---- variants override only what differs ---------------------------------------------------------

@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_variants_override_only_what_differs(number):
    cls = CONFIGS[number]
    base_names = list(SOLOv2Base.settings())
    assert list(cls.settings()) == base_names        # no variant invents a setting
    if cls is SOLOv2Base:
        return
    parent = cls.__bases__[0]
    for name, value in vars(cls).items():
        if name.startswith('_'):
            continue
        assert name in base_names, name
        assert getattr(parent, name) != value, f'{cls.__name__}.{name} repeats its parent value'


@pytest.mark.parametrize('a, b, expected', [
    (5, 1, {'depth', 'description'}),
    (6, 1, {'depth', 'description'}),
    (8, 0, {'depth', 'description'}),
    (1, 0, {'description', 'head_convs', 'head_channels', 'kernel_channels', 'scale_ranges',
            'test_short', 'test_max'}),
    (3, 2, {'description', 'dcn_bias', 'mask_feat_dcn', 'drop_block', 'scale_ranges'}),
    (7, 1, {'description', 'backbone_dcn', 'backbone_dcn_stages', 'head_convs', 'head_dcn',
            'head_dcn_indices', 'scale_ranges', 'test_short', 'test_max'}),
    (2, 1, {'description', 'variant', 'backbone_dcn', 'backbone_dcn_stages', 'frozen_stages',
            'head_convs', 'head_dcn', 'head_dcn_indices', 'scale_ranges', 'test_short', 'test_max'}),
    (4, 0, {'description', 'depth', 'variant', 'backbone_dcn', 'backbone_dcn_stages', 'head_dcn',
            'head_dcn_indices', 'dcn_bias', 'mask_feat_dcn'}),
])
def test_config_deltas(a, b, expected):
    delta = _delta(CONFIGS[a], CONFIGS[b])
    if expected == {'depth', 'description'}:
        assert delta == expected                  # pure backbone swaps: nothing else at all
    else:
        assert delta & SHAPING == expected


def test_some_values():
    assert CONFIGS[5].depth == 18 and CONFIGS[6].depth == 34 and CONFIGS[8].depth == 101
    assert CONFIGS[7].backbone_dcn == 'v1' and CONFIGS[7].head_dcn == 'v1'
    assert CONFIGS[2].backbone_dcn == 'v2' and not CONFIGS[2].dcn_bias
    assert CONFIGS[3].dcn_bias and CONFIGS[3].mask_feat_dcn and CONFIGS[3].drop_block
    assert CONFIGS[3].scale_ranges == FULL_SCALE_RANGES
    assert CONFIGS[4].head_dcn_indices == (0, 1, 2, 3)
    for number, cls in CONFIGS.items():
        assert cls.num_classes == len(cls.class_names)
        if number in EXPECTED_NUMBERING:            # the COCO models
            assert tuple(cls.class_names) == COCO_CLASSES
        assert len(cls.num_grids) == len(cls.segm_strides) == len(cls.scale_ranges) == 5


def test_settings_in_definition_order():
    names = list(SOLOv2Base.settings())
    assert names[:3] == ['description', 'depth', 'variant']
    assert 'settings' not in names
    assert Light448R18.settings()['head_convs'] == 2      # inherited through Light448R50


# ---- with_overrides ---------------------------------------------------------------------------

def test_with_overrides_coerces_types():
    base = CONFIGS[0]
    cfg = with_overrides(base, ['test_short=512', 'nms_sigma=2', 'num_grids=[1,2,3,4,5]',
                                'score_threshold=0.25', 'freeze_norm=False', 'head_dcn="v2"'])
    assert cfg.test_short == 512 and type(cfg.test_short) is int
    assert cfg.nms_sigma == 2.0 and type(cfg.nms_sigma) is float
    assert cfg.num_grids == (1, 2, 3, 4, 5) and type(cfg.num_grids) is tuple
    assert cfg.score_threshold == 0.25
    assert cfg.freeze_norm is False
    assert cfg.head_dcn == 'v2'
    assert issubclass(cfg, base) and cfg.__name__ == base.__name__
    # the registered config is untouched
    assert base.test_short == 800 and base.num_grids == (40, 36, 24, 16, 12)
    assert CONFIGS[0] is base


def test_with_overrides_bare_words_and_no_change():
    cfg = with_overrides(CONFIGS[0], ['nms_kernel=linear'])
    assert cfg.nms_kernel == 'linear'
    assert with_overrides(CONFIGS[1], []) is CONFIGS[1]


@pytest.mark.parametrize('assignment, key', [
    ('bogus_setting=1', 'bogus_setting'),
    ('test_shortt=512', 'test_shortt'),
    ('test_short', 'test_short'),             # no '='
])
def test_with_overrides_rejects_unknown_names(assignment, key):
    with pytest.raises(ValueError) as err:
        with_overrides(CONFIGS[0], [assignment])
    assert key in str(err.value)


@pytest.mark.parametrize('assignment, key', [
    ('test_short=abc', 'test_short'),
    ('test_short=[1, 2]', 'test_short'),
    ('num_grids=5', 'num_grids'),
    ('nms_sigma=fast', 'nms_sigma'),
    ('freeze_norm=1', 'freeze_norm'),
    ('nms_kernel=3', 'nms_kernel'),
])
def test_with_overrides_rejects_wrong_types(assignment, key):
    with pytest.raises(ValueError) as err:
        with_overrides(CONFIGS[0], [assignment])
    assert key in str(err.value)


# ---- with_classes -----------------------------------------------------------------------------

@pytest.mark.parametrize('assignment, accepted', [
    ('test_short=0', 'an integer >= 1'),
    ('test_max=0', 'an integer >= 1'),
    ('nms_pre=0', 'an integer >= 1'),
    ('max_per_image=-1', 'an integer >= 1'),
    ('score_threshold=2', 'a number in [0, 1]'),
    ('mask_threshold=-0.1', 'a number in [0, 1]'),
    ('num_grids=(1,)', '5 integers >= 1'),
    ('num_grids=(40, 36, 24, 16, 0)', '5 integers >= 1'),
    ('nms_pre="many"', 'an integer >= 1'),
    ('score_threshold=high', 'a number in [0, 1]'),
    ('optimizer=sgd', "'momentum', 'adamw'"),
    ('num_classes=3', 'class_names holds 4 names'),
    ('max_image_pixels=-1', 'an integer >= 0'),
])
def test_out_of_range_and_wrong_type_values_name_the_knob_and_range(assignment, accepted):
    with pytest.raises(ValueError) as err:
        with_overrides(CONFIGS[9], [assignment])
    message = str(err.value)
    assert assignment.split('=')[0] in message and accepted in message and '\n' not in message


def test_with_classes_refuses_a_class_list_of_another_length():
    with pytest.raises(ValueError, match='num_classes=3 but class_names holds 2 names'):
        with_classes(CONFIGS[0], 3, ['cat', 'dog'])


def test_with_classes_numbered_names():
    cfg = with_classes(CONFIGS[1], 3)
    assert cfg.num_classes == 3
    assert tuple(cfg.class_names) == ('class0', 'class1', 'class2')
    assert issubclass(cfg, CONFIGS[1])
    assert CONFIGS[1].num_classes == 80 and CONFIGS[1].class_names == COCO_CLASSES


def test_with_classes_explicit_names_and_same_class_when_unchanged():
    assert with_classes(CONFIGS[0], 80) is CONFIGS[0]
    assert with_classes(CONFIGS[0], 80, list(COCO_CLASSES)) is CONFIGS[0]
    named = with_classes(CONFIGS[0], 2, ['cat', 'dog'])
    assert named.num_classes == 2 and tuple(named.class_names) == ('cat', 'dog')
    assert with_classes(named, 2, ('cat', 'dog')) is named
    numbered = with_classes(CONFIGS[0], 5)
    assert with_classes(numbered, 5) is numbered
    # back to COCO from a custom list
    back = with_classes(named, 80)
    assert back.num_classes == 80 and tuple(back.class_names) == COCO_CLASSES


# ---- get_config / format_settings ---------------------------------------------------------------

def test_get_config_unknown_number_lists_configs():
    with pytest.raises(InputError) as err:
        get_config(99)
    message = err.value.args[0]
    assert '99' in message
    for number, cls in CONFIGS.items():
        assert f'{number}: {cls.__name__}' in message
    assert '\n' not in message


def _table(text: str) -> dict:
    """--verbose table -> {name: (value, doc)}: each line is ``name  value  # doc``."""
    rows = {}
    for line in text.splitlines():
        name, rest = line.split(None, 1)
        value, doc = rest.split('  # ', 1)
        rows[name] = (value.strip(), doc)
    return rows


@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_format_settings_contains_every_setting(number):
    cls = CONFIGS[number]
    text = format_settings(cls)
    names = [line.split()[0] for line in text.splitlines()]
    assert set(names) == set(cls.settings())
    for name in cls.settings():
        assert name in text
    assert f'{len(cls.class_names)} names' in text
    assert repr(cls.test_short) in text


@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_format_settings_shows_each_value_with_its_doc(number):
    cls = CONFIGS[number]
    rows = _table(format_settings(cls))
    assert list(rows) == [name for name in declared_settings(cls) if name != 'class_names'] + ['class_names']
    for name, setting in declared_settings(cls).items():
        value = f'{len(cls.class_names)} names' if name == 'class_names' else repr(getattr(cls, name))
        assert rows[name] == (value, setting.doc)


def test_format_settings_shows_overrides():
    text = format_settings(with_overrides(CONFIGS[0], ['test_short=96', 'num_grids=(4, 2, 2, 2, 2)']))
    lines = {name: value for name, (value, _) in _table(text).items()}
    assert lines['test_short'].strip() == '96'
    assert lines['num_grids'].strip() == '(4, 2, 2, 2, 2)'


# ---- each setting is declared once, with its doc --------------------------------------------------

def test_every_setting_is_declared_with_a_one_line_doc():
    declared = declared_settings(SOLOv2Base)
    assert list(declared) == list(SOLOv2Base.settings())
    assert len(declared) >= 68
    for name, setting in declared.items():
        assert setting.name == name and setting.default == getattr(SOLOv2Base, name)
        assert setting.doc and setting.doc == setting.doc.strip() and '\n' not in setting.doc, name
        assert len(setting.doc) <= 80, name
        assert setting.group in (None, 'model', 'test'), name
    assert len({setting.doc for setting in declared.values()}) == len(declared)     # no copy-paste docs


@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_every_config_passes_the_declared_rules(number):
    check_config(CONFIGS[number])
    for name, setting in declared_settings(CONFIGS[number]).items():
        assert setting.rule is None or setting.rule.ok(getattr(CONFIGS[number], name)), name


@pytest.mark.parametrize('doc, group', [('', None), ('two\nlines', None), (' padded', None), ('fine', 'train')])
def test_a_setting_without_a_one_line_doc_or_with_an_unknown_group_is_refused(doc, group):
    with pytest.raises(InputError):
        Setting(1, doc, group=group)


def test_variant_values_stay_plain():
    assert vars(SOLOv2Base)['depth'].default == 50 and SOLOv2Base.depth == 50
    assert vars(R101FPN)['depth'] == 101 and R101FPN.depth == 101
    assert SOLOv2Base().depth == 50 and R101FPN().depth == 101


ADDED_KNOB = """
from solov2.config.base import SOLOv2Base
from solov2.config.checks import POSITIVE
from solov2.config.setting import Setting
knob = Setting(3, 'a knob declared by the test', group='model', rule=POSITIVE)
knob.__set_name__(SOLOv2Base, 'extra_knob')     # what a line in the class body does
SOLOv2Base.extra_knob = knob
from solov2.config import CONFIGS, format_settings, with_overrides
from solov2.config.sidecar import MODEL_SETTINGS, apply_sidecar, recorded_settings
assert CONFIGS[9].settings()['extra_knob'] == 3 and 'extra_knob' in MODEL_SETTINGS
cfg = with_overrides(CONFIGS[9], ['extra_knob=5'])
assert recorded_settings(cfg, 9) == {'extra_knob': 5}
meta = {'config': 9, 'num_classes': 4, 'class_names': list(CONFIGS[9].class_names), 'overrides': {'extra_knob': 5}}
assert apply_sidecar(CONFIGS[9], meta).extra_knob == 5
print(format_settings(cfg))
try:
    with_overrides(CONFIGS[9], ['extra_knob=0'])
except ValueError as exc:
    print(exc)
"""


def test_a_knob_declared_once_reaches_checks_sidecar_and_table():
    """One ``Setting`` line in config/base.py is all a new knob needs."""
    done = subprocess.run([sys.executable, '-c', ADDED_KNOB], capture_output=True, text=True, cwd=REPO_DIR,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    *table, error = done.stdout.strip().splitlines()
    assert _table('\n'.join(table))['extra_knob'] == ('5', 'a knob declared by the test')
    assert error.startswith('bad value extra_knob=0: extra_knob takes an integer >= 1')
    assert 'extra_knob' not in SOLOv2Base.settings()      # the declaration stayed in the subprocess


def test_module_exports():
    assert config.COCO_CLASSES is COCO_CLASSES and len(COCO_CLASSES) == 80


@pytest.mark.parametrize('assignment', ['backbone_dcn=5', 'test_short=512.7', 'test_short=True',
                                        'flip_prob=yes'])
def test_overrides_of_the_wrong_type_are_refused(assignment):
    with pytest.raises(ValueError, match=assignment.split('=')[0]):
        with_overrides(CONFIGS[0], [assignment])


def test_dcn_can_be_switched_off_and_on():
    assert with_overrides(CONFIGS[7], ['head_dcn=None']).head_dcn is None
    assert with_overrides(CONFIGS[0], ["backbone_dcn='v2'"]).backbone_dcn == 'v2'
