"""The accuracy each OpenVINO precision keeps on the shipped shapes model (config 9), as mask
AP on 60 shapes pictures it never saw, against the dygraph model on the same pictures: f32
the same AP (to 0.002), bf16 within 0.5 AP points (where the CPU has bf16), INT8 from
tools/quantize.py's code (calibrated on 16 other pictures, default --keep-depth) within 1
point: the tolerances README's Deployment section states."""
from pathlib import Path

import pytest

pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('nncf', reason='deploy test: needs requirements-deploy.txt')

import openvino as ov

from solov2 import SHIPPED_WEIGHTS as WEIGHTS
from solov2.config import get_config
from solov2.data.coco import CocoDataset, load_coco
from solov2.data.results import write_json
from solov2.data.scoring import evaluate_segm
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.openvino_backend import OpenVinoBackend, has_bf16
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.predicting import predict_coco
from solov2.model.inference.quantize import quantize_model
from solov2.model.inference.spec import ModelSpec
from solov2.tools.make_shapes_dataset import generate_split
from tests.helpers import shipped_onnx_export

pytestmark = pytest.mark.deploy

MAX_DROP = {'f32': 0.002, 'bf16': 0.005, 'int8': 0.01}    # mask AP, 0-1 scale


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """A folder with val.json + val/ (60 unseen pictures), export/ (model.onnx) and int8/."""
    root = tmp_path_factory.mktemp('precision')
    write_json(generate_split(root, 'val', 60, 256, seed=12345), str(root / 'val.json'))
    generate_split(root / 'calibration', 'train', 16, 256, seed=777)
    shipped_onnx_export(root / 'export')
    quantize_model(ModelSpec(backend='openvino', model_dir=str(root / 'export')),
                   sorted((root / 'calibration' / 'train').glob('*.jpg')), root / 'int8')
    return root


def _mask_ap(backend, root: Path) -> float:
    ann, images = str(root / 'val.json'), str(root / 'val')
    dataset = CocoDataset(ann, images, class_names=list(backend.class_names))
    coco = load_coco(ann)
    return evaluate_segm(coco, predict_coco(Predictor(backend), coco, images, dataset.label_to_category_id))['AP']


@pytest.fixture(scope='module')
def dygraph_ap(shapes):
    return _mask_ap(DygraphBackend(get_config(9), str(WEIGHTS), 'cpu'), shapes)


@pytest.mark.parametrize('precision', ['f32', 'bf16', 'int8'])
def test_precision_keeps_the_stated_ap(shapes, dygraph_ap, precision):
    if precision == 'bf16' and not has_bf16(ov.Core()):
        pytest.skip('this CPU has no bf16 (neither AMX nor avx512_bf16): bf16 accuracy cannot be measured here')
    folder = shapes / ('int8' if precision == 'int8' else 'export')
    ap = _mask_ap(OpenVinoBackend(str(folder), precision=precision), shapes)
    assert dygraph_ap > 0.7
    assert ap >= dygraph_ap - MAX_DROP[precision], (precision, ap, dygraph_ap)
