"""The one way to open an exported model folder by name (``spec.exported_backend``), on
real exports of the shipped model: each name runs its engine on the folder it is given and finds
what the Paddle model finds, and what it is given (threads, precision, config changes, the
compiled-model folder) reaches the engine; the demo's command line, the auto cache, the
benchmark tools and the API all open folders through it."""
import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip('onnxruntime', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')

import numpy as np

from solov2.config import device
from solov2.config.sidecar import resolve_config
from solov2.core.cache import COMPILED
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.data.transforms import read_image
from solov2.model.inference import auto_backend, backend_factory
from solov2.model.inference.backend import BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.onnxruntime_backend import OnnxBackend
from solov2.model.inference.openvino_backend import OpenVinoBackend
from solov2.model.inference.paddle_inference_backend import InferenceBackend
from solov2.model.inference.pipeline import Predictor
from solov2.model.inference.spec import ModelSpec, exported_backend
from solov2.tools.dev import benchmark, mixed_speed
from tests.helpers import shipped_onnx_export, shipped_paddle_export

pytestmark = [pytest.mark.deploy,
              pytest.mark.filterwarnings("ignore:Tensor do not have 'place':UserWarning"),
              pytest.mark.filterwarnings('ignore:The Attr\\(force_cpu\\):UserWarning')]

PICTURE = str(Path(SAMPLE_IMAGES) / 'shapes_000023.jpg')
SCORE_TOL = 1e-4
MIN_MASK_IOU = 0.99


@pytest.fixture(scope='module')
def folders(tmp_path_factory, run_builds):
    """{'paddle': a Paddle Inference export, 'onnx': an ONNX export} of the shipped model, each made
    once a test run (``shipped_paddle_export``, ``shipped_onnx_export``)."""
    onnx = shipped_onnx_export(tmp_path_factory.mktemp('opener') / 'onnx')
    return {'paddle': str(shipped_paddle_export(run_builds)), 'onnx': str(onnx)}


@pytest.fixture(scope='module')
def found():
    """What the Paddle model (dygraph) finds on PICTURE: (picture, detections)."""
    number, cfg = resolve_config(SHIPPED_WEIGHTS, None, ())
    picture = read_image(PICTURE)
    detections = Predictor(DygraphBackend(cfg, SHIPPED_WEIGHTS, 'cpu', threads=1)).detect(picture)
    assert len(detections.scores) > 1
    return picture, detections


def assert_finds_the_same(backend, found) -> None:
    picture, expected = found
    got = Predictor(backend).detect(picture)
    np.testing.assert_allclose(got.scores, expected.scores, atol=SCORE_TOL)
    np.testing.assert_array_equal(got.labels, expected.labels)
    for a, b in zip(got.masks, expected.masks):
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        assert np.logical_and(a, b).sum() >= MIN_MASK_IOU * np.logical_or(a, b).sum()


@pytest.mark.parametrize('kind, folder, engine, options', [
    ('inference', 'paddle', InferenceBackend, {}),
    ('inference', 'paddle', InferenceBackend, {'mkldnn': True}),
    ('onnx', 'onnx', OnnxBackend, {}),
    ('openvino', 'onnx', OpenVinoBackend, {}),
])
def test_each_name_runs_its_engine_on_the_folder_and_finds_what_dygraph_finds(kind, folder, engine, options,
                                                                              folders, found):
    backend = exported_backend(ModelSpec(backend=kind, model_dir=folders[folder], threads=1, **options))
    assert type(backend) is engine
    assert_finds_the_same(backend, found)


@pytest.mark.parametrize('kind, folder', [('inference', 'paddle'), ('onnx', 'onnx'), ('openvino', 'onnx')])
def test_a_picture_under_the_exports_least_side_is_padded_up_to_it(kind, folder, folders, found):
    """A legal picture so thin that it resizes under the export's least side (a 12x1500 strip: 5x640,
    padded to 32x640 for the Paddle model; the exports take 64 px a side at least) is padded up to
    it, not refused: each engine answers it beside an ordinary picture, as the Paddle model answers
    the same padded input, and the ordinary picture's answer is unchanged."""
    strip = np.ascontiguousarray(np.tile(found[0][:12], (1, 6, 1))[:, :1500])
    backend = exported_backend(ModelSpec(backend=kind, model_dir=folders[folder], threads=1))
    (_, thin), (_, ordinary) = Predictor(backend).run_pictures([strip, found[0]], lambda picture: picture)
    assert thin.masks.shape == (len(thin), 12, 1500)
    dygraph = DygraphBackend(backend.cfg, SHIPPED_WEIGHTS, 'cpu', threads=1)
    dygraph.size_range = backend.size_range                 # the same padding as the export's
    want = Predictor(dygraph).detect(strip)
    np.testing.assert_allclose(thin.scores, want.scores, atol=SCORE_TOL)
    np.testing.assert_array_equal(thin.labels, want.labels)
    np.testing.assert_allclose(ordinary.scores, found[1].scores, atol=SCORE_TOL)
    np.testing.assert_array_equal(ordinary.labels, found[1].labels)


def test_threads_config_changes_and_the_compiled_folder_reach_the_engine(folders, found, tmp_path):
    onnx = exported_backend(ModelSpec(backend='onnx', model_dir=folders['onnx'], threads=1,
                                      overrides=['max_per_image=1']))
    assert onnx.session.get_session_options().intra_op_num_threads == 1
    top = Predictor(onnx).detect(found[0])                     # the best instance alone
    np.testing.assert_allclose(top.scores, found[1].scores[:1], atol=SCORE_TOL)
    compiled = tmp_path / 'compiled'
    compiled.mkdir()
    openvino = exported_backend(ModelSpec(backend='openvino', model_dir=folders['onnx'], threads=1),
                                compiled=str(compiled))
    assert_finds_the_same(openvino, found)
    assert any(compiled.iterdir())                            # OpenVINO kept what it compiled there
    (pool,) = openvino.compiled.values()
    assert int(pool.compiled.get_property('INFERENCE_NUM_THREADS')) == 1
    with pytest.raises(BackendError, match='has no INT8 OpenVINO model'):      # int8 asked of an f32 export
        exported_backend(ModelSpec(backend='openvino', model_dir=folders['onnx'], threads=1,
                                   precision='int8'))
    with pytest.raises(BackendError, match="unknown exported backend 'tensorrt' .*inference, onnx, openvino"):
        exported_backend(ModelSpec(backend='tensorrt', model_dir=folders['onnx']))


@pytest.mark.parametrize('kind', ['inference', 'onnx', 'openvino'])
def test_an_int8_folder_opened_as_f32_says_how_to_open_it(kind, folders, tmp_path):
    """tools/quantize.py's folder holds the INT8 model only: each f32 engine asked to open it says to
    run it with OpenVINO int8 (not to export it again)."""
    info = json.loads((Path(folders['onnx']) / 'infer_cfg.json').read_text())
    info['files'] = {'openvino_int8': {'model': 'model_int8.xml', 'weights': 'model_int8.bin'}}
    (tmp_path / 'infer_cfg.json').write_text(json.dumps(info))
    with pytest.raises(BackendError, match="holds tools/quantize.py's INT8 model, not an f32 export: run it with "
                                           "backend='openvino' and precision='int8'"):
        exported_backend(ModelSpec(backend=kind, model_dir=str(tmp_path), threads=1))
    info['files'] = {'openvino_int8': {}}              # asked as INT8, an empty entry is no INT8 model
    (tmp_path / 'infer_cfg.json').write_text(json.dumps(info))
    with pytest.raises(BackendError, match='has no INT8 OpenVINO model'):
        exported_backend(ModelSpec(backend='openvino', model_dir=str(tmp_path), threads=1, precision='int8'))


@pytest.mark.parametrize('files, message', [
    (['model.onnx'], 'has no ONNX model'), ({'onnx': 'model.onnx'}, 'has no ONNX model'),
    ({'onnx': {'opset': 17}}, 'names no file of its own folder as model .None.'),
    ({'onnx': {'model': '../onnx/model.onnx'}}, "names no file of its own folder as model .'../onnx/model.onnx'."),
    ({'onnx': {'model': '/etc/hostname'}}, "names no file of its own folder as model .'/etc/hostname'."),
    ({'onnx': {'model': 5}}, 'names no file of its own folder as model .5.'),
])
@pytest.mark.parametrize('kind', ['onnx', 'openvino'])
def test_a_malformed_or_outward_files_entry_is_one_clear_error(kind, files, message, folders, tmp_path):
    """infer_cfg.json's ``files`` of a folder handed in: a wrong type is no model, and a name that is
    not a plain file name of the folder (a path to elsewhere) is refused before anything is read."""
    info = json.loads((Path(folders['onnx']) / 'infer_cfg.json').read_text())
    (tmp_path / 'onnx').mkdir()
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'onnx' / 'model.onnx').write_bytes((Path(folders['onnx']) / 'model.onnx').read_bytes())
    (tmp_path / 'folder' / 'infer_cfg.json').write_text(json.dumps(dict(info, files=files)))
    with pytest.raises(BackendError, match=message):
        exported_backend(ModelSpec(backend=kind, model_dir=str(tmp_path / 'folder'), threads=1))


