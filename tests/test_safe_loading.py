"""No checkpoint runs code, converters never destroy their source, and a checkpoint
carries what rebuilds it (issue 17, parts 1, 2 and 5).

* Malicious pickles (``os.system`` / ``builtins.exec`` in ``__reduce__``, alone or nested
  inside a dict of real weights) are fed to every entry point as real commands; the
  marker file they would create must never appear, and each command ends with exit code
  2 and one ``error:`` line naming the file and the refused global.
* Real Paddle files still load: ``tests/fixtures/paddle26/`` holds small files written
  by ``paddle.save`` under Paddle 2.6.2 with numpy 1.26.4 (pickle protocols 2 and 4;
  numpy 1.x names its reconstructor ``numpy.core.multiarray``): a Linear's state dict,
  a dict and an OrderedDict of arrays, tensors nested in a dict (the ``(name, array)``
  tuple form), scalars beside arrays, and an AdamW state after one step, with weight
  ``arange(6).reshape(2, 3)``, bias ``[1, 2, 3]`` (Linear) and ``b = [7, 8, 9]``.
  The installed Paddle (3.x, numpy 2.x: ``numpy._core``) writes the same forms here.
"""
import builtins
import json
import os
import pickle
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import paddle
import pytest

from solov2.config import CONFIGS, with_classes, with_overrides
from solov2.config.setting import declared_settings
from solov2.config.sidecar import MODEL_SETTINGS, TEST_SETTINGS, read_sidecar, resolve_config, sidecar_path
from solov2.convert import families
from solov2.convert.common import ConversionError, Converter
from solov2.model.build import build_model
from solov2.model.checkpoint import CheckpointError, load_paddle_params, read_paddle_file, save_checkpoint
from solov2.model.inference.backend import BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.exported_folder import config_from_infer_cfg
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.postprocess import InferenceParams
from solov2.model.training.state import find_checkpoint, read_state, restore_training_state, save_training_state
from solov2.tools.convert import run_family
from tests.helpers import FIXTURES_DIR, REPO_DIR

PADDLE26 = FIXTURES_DIR / 'paddle26'
SHIPPED = REPO_DIR / 'weights' / 'shapes_r18.pdparams'
W = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.array([7, 8, 9], np.int64)
REFUSED = r'refused to load: it asks for ((posix|os|nt)\.system|(builtins|__builtin__)\.exec)'


# ---- malicious pickles ------------------------------------------------------------------------

class _System:
    """Pickles as ``os.system(command)``."""

    def __init__(self, marker: Path):
        self.command = f'touch {marker}'

    def __reduce__(self):
        return os.system, (self.command,)


class _Exec:
    """Pickles as ``builtins.exec(code)``."""

    def __init__(self, marker: Path):
        self.code = f'open({str(marker)!r}, "w").close()'

    def __reduce__(self):
        return builtins.exec, (self.code,)


PAYLOADS = {'system': _System, 'exec': _Exec}


def evil_object(marker: Path, kind: str = 'system', weights=None):
    """The bare payload, or real ``weights`` with the payload nested two levels deep."""
    payload = PAYLOADS[kind](marker)
    return payload if weights is None else {**weights, 'meta': {'notes': [1, payload]}}


def write_evil(path: Path, marker: Path, kind: str = 'system', weights=None, protocol: int = 4) -> Path:
    with open(path, 'wb') as f:
        pickle.dump(evil_object(marker, kind, weights), f, protocol=protocol)
    return path


@pytest.mark.parametrize('kind', sorted(PAYLOADS))
def test_the_payloads_do_run_under_plain_pickle(tmp_path, kind):
    """The attack is real: plain ``pickle.load`` of these files creates the marker."""
    marker = tmp_path / 'MARKER'
    path = write_evil(tmp_path / 'x.pdparams', marker, kind, weights={'w': W})
    with open(path, 'rb') as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize('protocol', [0, 2, 4])
