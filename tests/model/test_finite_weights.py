"""Weights that are not finite (a run that diverged) are refused where they are read, in one line naming the
file and the tensor: once they loaded and ran with no word (a NaN class head found nothing on every picture, one
NaN normalisation weight cost 29 AP points)."""
import json
import shutil

import numpy as np
import paddle
import pytest

from solov2 import SAMPLE_IMAGES, Segmenter
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.model.checkpoint import CheckpointError, load_paddle_params
from solov2.model.training.components import load_pretrained
from solov2.tools import demo as demo_cli
from solov2.tools import eval as eval_cli
from solov2.tools import export_model

DIVERGED = 'head.cate_tower.1.norm.weight'


@pytest.fixture(scope='module')
def diverged(tmp_path_factory):
    """The shipped weights (and sidecar) with one NaN and one infinity in a normalisation weight."""
    folder = tmp_path_factory.mktemp('diverged')
    params = load_paddle_params(SHIPPED_WEIGHTS)
    params[DIVERGED] = params[DIVERGED].copy()
    params[DIVERGED][[0, 3]] = [np.nan, np.inf]
    paddle.save(params, str(folder / 'model.pdparams'))
    shutil.copy(SHIPPED_WEIGHTS.replace('.pdparams', '.json'), folder / 'model.json')
    return str(folder / 'model.pdparams')


def refused(err: str, path: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert 'Traceback' not in err and len(lines) == 1, err
    assert f'{path}: tensor {DIVERGED} holds 2 of 64 values that are NaN or infinite' in lines[0]
    assert 'the run that saved it diverged' in lines[0]


def test_the_reader_refuses_them(diverged):
    with pytest.raises(CheckpointError, match=f'tensor {DIVERGED} holds 2 of 64'):
        load_paddle_params(diverged)


@pytest.mark.parametrize('backend', ['dygraph', 'auto'])
def test_segmenter_refuses_them(diverged, backend, tmp_path, monkeypatch):
    from solov2.core.paths import CACHE_ENV
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    with pytest.raises(ValueError, match='the run that saved it diverged'):
        Segmenter(diverged, backend=backend)


def test_the_commands_refuse_them(diverged, tmp_path, capsys):
    pictures = tmp_path / 'in'
    pictures.mkdir()
    shutil.copy(f'{SAMPLE_IMAGES}/shapes_000023.jpg', pictures)
    (tmp_path / 'gt.json').write_text(json.dumps({'images': [{'id': 1, 'file_name': 'shapes_000023.jpg', 'height': 256,
                                                              'width': 256}], 'annotations': [],
                                                  'categories': [{'id': 1, 'name': 'circle'}]}))
    commands = [
        (demo_cli.main, ['--weights', diverged, '--input', str(pictures), '--output', str(tmp_path / 'out'),
                         '--backend', 'dygraph', '--device', 'cpu']),
        (eval_cli.main, ['--weights', diverged, '--ann', str(tmp_path / 'gt.json'), '--images', str(pictures),
                         '--device', 'cpu']),
        (export_model.main, ['--weights', diverged, '--output', str(tmp_path / 'export'), '--format', 'paddle']),
    ]
    for main, argv in commands:
        assert main(argv) == 2, argv
        refused(capsys.readouterr().err, diverged)
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'export').exists()


def test_fine_tuning_and_resuming_refuse_them(diverged, tmp_path):
    from solov2.config import get_config
    from solov2.model.build import build_model
    from solov2.model.training.state import restore_training_state
    model = build_model(get_config(9))
    with pytest.raises(CheckpointError, match='diverged'):
        load_pretrained(model, diverged)
    run = tmp_path / 'last'
    run.mkdir()
    shutil.copy(diverged, run / 'model.pdparams')
    with pytest.raises(CheckpointError, match='diverged'):
        restore_training_state(run, {}, model, None)


def test_the_converters_refuse_them(tmp_path):
    """A published checkpoint of PyTorch (SOLO, mmdetection, torchvision) is read by the same check."""
    torch = pytest.importorskip('torch')
    from solov2.convert.pth_reader import load_state_dict
    weights = {'backbone.conv1.weight': torch.ones(2, 3), 'bbox_head.cate_convs.0.gn.weight': torch.ones(4)}
    weights['bbox_head.cate_convs.0.gn.weight'][1] = float('nan')
    torch.save({'state_dict': weights}, tmp_path / 'diverged.pth')
    with pytest.raises(ValueError, match='tensor bbox_head.cate_convs.0.gn.weight holds 1 of 4 values that are NaN'):
        load_state_dict(tmp_path / 'diverged.pth')