def test_every_caller_opens_exported_folders_through_it(folders, found, tmp_path):
    """The factory's ``open_backend``, the auto cache and the benchmark tools open folders with the
    one opener; ``open_backend``'s OpenVINO keeps its compiled models in the cache."""
    assert auto_backend.exported_backend is backend_factory.exported_backend is mixed_speed.exported_backend
    assert benchmark.exported_backend is backend_factory.exported_backend
    opened = backend_factory.open_backend(ModelSpec(backend='onnx', model_dir=folders['onnx'], threads=1))[1]
    assert type(opened) is OnnxBackend
    cache = tmp_path / 'cache'
    openvino = backend_factory.open_backend(ModelSpec(backend='openvino', model_dir=folders['onnx'], threads=1,
                                                      overrides=['max_per_image=1']), cache_dir=str(cache))[1]
    assert type(openvino) is OpenVinoBackend and len(Predictor(openvino).detect(found[0]).scores) == 1
    assert any((cache / COMPILED).iterdir())
    buckets = exported_backend(ModelSpec(backend='openvino', model_dir=folders['onnx'], threads=1,
                                         overrides=['openvino_buckets=all']))
    assert buckets.buckets and buckets.static
    assert_finds_the_same(buckets, found)


def test_one_open_names_the_device_once(folders, monkeypatch):
    """A ``ModelSpec`` names its device when made (``config.device.device_name``) and what opens it reads
    the name as it is: the spelling given is named once, in the making, for a checkpoint and an exported
    folder; a spec made from a named one (``dataclasses.replace``) sees the name only (``on_gpu`` and
    ``gpu_number``, which take any spelling, ask of the name and are not counted)."""
    names = []

    def counted(given):
        names.append(given)
        return device.device_name(given)
    for module in list(sys.modules.values()):
        if module is not device and getattr(module, '__name__', '').startswith('solov2.') and \
                getattr(module, 'device_name', None) is device.device_name:
            monkeypatch.setattr(module, 'device_name', counted)
    for fields in ({'weights': SHIPPED_WEIGHTS, 'backend': 'dygraph'},
                   {'backend': 'onnx', 'model_dir': folders['onnx']}):
        names.clear()
        spec = ModelSpec(**fields, device=' CPU ', threads=1)
        made = dataclasses.asdict(spec)
        spec.check()
        assert dataclasses.asdict(spec) == made                # checking writes nothing into the spec
        opened = backend_factory.open_backend(spec)[1]
        assert names[0] == ' CPU ' and set(names[1:]) <= {'cpu'} and spec.device == 'cpu'
        assert not opened.network_on_gpu