@pytest.mark.parametrize('kind', sorted(PAYLOADS))
@pytest.mark.parametrize('nested', [False, True], ids=['bare', 'with-weights'])
def test_malicious_pickle_is_refused_by_the_loader(tmp_path, protocol, kind, nested):
    marker = tmp_path / 'MARKER'
    path = write_evil(tmp_path / 'x.pdparams', marker, kind, {'w': W} if nested else None, protocol)
    with pytest.raises(CheckpointError, match=f'^{re.escape(str(path))}: {REFUSED} ') as info:
        load_paddle_params(str(path))
    assert '\n' not in str(info.value) and 'was it made by' in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize('raw, refused', [
    (b"(S'touch MARKER'\nios\nsystem\n.", 'os.system'),                        # INST opcode
    (b"csubprocess\ncall\n(S'true'\ntR.", 'subprocess.call'),                   # GLOBAL opcode
    (b"cnumpy\nload\n(S'x.npy'\ntR.", 'numpy.load'),                            # numpy, not allowed
    (b"cbuiltins\ngetattr\n(cbuiltins\ndict\nS'get'\ntR.", 'builtins.getattr'),
])
def test_hand_written_globals_are_refused(tmp_path, raw, refused):
    path = tmp_path / 'x.pdparams'
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match=f'it asks for {refused} '):
        read_paddle_file(str(path))


@pytest.mark.parametrize('obj, why', [
    ((eval, ('__import__("os").system("true")', {})), 'refusing eval'),   # only eval('data', {'data': array})
    ((bytearray, (10 ** 12,)), r'refusing bytearray\(1000000000000\)'),   # a size, not data
    (np.array([1, 'a'], dtype=object), 'holds Python objects'),
])
def test_allowed_names_refuse_anything_but_plain_data(tmp_path, obj, why):
    class _Reduce:
        def __reduce__(self):
            return obj
    path = tmp_path / 'x.pdparams'
    with open(path, 'wb') as f:
        pickle.dump(_Reduce() if isinstance(obj, tuple) else obj, f, protocol=2)
    with pytest.raises(CheckpointError, match=why):
        read_paddle_file(str(path))


def test_not_a_pickle_is_one_clear_line(tmp_path):
    path = tmp_path / 'x.pdparams'
    path.write_bytes(b'\x00garbage' * 10)
    with pytest.raises(CheckpointError, match=f'^{re.escape(str(path))} is not a Paddle .pdparams file'):
        load_paddle_params(str(path))


# ---- real files still load ------------------------------------------------------------------

def test_paddle26_numpy1_files_load():
    linear = load_paddle_params(str(PADDLE26 / 'state_dict_p4.pdparams'))
    assert set(linear) == {'weight', 'bias'}      # Paddle's StructuredToParameterName@@ table dropped
    np.testing.assert_array_equal(linear['weight'], W)
    np.testing.assert_array_equal(linear['bias'], [1, 2, 3])
    for name in ('arrays_p2.pdparams', 'ordered_p2.pdparams'):
        arrays = load_paddle_params(str(PADDLE26 / name))
        assert list(arrays) == ['w', 'b'] and arrays['w'].dtype == np.float32 and arrays['b'].dtype == np.int64
        np.testing.assert_array_equal(arrays['w'], W)
        np.testing.assert_array_equal(arrays['b'], B)
    nested = read_paddle_file(str(PADDLE26 / 'nested_p4.pdparams'))
    assert nested['n'] == 3 and nested['more']['b'][0] == 'generated_tensor_1'
    np.testing.assert_array_equal(load_paddle_params(str(PADDLE26 / 'nested_p4.pdparams'))['w'], W)
    scalars = read_paddle_file(str(PADDLE26 / 'scalars_p4.pdparams'))
    assert scalars['epoch'] == 3 and scalars['lr'] == np.float32(0.5) and scalars['name'] == 'x'
    moments = load_paddle_params(str(PADDLE26 / 'optimizer_p4.pdopt'))
    assert len(moments) == 8 and all(v.dtype == np.float32 for v in moments.values())
    np.testing.assert_allclose(moments['linear_0.w_0_moment1_0'], np.full((2, 3), 0.1), rtol=1e-5)


