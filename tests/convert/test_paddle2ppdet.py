"""The way back to PaddleDetection 2.x (convert/paddle2ppdet.py): a checkpoint of this
project written as a PaddleDetection .pdparams loads into PaddleDetection's own SOLOv2
(tools/dev/reference/ppdet_ref.py, with PaddleDetection's loader, which refuses a file that
lacks any of the model's keys) and gives the instances this project's model gives; a
PaddleDetection file converted here and back is identical."""
import os

import pytest

pytest.importorskip('ppdet', reason='reference test: needs PaddleDetection (paddledet==2.6.0)')

import numpy as np
import paddle
from ppdet.utils.checkpoint import load_weight

from solov2.config import CONFIGS
from solov2.config.sidecar import read_sidecar
from solov2.model.checkpoint import load_paddle_params, save_checkpoint
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.postprocess import paste_in_boxes
from solov2.tools.convert import run_family
from solov2.tools.dev.reference import ppdet_ref
from tests.helpers import REPO_DIR, postprocess

pytestmark = pytest.mark.reference

IMAGE_HW = (128, 160)
# PaddleDetection family -> our config
FAMILIES = {'r50_fpn': 0, 'r50_enhance': 3, 'r101_vd_dcn': 4}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_ppdet_to_ours_and_back_is_identical(family, tmp_path):
    src, ours, back = (str(tmp_path / name) for name in ('ppdet.pdparams', 'ours.pdparams', 'back.pdparams'))
    ppdet_ref.save(ppdet_ref.build(family, seed=4, calibrated=False), src)
    assert run_family('ppdet', [src, ours]) == 0
    assert read_sidecar(ours)['config'] == FAMILIES[family]
    assert run_family('to-ppdet', [ours, back]) == 0
    original, again = load_paddle_params(src), load_paddle_params(back)
    assert original.keys() == again.keys()
    assert all(np.array_equal(original[k], again[k]) and again[k].dtype == original[k].dtype for k in original)


def _our_checkpoint(path: str) -> str:
    """A checkpoint of this project PaddleDetection never saw: the enhance family's active
    random weights converted here, then every tensor moved by ~0.1% (as training would)."""
    src = path.replace('.pdparams', '_ppdet.pdparams')
    ppdet_ref.save(ppdet_ref.build('r50_enhance', seed=1), src)
    assert run_family('ppdet', [src, path]) == 0
    rng = np.random.RandomState(0)
    state = {k: v * (1 + 1e-3 * rng.standard_normal(v.shape)).astype(np.float32)
             for k, v in load_paddle_params(path).items()}
    save_checkpoint(state, path, 3, CONFIGS[3], source='test')
    return path


def test_written_file_gives_the_same_instances_in_paddledetection(tmp_path):
    ours = _our_checkpoint(str(tmp_path / 'ours.pdparams'))
    out = str(tmp_path / 'solov2_r50_enhance_coco.pdparams')
    assert run_family('to-ppdet', [ours, out]) == 0
    reference = ppdet_ref.build('r50_enhance', seed=9, calibrated=False)   # other weights until loaded
    load_weight(reference, out)
    image = np.random.RandomState(3).standard_normal((1, 3, *IMAGE_HW)).astype(np.float32)
    expected = ppdet_ref.run(reference, image)
    ref_masks, ref_labels, ref_scores = ppdet_ref.clean_ppdet_detections(
        expected['masks'], expected['labels'], expected['scores'])
    predictor = Predictor(DygraphBackend(CONFIGS[3], ours, device='cpu'))
    with paddle.no_grad():
        mine = postprocess(predictor.engine.model(paddle.to_tensor(image)), predictor.params)[0]
    masks = np.asarray(paste_in_boxes(mine.masks, IMAGE_HW, IMAGE_HW))
    assert len(ref_scores) > 5, 'PaddleDetection produced too few instances to compare'
    assert len(mine) == len(ref_scores)
    np.testing.assert_array_equal(mine.labels, ref_labels)
    assert np.abs(mine.scores - ref_scores).max() <= 1e-4
    ious = [np.logical_and(m, r).sum() / max(np.logical_or(m, r).sum(), 1) for m, r in zip(masks, ref_masks)]
    print(f'\n{len(mine)} instances, max score diff {np.abs(mine.scores - ref_scores).max():.1e}, '
          f'min mask IoU {min(ious):.5f}')
    assert min(ious) >= 0.999


def test_configs_without_a_paddledetection_config_are_refused(tmp_path, capsys):
    out = tmp_path / 'x.pdparams'
    assert run_family('to-ppdet', [str(REPO_DIR / 'weights' / 'shapes_r18.pdparams'), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: config 9') and 'no PaddleDetection 2.x' in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_no_sidecar_needs_a_config_and_the_input_is_never_overwritten(tmp_path, capsys):
    bare = tmp_path / 'bare.pdparams'
    bare.write_bytes((REPO_DIR / 'weights' / 'shapes_r18.pdparams').read_bytes())
    assert run_family('to-ppdet', [str(bare), str(tmp_path / 'x.pdparams')]) == 2
    assert 'config=' in capsys.readouterr().err
    before = bare.read_bytes()
    (tmp_path / 'link.pdparams').symlink_to(bare)
    os.link(bare, tmp_path / 'hard.pdparams')
    for same in (bare, tmp_path / 'link.pdparams', tmp_path / 'hard.pdparams'):
        assert run_family('to-ppdet', [str(bare), str(same), '--config', '0']) == 2
        assert 'is an input file' in capsys.readouterr().err and bare.read_bytes() == before
    assert run_family('to-ppdet', [str(bare), str(tmp_path / 'x.pdparams'), '--config', '0']) == 2
    assert 'do not fit config' in capsys.readouterr().err
    assert not (tmp_path / 'x.pdparams').exists()