def test_threads_are_resolved_once_when_the_spec_is_made(folders, monkeypatch):
    """``threads`` 0 becomes this process's share of the cores when the spec is made (among the processes
    ``paddle.distributed.launch`` started on the machine, ``PADDLE_LOCAL_SIZE``), and the opener runs the
    engine on that count: 8 cores and 4 processes, 2 each; a count given is kept."""
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)))
    monkeypatch.setenv('PADDLE_LOCAL_SIZE', '4')
    spec = ModelSpec(backend='onnx', model_dir=folders['onnx'])
    assert spec.threads == 2 and dataclasses.replace(spec, threads=3).threads == 3
    assert backend_factory.open_backend(spec)[1].options.intra_op_num_threads == 2


def test_export_its_check_and_quantization_open_engines_only_through_the_spec():
    """``export`` takes the Paddle model opened from a ``ModelSpec`` (``spec.dygraph_backend``), and its
    check and quantization open the exported folder through ``spec.exported_backend``: no engine class
    is built there with arguments of their own (the spec's threads reach every engine)."""
    from tests.helpers import REPO_DIR
    for path in ('model/inference/export.py', 'model/inference/quantize.py'):
        source = (REPO_DIR / path).read_text()
        built = [name for name in ('DygraphBackend', 'InferenceBackend', 'OnnxBackend', 'OpenVinoBackend')
                 if f'{name}(' in source]
        assert not built and 'exported_backend(' in source, (path, built)
