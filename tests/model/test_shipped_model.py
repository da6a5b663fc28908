"""The shipped model (weights/shapes_r18.pdparams, README's first command): `python demo.py`
with no arguments segments the sample images, and the model still scores on shapes
images it has never seen (a split drawn with another seed than its training data)."""
import json
from pathlib import Path

from solov2.config import get_config
from solov2.data.coco import CocoDataset, load_coco
from solov2.data.coco_eval import evaluate_segm
from solov2.data.results import write_json
from solov2.model.inference.dygraph_backend import DygraphBackend
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
    predictor = DygraphBackend(get_config(9), str(WEIGHTS), 'cpu')
    dataset = CocoDataset(str(ann), str(tmp_path / 'val'), class_names=list(predictor.class_names))
    coco = load_coco(str(ann))
    records = predict_coco(predictor, coco, str(tmp_path / 'val'), dataset.label_to_category_id)
    assert evaluate_segm(coco, records)['AP'] >= MIN_AP
