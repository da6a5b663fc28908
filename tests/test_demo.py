"""CLI smoke tests of demo.py through ``demo.main([...])`` with random-init checkpoints.

Each config gets a checkpoint made by ``build_model`` + ``save_checkpoint``; the
category bias of one class is raised before saving so that the random network
produces detections and the JSON records can be checked.
"""
import json
from pathlib import Path

import cv2
import numpy as np
import paddle
import pycocotools.mask as mask_util
import pytest

from solov2.config import CONFIGS, with_overrides
from solov2.core.paths import SAMPLE_IMAGES
from solov2.model.checkpoint import save_checkpoint
from solov2.tools import demo
from tests.helpers import get_eval_model

paddle.set_device('cpu')

# (file name, height, width); written in this sorted order, the corrupt one between
IMAGES = [('a_wide.png', 90, 120), ('b_tall.jpg', 120, 90), ('d_square.bmp', 100, 100)]
CORRUPT = 'c_corrupt.jpg'
# 64 px: the smallest short side whose pictures (64x96, 96x64, 64x64 padded to 32) still give every
# pyramid level at least one pixel (P5 at stride 32: 2x2 or more, P6 at 64: 1x1 or more)
FAST_OPTS = ['test_short=64', 'test_max=96']
# The per-config runs also use small grids and fewer instances: the head's (deformable)
# towers run on S x S grids whatever the image size, and 40x40 DCN towers take ~10 s per
# R101 image on CPU. Grids change no parameter; the checkpoints are saved as trained with
# them (their sidecar records the grids, which a command line may not contradict).
GRID_OPTS = ['num_grids=(8, 6, 4, 3, 2)']
RUN_OPTS = FAST_OPTS + GRID_OPTS + ['max_per_image=20']
HOT_CLASS = 0     # its category logit bias is raised so the random model detects things