@pytest.mark.parametrize('protocol', [2, 4])
def test_installed_paddle_saves_load(tmp_path, protocol):
    linear = paddle.nn.Linear(2, 3)
    cases = {'arrays': {'w': W, 'b': B}, 'tensors': {'w': paddle.to_tensor(W), 'b': paddle.to_tensor(B)},
             'nested': {'w': paddle.to_tensor(W), 'more': {'b': paddle.to_tensor(B)}, 'n': 3},
             'state_dict': linear.state_dict()}
    for name, obj in cases.items():
        path = str(tmp_path / f'{name}.pdparams')
        paddle.save(obj, path, protocol=protocol)
        params = load_paddle_params(path)
        if name == 'state_dict':
            assert set(params) == {'weight', 'bias'}
            np.testing.assert_array_equal(params['weight'], linear.weight.numpy())
            continue
        np.testing.assert_array_equal(params['w'], W)
        if name != 'nested':
            np.testing.assert_array_equal(params['b'], B)


def _stepped(model):
    """An AdamW on ``model`` after one step (so it holds moments)."""
    optimizer = paddle.optimizer.AdamW(parameters=model.parameters())
    paddle.add_n([p.sum() for p in model.parameters()]).backward()
    optimizer.step()
    return optimizer


class _DenseTensor:
    """Pickles as Paddle's ``_pickle_save`` writes a DenseTensor: eval('data', {'data': array})."""

    def __reduce__(self):
        return eval, ('data', {'data': W})


@pytest.mark.parametrize('protocol', [2, 4])
def test_dense_tensor_form_loads_without_evaluating(tmp_path, protocol):
    path = tmp_path / 'dense.pdparams'
    with open(path, 'wb') as f:
        pickle.dump({'w': _DenseTensor()}, f, protocol=protocol)
    np.testing.assert_array_equal(load_paddle_params(str(path))['w'], W)


def test_our_saves_load_with_plain_paddle(tmp_path):
    paddle.seed(0)
    model = build_model(CONFIGS[9])
    optimizer = _stepped(model)
    folder = save_training_state(tmp_path, 'last', model, optimizer, {'iteration': 1}, 9, CONFIGS[9])
    for name in ('model.pdparams', 'optimizer.pdopt'):
        ours, theirs = load_paddle_params(str(folder / name)), paddle.load(str(folder / name), return_numpy=True)
        assert ours.keys() == theirs.keys() and ours
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    fresh = build_model(CONFIGS[9])
    found = find_checkpoint(str(folder))
    restore_training_state(found, read_state(found), fresh, paddle.optimizer.AdamW(parameters=fresh.parameters()))
    assert all(np.array_equal(v.numpy(), model.state_dict()[k].numpy()) for k, v in fresh.state_dict().items())


# ---- every entry point, as a real command -----------------------------------------------------

def _listing(folder: Path) -> dict:
    """{relative path: bytes (None for a folder)} of everything under ``folder``."""
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob('*'))}


def _subprocess_env() -> dict:
    """PYTHONPATH to the checkout; Paddle's import-time 'No ccache found' warning silenced
    (as pytest.ini does in-process) so stderr holds only what the command says."""
    return {**os.environ, 'PYTHONPATH': str(REPO_DIR), 'PYTHONWARNINGS': 'ignore:No ccache found:UserWarning'}


