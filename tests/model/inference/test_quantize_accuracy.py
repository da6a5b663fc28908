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
is not run on the shapes model: --max-drop 100 lets it stop after the first INT8 model; its
report is read by ``reverted_operations``, checked on the messages of the README measurement.
The progress of every step (``Pass``, NNCF's messages) is checked on a two-convolution model
whose scripted scores make NNCF rank and revert. The command's last step, compiling the written
INT8 folder's size buckets into the cache and timing it against f32 (``compile_and_time``: seven
INT8 compiles of the shipped model, most of this file's time), is checked to be called on the written
folder only; what it does is test_openvino.py::test_quantize_writes_an_int8_folder_the_backend_runs's.
"""
import json
import re
from pathlib import Path

import pytest

pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('nncf', reason='deploy test: needs requirements-deploy.txt')

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from solov2.data.results import write_json
from solov2.model.inference.openvino_backend import OpenVinoBackend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.quantize import (
    Int8Speed,
    Pass,
    accuracy_controlled,
    coco_validation,
    load_annotated,
    prepare_images,
    reverted_operations,
)
from solov2.model.inference.spec import ModelSpec
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


EVALUATED: dict = {}     # (model folder, annotations, images, options) -> eval.py's mask AP


def _eval_ap(capsys, model_dir: Path, ann: Path, images: Path, *extra) -> float:
    """Mask AP (points) that eval.py prints for a model folder on a COCO set, run once a test run
    for the same arguments (``EVALUATED``: the folders are this module's, only read)."""
    key = (str(model_dir), str(ann), str(images), extra)
    if key not in EVALUATED:
        capsys.readouterr()
        assert eval_cli.main(['--backend', 'openvino', '--model-dir', str(model_dir), '--ann', str(ann),
                              '--images', str(images), *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        EVALUATED[key] = float(lines[lines.index('mask AP (%)') + 2].split()[0])
    return EVALUATED[key]


def test_quantize_with_annotations_writes_a_folder_with_its_ap(shapes, tmp_path, capsys, monkeypatch):
    export, train, ann, val = shapes
    out = tmp_path / 'int8'
    timed = []      # compile_and_time's arguments (its work: test_openvino.py's quantize test)
    monkeypatch.setattr(quantize, 'compile_and_time', lambda *args: timed.append(args) or Int8Speed(2.0, 1.0, 1))
    assert quantize.main(['--model-dir', str(export), '--images', str(train), '--annotations', str(ann),
                          '--annotated-images', str(val), '--max-drop', '100', '--output', str(out)]) == 0
    shown = capsys.readouterr()
    ((written, f32_dir, pictures),) = timed
    assert (written, f32_dir) == (out, str(export)) and sorted(pictures) == sorted(train.iterdir())
    assert 'INT8 pays here: 2.00x' in shown.out                      # its figures printed as they came
    line = next(s for s in shown.out.splitlines() if s.startswith('accuracy control:'))
    control = json.loads((out / 'infer_cfg.json').read_text())['files']['openvino_int8']['accuracy_control']
    assert f"mask AP on {ANNOTATED} annotated images f32 {control['f32_ap']:.2f}, int8 {control['int8_ap']:.2f}" in line
    assert (control['max_drop'], control['annotated_images'], control['reverted']) == (100.0, ANNOTATED, 0)
    assert control['f32_ap'] > 50                                # the shipped model finds the shapes
    assert round(control['f32_ap'], 2) == _eval_ap(capsys, export, ann, val)
    assert round(control['int8_ap'], 2) == _eval_ap(capsys, out, ann, val, '--precision', 'int8')
    steps = [s for s in shown.err.splitlines() if re.match(r'\[\d\d:\d\d:\d\d\] ', s)]  # after the time taken
    for step in (f"f32 reference: mask AP {control['f32_ap']:.2f} on {ANNOTATED} images (",
                 f'f32 per image [{ANNOTATED}/{ANNOTATED}] 100%', 'initial INT8: mask AP ', 'Accuracy drop: ',
                 f"INT8 result: mask AP {control['int8_ap']:.2f} on {ANNOTATED} images ("):
        assert any(step in s for s in steps), (step, shown.err)
    assert 'ETA' in next(s for s in steps if 'INT8 per image' in s)
    assert 'Not adding activation' not in shown.out + shown.err       # NNCF's notes stay quiet


def test_validation_function_scores_as_eval_does(shapes, tmp_path, capsys, monkeypatch):
    """The AP NNCF is given for a model equals eval.py's on the same pictures, for all of
    them and for a subset (an annotation file holding only those images), run through the
    predictor's loop on the compiled model."""
    export, _, ann, val = shapes
    backend = OpenVinoBackend(str(export), threads=1)
    annotated = load_annotated(str(ann), str(val), backend.class_names)
    prepared = prepare_images(Predictor(backend), annotated.paths, lambda: None)
    validate = coco_validation(ModelSpec(backend='openvino', model_dir=str(export), threads=1), annotated,
                               [p.image for p in prepared])
    model = backend.model.clone()
    model.reshape(backend.input_shapes([1, 3, *prepared[0].chw.shape[1:]]))
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    loops, loop = [], Predictor.run_pictures
    monkeypatch.setattr(Predictor, 'run_pictures', lambda self, *args, **kwargs: loops.append(self.engine) or
                        loop(self, *args, **kwargs))
    whole, none = validate(compiled, range(ANNOTATED))
    assert none is None and whole > 50
    assert len(loops) == 1 and list(loops[0].compiled.values())[0].compiled is compiled
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


@pytest.mark.parametrize('case', ['missing', 'garbage', 'no-images', 'no-folder'])
def test_bad_annotations_end_in_one_line(shapes, tmp_path, capsys, case):
    export, train, ann, val = shapes
    bad = {'missing': (tmp_path / 'nope.json', val, '1', 'annotation file not found'),
           'garbage': (tmp_path / 'garbage.json', val, '1', 'cannot parse annotation file'),
           'no-images': (ann, tmp_path, '1', 'no annotated images found'),
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


def _two_convolutions() -> ov.Model:
    """image [1, 3, 8, 8] -> two 3x3 convolutions with random weights, each with a ReLU."""
    rng, out = np.random.default_rng(0), ops.parameter([1, 3, 8, 8], np.float32, name='image')
    image = out
    for channels in (3, 4):
        weights = ops.constant(rng.standard_normal((4, channels, 3, 3)).astype(np.float32))
        out = ops.relu(ops.convolution(out, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([out], [image])


def test_accuracy_control_reports_each_validation_pass():
    """``progress`` hears a ``Pass`` for each call of the validation function, with what it
    returned, what NNCF ran it for and the count of its step, and NNCF's messages: here the
    scores (f32 80, INT8 50, then 80) make NNCF rank the two convolutions and revert one."""
    images, returned, heard = 3, [], []
    data = [{'image': np.full((1, 3, 8, 8), i, np.float32)} for i in range(images)]
    scores = iter([80.0] * (2 + images) + [50.0] * (1 + images))     # f32: NNCF's probe, all, each; INT8: all, each

    def validate(compiled, indices):
        returned.append((next(scores, 80.0), len(list(indices))))
        return returned[-1][0], None
    _, control = accuracy_controlled(_two_convolutions(), data, images, validate, [], 1.0, heard.append)
    passes = [event for event in heard if isinstance(event, Pass)]
    assert [(p.ap, p.images) for p in passes] == returned and all(p.seconds >= 0 for p in passes)
    steps = [(p.purpose, p.step, p.steps) for p in passes]
    ranking = 'ranking quantizer groups (<= 1 per quantized op)'
    assert steps == [('f32 reference', 1, 1), ('f32 reference', 2, 1), *[('f32 per image', i, 3) for i in (1, 2, 3)],
                     ('initial INT8', 1, 1), *[('INT8 per image', i, 3) for i in (1, 2, 3)],
                     (ranking, 1, 2), (ranking, 2, 2), ('INT8 after reverting a group', 1, 1),
                     ('f32 measured again', 1, 1), ('INT8 result', 1, 1)]
    messages = [event for event in heard if isinstance(event, str)]
    assert any(m.startswith('Reverted 1 operations') for m in messages) and not any('Elapsed' in m for m in messages)
    assert (control['f32_ap'], control['int8_ap'], control['reverted']) == (80.0, 80.0, 1)
