"""The shipped model (weights/shapes_r18.pdparams, README's first command): `python demo.py`
with no arguments segments the sample images, and the model still scores on shapes
images it has never seen (a split drawn with another seed than its training data)."""
import json
from pathlib import Path

import numpy as np

from solov2.config import get_config
from solov2.data.coco import CocoDataset, load_coco
from solov2.data.results import write_json
from solov2.data.scoring import evaluate_segm
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.predicting import predict_coco
from solov2.tools import demo
from solov2.tools.make_shapes_dataset import generate_split
from tests.helpers import REPO_DIR

ROOT = REPO_DIR
WEIGHTS = ROOT / 'weights' / 'shapes_r18.pdparams'
# the shipped model scores mask AP 0.769 on these 60 unseen images; the floor is the 0.70
# the shapes recipe promises, and broken weights, model code or post-processing fall far below it
MIN_AP = 0.70


def test_sidecar_names_the_shapes_config():
    sidecar = json.loads(WEIGHTS.with_suffix('.json').read_text())
    assert sidecar['config'] == 9
    assert sidecar['class_names'] == list(get_config(9).class_names)


def test_demo_without_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    # the defaults (images/ in, shipped weights) plus a temporary output folder and JSON
    assert demo.main(['--output', str(tmp_path / 'demo'), '--save-json', str(tmp_path / 'r.json')]) == 0
    samples = sorted(p.stem for p in (ROOT / 'images').glob('*.jpg'))
    assert sorted(p.stem for p in (tmp_path / 'demo').iterdir()) == samples
    records = json.loads((tmp_path / 'r.json').read_text())
    confident = {r['file_name'] for r in records if r['score'] >= 0.5}
    assert {Path(name).stem for name in confident} == set(samples)
    assert 'FPS' in capsys.readouterr().out


def test_accuracy_on_unseen_shapes(tmp_path):
    coco_dict = generate_split(tmp_path, 'val', 60, 256, seed=12345)
    ann = tmp_path / 'val.json'
    write_json(coco_dict, str(ann))
    predictor = Predictor(DygraphBackend(get_config(9), str(WEIGHTS), 'cpu'))
    dataset = CocoDataset(str(ann), str(tmp_path / 'val'), class_names=list(predictor.engine.class_names))
    coco = load_coco(str(ann))
    records = predict_coco(predictor, coco, str(tmp_path / 'val'), dataset.label_to_category_id)
    assert evaluate_segm(coco, records)['AP'] >= MIN_AP


def _answers(records):
    """(file or image, category) of each record in order, and the scores."""
    return [(r.get('file_name', r['image_id']), r['category_id']) for r in records], [r['score'] for r in records]


def test_demo_and_predictions_in_batches_answer_as_one_picture_at_a_time(tmp_path, monkeypatch):
    """--batch-size N (the runner: pictures of one padded size share a network run, the wide
    sample runs alone) gives demo.py's and eval's answers of one picture at a time."""
    monkeypatch.chdir(ROOT)
    runs = []
    for size in ('1', '3'):
        out = tmp_path / size
        assert demo.main(['--backend', 'dygraph', '--batch-size', size, '--warmup', '1', '--output', str(out),
                          '--save-json', str(out / 'r.json')]) == 0
        runs.append(_answers(json.loads((out / 'r.json').read_text())))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) > 5
    np.testing.assert_allclose(runs[0][1], runs[1][1], atol=1e-4)
    write_json(generate_split(tmp_path, 'val', 6, 256, seed=7), str(tmp_path / 'val.json'))
    predictor = Predictor(DygraphBackend(get_config(9), str(WEIGHTS), 'cpu'))
    dataset = CocoDataset(str(tmp_path / 'val.json'), str(tmp_path / 'val'),
                          class_names=list(predictor.engine.class_names))
    one, four = (_answers(predict_coco(predictor, dataset.coco, str(tmp_path / 'val'), dataset.label_to_category_id,
                                       batch_size=size)) for size in (1, 4))
    assert one[0] == four[0] and len(one[0]) > 5
    np.testing.assert_allclose(one[1], four[1], atol=1e-4)