def _training_checkpoint(folder: Path, evil_name: str, marker: Path) -> Path:
    """A real training checkpoint of config 9 with ``evil_name`` replaced by a payload
    carrying the real arrays."""
    paddle.seed(0)
    model = build_model(CONFIGS[9])
    optimizer = _stepped(model)
    ckpt = save_training_state(folder, 'last', model, optimizer, {'iteration': 1}, 9, CONFIGS[9])
    write_evil(ckpt / evil_name, marker, 'exec', load_paddle_params(str(ckpt / evil_name)))
    return ckpt


def _attack_commands(root: Path, marker: Path) -> dict:
    """{name: (argv, the malicious file it is handed)} for every entry point."""
    torch = pytest.importorskip('torch', reason='reference test: needs PyTorch (requirements-test.txt)')
    shapes = root / 'shapes'
    subprocess.run([sys.executable, str(REPO_DIR / 'tools/make_shapes_dataset.py'), '--out', str(shapes),
                    '--train', '2', '--val', '1', '--size', '64', '--seed', '1'], check=True, capture_output=True)
    shipped = load_paddle_params(str(SHIPPED))
    weights = write_evil(root / 'weights_plus_payload.pdparams', marker, 'exec', shipped)
    bare = write_evil(root / 'payload.pdparams', marker, 'system', protocol=2)
    pth_zip, pth_legacy = root / 'payload.pth', root / 'payload_legacy.pth'
    for path, zipped in ((pth_zip, True), (pth_legacy, False)):
        torch.save({'state_dict': {'conv1.weight': torch.ones(2)}, 'meta': {'x': _System(marker)}}, path,
                   _use_new_zipfile_serialization=zipped)
    ckpt_model = _training_checkpoint(root / 'run_model', 'model.pdparams', marker)
    ckpt_opt = _training_checkpoint(root / 'run_opt', 'optimizer.pdopt', marker)
    py, out = sys.executable, root / 'out'
    train = [py, str(REPO_DIR / 'train.py'), '--config', '9']
    data = [f'dataset_dir={shapes}', 'num_workers=0', 'batch_size=1']
    return {
        'ppdet2paddle': ([py, str(REPO_DIR / 'convert/ppdet2paddle.py'), str(weights), str(out / 'a.pdparams')],
                         weights),
        'ppdet_static2paddle': ([py, str(REPO_DIR / 'convert/ppdet_static2paddle.py'), str(bare),
                                 str(out / 'b.pdparams')], bare),
        'paddleclas2paddle': ([py, str(REPO_DIR / 'convert/paddleclas2paddle.py'), str(weights),
                               str(out / 'c.pdparams')], weights),
        'solo2paddle': ([py, str(REPO_DIR / 'convert/solo2paddle.py'), str(pth_zip), str(out / 'd.pdparams')],
                        pth_zip),
        'mmdet2paddle': ([py, str(REPO_DIR / 'convert/mmdet2paddle.py'), str(pth_legacy), str(out / 'f.pdparams')],
                         pth_legacy),
        'paddle2ppdet': ([py, str(REPO_DIR / 'convert/paddle2ppdet.py'), str(weights), str(out / 'g.pdparams'),
                          '--config', '0'], weights),
        'torchvision2paddle': ([py, str(REPO_DIR / 'convert/torchvision2paddle.py'), str(pth_legacy),
                                str(out / 'e.pdparams')], pth_legacy),
        'demo': ([py, str(REPO_DIR / 'demo.py'), '--config', '9', '--weights', str(weights), '--input',
                  str(REPO_DIR / 'images' / 'shapes_000023.jpg'), '--output', str(out / 'demo')], weights),
        'eval': ([py, str(REPO_DIR / 'eval.py'), '--config', '9', '--weights', str(bare), '--ann',
                  str(shapes / 'annotations' / 'instances_val.json'), '--images', str(shapes / 'val')], bare),
        'export_model': ([py, str(REPO_DIR / 'tools/export_model.py'), '--config', '9', '--weights', str(weights),
                          '--output', str(out / 'export')], weights),
        'train_resume_model': ([*train, '--output', str(out / 'r1'), '--resume', str(ckpt_model), '--opt', *data],
                               ckpt_model / 'model.pdparams'),
        'train_resume_optimizer': ([*train, '--output', str(out / 'r2'), '--resume', str(ckpt_opt), '--opt', *data],
                                   ckpt_opt / 'optimizer.pdopt'),
        'train_pretrained': ([*train, '--output', str(out / 'r3'), '--opt', f'pretrained={weights}', *data],
                             weights),
    }


