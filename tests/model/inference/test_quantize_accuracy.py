"""Accuracy-controlled INT8 quantization (tools/quantize.py --annotations,
model/inference/quantize.py): the shipped shapes model (weights/shapes_r18.pdparams) exported
to ONNX (the test run's auto export, tests/helpers.shipped_onnx_export), calibrated on a few
synthetic shapes pictures, its mask AP measured on a few others (tools/make_shapes_dataset.py's
generate_split, 256x256 pictures: no extra padding).

What is checked: the folder it writes runs in the int8 backend and records the two APs,
each equal to the AP eval.py gives the written / exported model on the same pictures; the
validation function handed to NNCF scores exactly as eval.py, on the whole set and on a
subset of images (NNCF ranks layers on subsets); bad inputs end in one line with exit code 2.
NNCF's layer ranking and reverting (minutes: every group of quantizers is compiled and scored)
is not run here: --max-drop 100 lets it stop after the first INT8 model; its report is read by
``reverted_operations``, checked on the messages of the README measurement.
"""
import json
from pathlib import Path

import pytest

pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('nncf', reason='deploy test: needs requirements-deploy.txt')

import openvino as ov

from solov2.data.results import write_json
from solov2.model.inference.openvino_backend import OpenVinoBackend
from solov2.model.inference.quantize import (
    coco_validation,
    load_annotated,
    pad_batches,
    prepare_images,
    reverted_operations,
)
from solov2.tools import eval as eval_cli
from solov2.tools import quantize
from solov2.tools.make_shapes_dataset import generate_split
from tests.helpers import shipped_onnx_export

CALIBRATION, ANNOTATED = 4, 6
pytestmark = [pytest.mark.deploy,
              pytest.mark.filterwarnings('ignore::DeprecationWarning')]   # pycocotools on numpy 2


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """(export folder, calibration folder, annotation file, annotated image folder)."""
    folder = tmp_path_factory.mktemp('ac')
    shipped_onnx_export(folder / 'export')
    generate_split(folder, 'train', CALIBRATION, 256, seed=7)
    ann = folder / 'val.json'
    write_json(generate_split(folder, 'val', ANNOTATED, 256, seed=7), str(ann))
    return folder / 'export', folder / 'train', ann, folder / 'val'


def _eval_ap(capsys, model_dir: Path, ann: Path, images: Path, *extra) -> float:
    """Mask AP (points) that eval.py prints for a model folder on a COCO set."""
    capsys.readouterr()
    assert eval_cli.main(['--backend', 'openvino', '--model-dir', str(model_dir), '--ann', str(ann),
                          '--images', str(images), *extra]) == 0
    lines = capsys.readouterr().out.splitlines()
    return float(lines[lines.index('mask AP (%)') + 2].split()[0])


def test_quantize_with_annotations_writes_a_folder_with_its_ap(shapes, tmp_path, capsys):
    export, train, ann, val = shapes
    out = tmp_path / 'int8'
    assert quantize.main(['--model-dir', str(export), '--images', str(train), '--annotations', str(ann),
                          '--annotated-images', str(val), '--max-drop', '100', '--output', str(out)]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith('accuracy control:'))
    control = json.loads((out / 'infer_cfg.json').read_text())['files']['openvino_int8']['accuracy_control']
    assert f"mask AP on {ANNOTATED} annotated images f32 {control['f32_ap']:.2f}, int8 {control['int8_ap']:.2f}" in line
    assert (control['max_drop'], control['annotated_images'], control['reverted']) == (100.0, ANNOTATED, 0)
    assert control['f32_ap'] > 50                                # the shipped model finds the shapes
    assert round(control['f32_ap'], 2) == _eval_ap(capsys, export, ann, val)
    assert round(control['int8_ap'], 2) == _eval_ap(capsys, out, ann, val, '--precision', 'int8')


def test_validation_function_scores_as_eval_does(shapes, tmp_path, capsys):
    """The AP NNCF is given for a model equals eval.py's on the same pictures, for all of
    them and for a subset (an annotation file holding only those images)."""
    export, _, ann, val = shapes
    backend = OpenVinoBackend(str(export), threads=1)
    annotated = load_annotated(str(ann), str(val), backend.class_names)
    prepared = prepare_images(backend, annotated.paths, lambda: None)
    batches = pad_batches(backend.input_names, [chw for chw, _ in prepared], prepared[0][0].shape[1:])
    validate = coco_validation(backend, annotated, batches, [meta for _, meta in prepared])
    model = backend.model.clone()
    model.reshape(backend.input_shapes(batches[0]['image'].shape))
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    whole, none = validate(compiled, range(ANNOTATED))
    assert none is None and whole > 50
    assert round(whole, 2) == _eval_ap(capsys, export, ann, val)
    subset = [1, 4]
    coco = json.loads(ann.read_text())
    ids = {annotated.image_ids[i] for i in subset}
    coco['images'] = [image for image in coco['images'] if image['id'] in ids]
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in ids]
    write_json(coco, str(tmp_path / 'subset.json'))
    part = validate(compiled, subset)[0]
    assert round(part, 2) == _eval_ap(capsys, export, tmp_path / 'subset.json', val)
    assert abs(part - whole) > 0.5                              # a subset scores on its own


@pytest.mark.parametrize('case', ['missing', 'garbage', 'no-images', 'negative-drop', 'no-folder'])
def test_bad_annotations_end_in_one_line(shapes, tmp_path, capsys, case):
    export, train, ann, val = shapes
    bad = {'missing': (tmp_path / 'nope.json', val, '1', 'annotation file not found'),
           'garbage': (tmp_path / 'garbage.json', val, '1', 'cannot parse annotation file'),
           'no-images': (ann, tmp_path, '1', 'no annotated images found'),
           'negative-drop': (ann, val, '-0.5', '--max-drop must be >= 0'),
           'no-folder': (ann, None, '1', '--annotations needs --annotated-images')}
    path, images, drop, message = bad[case]
    (tmp_path / 'garbage.json').write_text('{"images": [')
    out = tmp_path / 'int8'
    capsys.readouterr()
    code = quantize.main(['--model-dir', str(export), '--images', str(train), '--annotations', str(path),
                          *(['--annotated-images', str(images)] if images else []), '--max-drop', drop,
                          '--output', str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: ') and err.count('\n') == 1 and message in err, err
    assert not out.exists()


def test_reverted_operations_reads_nncf_report():
    """NNCF 3.4's messages as logged in the README measurement: the final report wins; nothing
    reverted without one; every quantized operation when NNCF gave up; unknown without a report."""
    messages = ['Total number of quantized operations in the model: 169',
                'Changing the scope of quantizer nodes was started',
                'Reverted 1 operations to the floating-point precision: \n\tMul.252',
                'Algorithm completed: metric of the quantized model is greater than the metric of the initial model',
                '1 out of 169 were reverted back to the floating-point precision:\n\tMul.252']
    assert reverted_operations(messages) == (1, ['Mul.252'])
    assert reverted_operations(messages[:1]) == (0, [])
    assert reverted_operations(messages[:3] + ['All layers have been checked and the AccuracyAwareQuantization '
                                               'will not be able to achieve the required accuracy drop']) == (169, [])
    assert reverted_operations(messages[:4]) == (None, [])