def _draw(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    image = np.full((height, width, 3), rng.randint(0, 255, 3), np.uint8)
    cv2.rectangle(image, (5, 8), (width // 2, height // 2), (255, 40, 40), -1)
    cv2.circle(image, (width * 2 // 3, height * 2 // 3), min(height, width) // 5, (30, 200, 60), -1)
    cv2.line(image, (0, height - 1), (width - 1, 0), (20, 20, 220), 3)
    return image


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('images')
    for seed, (name, height, width) in enumerate(IMAGES):
        assert cv2.imwrite(str(folder / name), _draw(height, width, seed))
    (folder / CORRUPT).write_bytes(b'this is not an image\x00\x01\x02' * 10)
    (folder / 'notes.txt').write_text('not an image suffix, ignored')
    return folder


def _checkpoint(pytestconfig, folder: Path, number: int, hot: bool = True) -> str:
    """Save config ``number``'s random-init model as a project checkpoint."""
    cfg = CONFIGS[number]
    state = dict(get_eval_model(pytestconfig, number).state_dict())
    if hot:   # a copy: the shared model stays untouched
        bias = state['head.cate_pred.bias'].numpy().copy()
        bias[HOT_CLASS] = 4.0
        state['head.cate_pred.bias'] = bias
    path = str(folder / f'config{number}.pdparams')
    save_checkpoint(state, path, number, with_overrides(cfg, GRID_OPTS), 'random')
    return path


@pytest.fixture(scope='module')
def r18_weights(tmp_path_factory, pytestconfig) -> str:
    return _checkpoint(pytestconfig, tmp_path_factory.mktemp('r18'), 5, hot=False)


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith('error: ')
    assert 'Traceback' not in err
    return lines[0]


# ---- full run for every config -------------------------------------------------------------------

@pytest.mark.filterwarnings('ignore::DeprecationWarning')   # pycocotools decode on numpy 2
@pytest.mark.parametrize('number', sorted(CONFIGS))
def test_demo_runs_every_config(number, image_dir, tmp_path, capsys, pytestconfig):
    """Every config end to end in dygraph (the default, auto, exports; see tests/model/inference/test_openvino.py)."""
    weights = _checkpoint(pytestconfig, tmp_path, number)
    out_dir = tmp_path / 'out'
    json_path = tmp_path / 'results' / 'dets.json'
    capsys.readouterr()
    code = demo.main(['--config', str(number), '--weights', weights, '--backend', 'dygraph',
                      '--input', str(image_dir), '--output', str(out_dir), '--opt', *RUN_OPTS, '--warmup', '0',
                      '--save-json', str(json_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    # one picture per good image, at the original size; nothing for the corrupt file
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == sorted(Path(name).stem + '.jpg' for name, _, _ in IMAGES)
    for name, height, width in IMAGES:
        picture = cv2.imread(str(out_dir / (Path(name).stem + '.jpg')))
        assert picture is not None and picture.shape == (height, width, 3), name

    # the corrupt file is reported on stderr and skipped
    assert CORRUPT in captured.err and 'skipped' in captured.err
    assert 'Traceback' not in captured.err
    assert f'config {number}: {CONFIGS[number].__name__}' in captured.out
    assert 'test_short=64' in captured.out
    assert '3 images' in captured.out

    # COCO-style records
    records = json.loads(json_path.read_text())
    assert isinstance(records, list) and records, 'the hot class should give detections'
    sizes = {name: (height, width) for name, height, width in IMAGES}
    ids = {}
    for record in records:
        assert {'image_id', 'category_id', 'segmentation', 'score', 'bbox', 'file_name'} <= set(record)
        name = record['file_name']
        assert name in sizes, name
        ids.setdefault(name, record['image_id'])
        assert ids[name] == record['image_id']               # one id per file
        assert isinstance(record['image_id'], int)
        assert 1 <= record['category_id'] <= CONFIGS[number].num_classes
        assert 0.0 < record['score'] <= 1.0
        rle = record['segmentation']
        assert rle['size'] == list(sizes[name])
        assert isinstance(rle['counts'], str)
        mask = mask_util.decode({'size': rle['size'], 'counts': rle['counts'].encode('ascii')})
        assert mask.shape == sizes[name]
        assert len(record['bbox']) == 4
        np.testing.assert_allclose(record['bbox'], mask_util.toBbox(
            {'size': rle['size'], 'counts': rle['counts'].encode('ascii')}), atol=1e-3)
    assert len(set(ids.values())) == len(ids)                # different files, different ids
    assert {r['category_id'] for r in records} == {HOT_CLASS + 1}
    keys = [(r['image_id'], -r['score']) for r in records]
    assert keys == sorted(keys)


# ---- errors: exit code 2 with one line ---------------------------------------------------------------

def test_missing_weights(image_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)          # no default weights/ folder here
    code = demo.main(['--config', '5', '--input', str(image_dir), '--output', str(tmp_path / 'o')])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert 'weights' in line
    assert not (tmp_path / 'o').exists()


def test_weights_file_not_found(image_dir, tmp_path, capsys):
    code = demo.main(['--config', '5', '--weights', str(tmp_path / 'nope.pdparams'),
                      '--input', str(image_dir), '--output', str(tmp_path / 'o')])
    assert code == 2
    assert 'nope.pdparams' in _error_line(capsys.readouterr().err)


def test_weights_of_another_config(image_dir, tmp_path, r18_weights, capsys):
    code = demo.main(['--config', '6', '--weights', r18_weights, '--input', str(image_dir),
                      '--output', str(tmp_path / 'o'), '--opt', *FAST_OPTS, '--warmup', '0'])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert '(they were made for config=5)' in line
    assert not (tmp_path / 'o').exists()


def test_config_taken_from_sidecar(image_dir, tmp_path, r18_weights, capsys):
    """(dygraph: auto and dygraph read the config through the same checked_weights, and auto's
    export of a random model is tests/model/inference/test_openvino.py's.)"""
    out_dir = tmp_path / 'o'
    code = demo.main(['--weights', r18_weights, '--backend', 'dygraph', '--input', str(image_dir / IMAGES[0][0]),
                      '--output', str(out_dir), '--opt', *RUN_OPTS, '--warmup', '0'])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f'config 5: {CONFIGS[5].__name__}' in captured.out
    assert [p.name for p in out_dir.iterdir()] == [Path(IMAGES[0][0]).stem + '.jpg']


def test_weights_without_sidecar_need_config(image_dir, tmp_path, r18_weights, capsys):
    bare = tmp_path / 'bare.pdparams'
    bare.write_bytes(Path(r18_weights).read_bytes())
    code = demo.main(['--weights', str(bare), '--input', str(image_dir),
                      '--output', str(tmp_path / 'o')])
    assert code == 2
    assert 'config=' in _error_line(capsys.readouterr().err)


def test_empty_input_folder(tmp_path, r18_weights, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    code = demo.main(['--config', '5', '--weights', r18_weights, '--input', str(empty),
                      '--output', str(tmp_path / 'o')])
    assert code == 2
    assert 'no images' in _error_line(capsys.readouterr().err)


def test_missing_input_path(tmp_path, r18_weights, capsys):
    code = demo.main(['--config', '5', '--weights', r18_weights, '--input', str(tmp_path / 'nowhere'),
                      '--output', str(tmp_path / 'o')])
    assert code == 2
    _error_line(capsys.readouterr().err)


def test_unknown_opt_name(image_dir, tmp_path, r18_weights, capsys):
    code = demo.main(['--config', '5', '--weights', r18_weights, '--input', str(image_dir),
                      '--output', str(tmp_path / 'o'), '--opt', 'test_short=96', 'bogus_knob=3'])
    assert code == 2
    assert 'bogus_knob' in _error_line(capsys.readouterr().err)


def test_bad_opt_value(image_dir, tmp_path, r18_weights, capsys):
    code = demo.main(['--config', '5', '--weights', r18_weights, '--input', str(image_dir),
                      '--output', str(tmp_path / 'o'), '--opt', 'test_short=big'])
    assert code == 2
    assert 'test_short' in _error_line(capsys.readouterr().err)


def test_unknown_config_number(image_dir, tmp_path, r18_weights, capsys):
    with pytest.raises(SystemExit) as refused:            # argparse, under the flag
        demo.main(['--config', '99', '--weights', r18_weights, '--input', str(image_dir),
                   '--output', str(tmp_path / 'o')])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and '99' in err


# ---- listing and help ----------------------------------------------------------------------------------

def test_list_configs(capsys):
    assert demo.main(['--list-configs']) == 0
    out = capsys.readouterr().out
    for number, cls in CONFIGS.items():
        assert f'{number}: {cls.__name__}' in out
        assert cls.description in out


def test_help_mentions_every_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert '--config' in out and '--weights' in out and '--opt' in out
    for number, cls in CONFIGS.items():
        assert f'{number}: {cls.__name__}' in out


def test_exported_backend_on_a_gpu_machine_without_device(tmp_path, capsys, monkeypatch):
    """On a machine with a GPU, --backend onnx without --device runs on the CPU (it is not
    refused for the GPU it never asked for), and with --device gpu the GPU is accepted: both
    get as far as the (empty) folder."""
    from solov2.model import runtime
    monkeypatch.setattr(runtime, '_gpu_count', lambda: 1)
    monkeypatch.setattr(runtime.paddle.device.cuda, 'get_device_capability', lambda number=0: (8, 0))
    paths = ['--input', SAMPLE_IMAGES, '--output', str(tmp_path / 'out'), '--model-dir', str(tmp_path)]
    assert demo.main(['--backend', 'onnx', *paths]) == 2
    error = capsys.readouterr().err
    assert 'GPU' not in error and 'CUDA' not in error and str(tmp_path) in error
    assert demo.main(['--backend', 'onnx', '--device', 'gpu', *paths]) == 2
    assert 'infer_cfg.json not found' in capsys.readouterr().err


def test_an_unusable_gpu_is_one_line_on_every_backend(tmp_path, capsys):
    """--device gpu on this CPU build of Paddle: one line naming the fix, for the Paddle model
    as for an exported one (not Paddle's own ValueError as a bug in the toolkit)."""
    paths = ['--input', SAMPLE_IMAGES, '--output', str(tmp_path / 'out')]
    for backend in (['--backend', 'dygraph'], ['--backend', 'onnx', '--model-dir', str(tmp_path)]):
        assert demo.main([*backend, '--device', 'gpu:1', *paths]) == 2
        assert "device='gpu:1' needs a GPU and paddlepaddle-gpu" in capsys.readouterr().err