ENTRY_POINTS = ('ppdet2paddle', 'ppdet_static2paddle', 'paddleclas2paddle', 'solo2paddle', 'torchvision2paddle',
                'mmdet2paddle', 'paddle2ppdet',
                'demo', 'eval', 'export_model', 'train_resume_model', 'train_resume_optimizer', 'train_pretrained')


@pytest.fixture(scope='module')
def attacks(tmp_path_factory):
    """Every entry point run on its malicious file, three commands at a time:
    {name: (CompletedProcess, malicious file)} and the marker the payloads would create."""
    root = tmp_path_factory.mktemp('attack')
    marker = root / 'MARKER'
    commands = _attack_commands(root, marker)
    assert set(commands) == set(ENTRY_POINTS)
    inputs = _listing(root)

    def run(name):
        argv, _ = commands[name]
        try:
            return subprocess.run(argv, cwd=root, env=_subprocess_env(), capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:   # it went on past loading: a failure of its own test
            return subprocess.CompletedProcess(argv, -1, '', 'still running after 90 s')
    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(ENTRY_POINTS, pool.map(run, ENTRY_POINTS)))
    assert _listing(root) == inputs     # no input modified, nothing written (no output folder either)
    return {name: (results[name], commands[name][1]) for name in ENTRY_POINTS}, marker


@pytest.mark.reference   # torch writes the malicious .pth files
@pytest.mark.parametrize('name', ENTRY_POINTS)
def test_no_entry_point_runs_a_checkpoint(attacks, name):
    results, marker = attacks
    done, evil = results[name]
    assert not marker.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), done.stderr[-3000:]
    assert f'{evil}: refused to load: it asks for ' in lines[0], lines[0]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])


# ---- converters never destroy their source and leave nothing behind ------------------------

@pytest.fixture(scope='module')
def shapes_state():
    paddle.seed(1)
    return {k: v.numpy() for k, v in build_model(CONFIGS[9]).state_dict().items()}


IDENTITY = Converter(load_paddle_params, lambda key, keys, cfg: key, (9,), lambda source: 4)


def _identity_convert(argv):
    """A converter command with a rename table that maps config 9 onto itself."""
    with mock.patch.dict(families.CONVERTERS, {'identity': IDENTITY}):
        return run_family('identity', [str(a) for a in argv])


@pytest.fixture
def source(tmp_path, shapes_state):
    path = tmp_path / 'src.pdparams'
    paddle.save(shapes_state, str(path))
    (tmp_path / 'keep.txt').write_text('user file')
    return path


def test_converter_writes_a_checkpoint_and_its_sidecar(tmp_path, source, shapes_state):
    assert _identity_convert([source, tmp_path / 'out.pdparams']) == 0
    out = load_paddle_params(str(tmp_path / 'out.pdparams'))
    assert all(np.array_equal(out[k], shapes_state[k]) for k in shapes_state)
    assert read_sidecar(str(tmp_path / 'out.pdparams'))['overrides'] == {}
    assert not [p for p in tmp_path.iterdir() if p.suffix == '.tmp']


@pytest.mark.parametrize('target, why', [
    ('src.pdparams', 'is the checkpoint being converted'),
    ('sub/../src.pdparams', 'is the checkpoint being converted'),
    ('link.pdparams', 'is the checkpoint being converted'),        # a symlink to the source
    ('hard.pdparams', 'is the checkpoint being converted'),        # a hard link to the source
    ('src.json', 'a name other than the sidecar'),
    ('folder', 'is a folder'),
    ('clash.pdparams', 'is a folder'),                             # its sidecar clash.json is a folder
    ('keep.txt/x.pdparams', 'keep.txt is a file, not a folder'),
])
def test_converter_refuses_outputs_that_would_destroy_or_fail(tmp_path, source, capsys, target, why):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'link.pdparams').symlink_to(source)
    os.link(source, tmp_path / 'hard.pdparams')
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'clash.json').mkdir()
    before = _listing(tmp_path)
    assert _identity_convert([source, tmp_path / target]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and why in err[0], err
    assert _listing(tmp_path) == before


def test_real_converter_refuses_its_own_source(tmp_path, source, capsys):
    before = _listing(tmp_path)
    assert run_family('ppdet', [str(source), str(source)]) == 2
    assert 'is the checkpoint being converted' in capsys.readouterr().err
    assert _listing(tmp_path) == before


@pytest.mark.parametrize('failure', [OSError(28, 'No space left on device'), KeyboardInterrupt()])
def test_a_failed_write_leaves_nothing_behind(tmp_path, source, monkeypatch, capsys, failure):
    before = _listing(tmp_path)

    def half_written(obj, path, **kwargs):
        Path(path).write_bytes(b'half a checkpoint')
        raise failure
    monkeypatch.setattr(paddle, 'save', half_written)
    code = _identity_convert([source, tmp_path / 'out.pdparams'])
    err = capsys.readouterr().err.strip()
    if isinstance(failure, KeyboardInterrupt):     # Ctrl-C: one line (tools.cli.command)
        assert code == 130 and err.startswith('interrupted (Ctrl-C)')
    else:
        assert code == 1 and err == (f'error: cannot write {tmp_path / "out.pdparams"}: No space left on device '
                                     '(rerun with --debug for the traceback)')
    assert _listing(tmp_path) == before


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, source, shapes_state, capsys):
    paddle.save({k: v for k, v in list(shapes_state.items())[1:]}, str(source))
    before = _listing(tmp_path)
    assert _identity_convert([source, tmp_path / 'out.pdparams']) == 2
    assert 'does not match' in capsys.readouterr().err
    assert _listing(tmp_path) == before


def test_converters_show_the_traceback_with_debug(tmp_path, source, shapes_state, capsys):
    paddle.save({k: v for k, v in list(shapes_state.items())[1:]}, str(source))
    with pytest.raises(ConversionError, match='does not match'):
        _identity_convert([source, tmp_path / 'out.pdparams', '--debug'])
    with pytest.raises(ConversionError, match='solov2_head.bbox_head.solo_cate.bias not found'):
        run_family('ppdet', [str(source), str(tmp_path / 'out.pdparams'), '--debug'])
    assert capsys.readouterr().err == ''


# ---- the sidecar records what rebuilds the model ----------------------------------------------

# what sidecars written so far record: it stays recorded, so that they keep loading, and the
# model settings among it stay binding (adding a knob needs no edit here)
RECORDED_MODEL = {
    'depth', 'variant', 'backbone_width', 'backbone_groups', 'backbone_base_width', 'backbone_dcn',
    'backbone_dcn_stages', 'fpn_channels', 'num_classes', 'head_convs', 'head_channels', 'kernel_channels',
    'num_grids', 'head_dcn', 'head_dcn_indices', 'dcn_bias', 'mask_feat_channels', 'mask_feat_dcn', 'segm_strides'}
RECORDED_TEST = {'class_names', 'test_short', 'test_max', 'score_threshold', 'mask_threshold', 'nms_pre',
                 'update_threshold', 'max_per_image', 'nms_kernel', 'nms_sigma'}


def test_sidecar_groups_are_the_declared_groups():
    """Each setting's sidecar group is its ``group=`` in config/base.py; the rest is not recorded."""
    declared = declared_settings(CONFIGS[0])
    assert MODEL_SETTINGS == tuple(name for name, setting in declared.items() if setting.group == 'model')
    assert TEST_SETTINGS == tuple(name for name, setting in declared.items() if setting.group == 'test')
    not_recorded = {name for name, setting in declared.items() if setting.group is None}
    groups = [set(MODEL_SETTINGS), set(TEST_SETTINGS), not_recorded]
    assert set().union(*groups) == set(CONFIGS[0].settings())
    assert sum(map(len, groups)) == len(CONFIGS[0].settings())
    assert {'base_lr', 'max_image_pixels', 'scale_ranges', 'frozen_stages', 'description'} <= not_recorded


def test_what_old_sidecars_record_stays_recorded():
    assert RECORDED_MODEL <= set(MODEL_SETTINGS)
    assert RECORDED_TEST <= set(MODEL_SETTINGS + TEST_SETTINGS)


GRIDS = (10, 8, 6, 4, 2)


@pytest.fixture
def trained(tmp_path):
    """The shipped weights as if trained with ``--opt num_grids=GRIDS score_threshold=0.3
    base_lr=0.1 class_names=...``: the sidecar train.py writes for that run."""
    cfg = with_overrides(CONFIGS[9], [f'num_grids={GRIDS}', 'score_threshold=0.3', 'base_lr=0.1',
                                      "class_names=('a','b','c','d')"])
    weights = str(tmp_path / 'run' / 'model.pdparams')
    save_checkpoint(load_paddle_params(str(SHIPPED)), weights, 9, cfg, 'test')
    return weights


def test_sidecar_records_model_and_test_settings_but_not_training_ones(trained):
    meta = read_sidecar(trained)
    assert meta['overrides'] == {'num_grids': list(GRIDS), 'score_threshold': 0.3}
    assert meta['config'] == 9 and meta['class_names'] == ['a', 'b', 'c', 'd']


def test_training_checkpoints_record_the_overrides(tmp_path):
    cfg = with_overrides(CONFIGS[9], [f'num_grids={GRIDS}', 'test_short=256'])
    model = build_model(cfg)
    ema = type('EMA', (), {'state_dict': lambda self: model.state_dict()})()
    folder = save_training_state(tmp_path, 'last', model, _stepped(model),
                                 {'iteration': 1}, 9, cfg, ema)
    for name in ('model.pdparams', 'ema.pdparams'):
        assert read_sidecar(str(folder / name))['overrides'] == {'num_grids': list(GRIDS), 'test_short': 256}


def _resolve(weights, *opts, config=None):
    return resolve_config(weights, config, list(opts))


def test_recorded_settings_are_applied_on_load(trained):
    number, cfg = _resolve(trained)
    assert number == 9 and cfg.num_grids == GRIDS and cfg.score_threshold == 0.3
    assert cfg.class_names == ('a', 'b', 'c', 'd') and cfg.base_lr == CONFIGS[9].base_lr
    predictor = Predictor(DygraphBackend(CONFIGS[9], trained))       # the Python API applies them as well
    assert predictor.params.num_grids == GRIDS and predictor.params.score_threshold == 0.3
    assert predictor.engine.class_names == ('a', 'b', 'c', 'd')


def test_test_time_settings_may_be_overridden(trained):
    _, cfg = _resolve(trained, 'score_threshold=0.5', 'test_short=256', f'num_grids={GRIDS}', config=9)
    assert cfg.score_threshold == 0.5 and cfg.test_short == 256 and cfg.num_grids == GRIDS


@pytest.mark.parametrize('opts, config, message', [
    (['num_grids=(20,16,12,8,6)'], None,
     f'weights were trained with num_grids={GRIDS}, the config asks for (20, 16, 12, 8, 6)'),
    (['num_classes=5', 'class_names=(1,2,3,4,5)'], None,
     'the weights {weights} hold 4 classes (a, b, c, d), not num_classes=5 — leave num_classes out (class_names '
     "may rename the 4), or fine-tune them on your classes: training with weights='{weights}'"),
    ([], 5, 'weights were trained with backbone_width=16, the config asks for 64 (they were made for config=9)'),
])
def test_a_contradicting_model_setting_is_an_error(trained, opts, config, message):
    with pytest.raises(ValueError) as info:
        _resolve(trained, *opts, config=config)
    assert str(info.value) == message.format(weights=trained)


def test_old_sidecars_keep_working(trained):
    side = sidecar_path(trained)
    meta = json.loads(side.read_text())
    del meta['overrides']
    side.write_text(json.dumps(meta))
    _, cfg = _resolve(trained)
    assert cfg.num_grids == CONFIGS[9].num_grids and cfg.class_names == ('a', 'b', 'c', 'd')
    _, cfg = _resolve(trained, f'num_grids={GRIDS}')        # nothing recorded: the command line decides
    assert cfg.num_grids == GRIDS


@pytest.mark.parametrize('edit, message', [
    ({'class_names': ['a', 'b', 'c']}, 'says num_classes=4 but lists 3 class names'),
    ({'overrides': {'base_lr': 0.5}}, '"overrides" records base_lr, which a sidecar does not hold'),
    ({'overrides': {'num_grids': 'many'}}, "bad override 'num_grids='many''"),
    ({'config': 42}, 'names config 42, which does not exist'),
])
def test_a_bad_sidecar_is_one_line_naming_it(trained, edit, message):
    side = sidecar_path(trained)
    side.write_text(json.dumps({**json.loads(side.read_text()), **edit}))
    with pytest.raises(ValueError) as info:
        _resolve(trained)
    assert str(info.value).startswith(f'{side}') and message in str(info.value) and '\n' not in str(info.value)


def test_num_classes_and_class_names_must_agree(trained):
    with pytest.raises(ValueError, match='num_classes=5 but class_names holds 4 names'):
        with_classes(CONFIGS[9], 5, CONFIGS[9].class_names)
    with pytest.raises(ValueError, match=r'hold 4 classes \(a, b, c, d\), not 2 class_names'):
        _resolve(trained, "class_names=('x', 'y')")
    _, cfg = _resolve(trained, "class_names=('w', 'x', 'y', 'z')")     # renaming is a test-time choice
    assert cfg.class_names == ('w', 'x', 'y', 'z')


def test_demo_names_the_contradicting_value(trained, tmp_path):
    """Through the real command: one line, exit code 2, the value named."""
    image = str(REPO_DIR / 'images' / 'shapes_000023.jpg')
    done = subprocess.run([sys.executable, str(REPO_DIR / 'demo.py'), '--weights', trained, '--input', image,
                           '--output', str(tmp_path / 'out'), '--opt', 'num_grids=(8,8,8,8,8)'],
                          env=_subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f'error: weights were trained with num_grids={GRIDS}, the config asks for (8, 8, 8, 8, 8)']


def test_exported_models_refuse_a_contradicting_model_setting():
    """An export's infer_cfg.json plays the sidecar's part for --backend inference|onnx."""
    cfg = with_overrides(CONFIGS[9], [f'num_grids={GRIDS}'])
    info = {'config': 9, 'num_classes': 4, 'class_names': list(cfg.class_names), 'test_short': 320,
            'test_max': 640, 'postprocess': InferenceParams.from_config(cfg).to_json()}
    assert config_from_infer_cfg(info, ['score_threshold=0.5']).num_grids == GRIDS
    with pytest.raises(BackendError, match=fr'exported with num_grids={re.escape(str(GRIDS))}, the config asks for'):
        config_from_infer_cfg(info, ['num_grids=(8, 8, 8, 8, 8)'])
