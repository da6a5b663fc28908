"""The GPU set-up of the exported backends, as calls (no GPU here): Paddle Inference's config
(``place_inference``) and onnxruntime's providers (``onnx_providers``), through the functions
the backends use."""
import concurrent.futures
import json
import os
import re
import time

import numpy as np
import paddle.inference
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail
from paddle.base.proto import framework_pb2

from solov2.config import get_config, install
from solov2.config.install import cuda_device
from solov2.core import cache as core_cache
from solov2.core.cache import cache_entries
from solov2.core.errors import InputError, RunError
from solov2.model.inference import exported_folder, onnxruntime_backend
from solov2.model.inference.backend import BackendError
from solov2.model.inference.onnxruntime_backend import OnnxBackend, onnx_providers
from solov2.model.inference.paddle_inference_backend import InferenceBackend, place_inference
from solov2.model.inference.pipeline import Predictor, default_finish_workers
from solov2.model.inference.postprocess import InferenceParams
from solov2.model.inference.spec import ModelSpec, exported_backend

REAL_CONFIG = paddle.inference.Config
EVERY = ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']


def _parameters(name):
    """The parameter names of ``paddle.inference.Config.<name>``, read from the signature
    pybind11 writes on its first docstring line (``name(self: ..., a: int, b: int = 0) -> None``)."""
    line = getattr(REAL_CONFIG, name).__doc__.splitlines()[0]
    inside = re.search(r'\((.*)\) ->', line).group(1)
    return [part.split(':')[0].strip() for part in re.split(r', (?=\w+:)', inside)][1:]


class RecordingConfig:
    """Stands in for ``paddle.inference.Config``: notes every call, after checking it against the
    real Config's method (the name exists, no more positional arguments than it takes, each
    keyword one of its parameters), so a call the real one would refuse fails here too."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        parameters = _parameters(name)

        def call(*args, **kwargs):
            assert len(args) <= len(parameters), (name, args, parameters)
            assert set(kwargs) <= set(parameters[len(args):]), (name, kwargs, parameters)
            self.calls.append((name, args, kwargs))
        return call


class Precision:
    Half, Float32 = 'half', 'float32'


def test_paddle_inference_on_the_cpu_disables_the_gpu():
    config = RecordingConfig()
    place_inference(config, 'cpu', False, (64, 1333), Precision)
    assert config.calls == [('disable_gpu', (), {})]
    with pytest.raises(BackendError, match='TensorRT needs a GPU'):
        place_inference(RecordingConfig(), 'cpu', True, (64, 1333), Precision)


@pytest.mark.parametrize('device, selected, number', [('gpu', None, 0), ('gpu:1', None, 1), ('gpu', '1', 1),
                                                      ('gpu:0', '1', 0)])
def test_paddle_inference_on_a_gpu_with_and_without_tensorrt(monkeypatch, device, selected, number):
    """On GPU N, or under paddle.distributed.launch on the process's own GPU (FLAGS_selected_gpus)."""
    monkeypatch.delenv('FLAGS_selected_gpus', raising=False)
    if selected:
        monkeypatch.setenv('FLAGS_selected_gpus', selected)
    config = RecordingConfig()
    place_inference(config, device, False, (64, 1333), Precision)
    assert config.calls == [('enable_use_gpu', (256, number), {})]
    config = RecordingConfig()
    place_inference(config, device, True, (64, 1333), Precision)
    (gpu, trt, shapes) = config.calls
    assert gpu == ('enable_use_gpu', (256, number), {}) and trt[0] == 'enable_tensorrt_engine'
    assert trt[2]['precision_mode'] == 'half' and trt[2]['use_calib_mode'] is False
    low, high, best = shapes[1]
    assert low['image'] == [1, 3, 64, 64] and best['image'] == [1, 3, 1333, 1333]
    assert high['image'] == [8, 3, 1333, 1333]          # batches of up to 8, not 1


def test_the_real_paddle_inference_config_stays_on_the_cpu():
    import paddle.inference as paddle_infer
    config = paddle_infer.Config()
    place_inference(config, 'cpu', False, (64, 1333), paddle_infer.PrecisionType)
    assert not config.use_gpu()


def test_onnxruntime_providers(monkeypatch):
    monkeypatch.delenv('FLAGS_selected_gpus', raising=False)
    assert onnx_providers('cpu', ['CPUExecutionProvider']) == ['CPUExecutionProvider']
    assert onnx_providers('gpu:2', ['CUDAExecutionProvider', 'CPUExecutionProvider'])[0][1]['device_id'] == 2
    monkeypatch.setenv('FLAGS_selected_gpus', '1')     # paddle.distributed.launch's second process
    assert onnx_providers('gpu', ['CUDAExecutionProvider', 'CPUExecutionProvider']) == [
        ('CUDAExecutionProvider', {'device_id': 1, 'cudnn_conv_algo_search': 'HEURISTIC'}), 'CPUExecutionProvider']
    with pytest.raises(BackendError, match='no CUDA provider .*onnxruntime-gpu'):
        onnx_providers('gpu', ['CPUExecutionProvider'])
    monkeypatch.setattr(onnxruntime_backend, 'onnxruntime_install_problem', lambda: 'both wheels are installed')
    with pytest.raises(BackendError, match='no CUDA provider .*: both wheels are installed'):     # the cause first
        onnx_providers('gpu', ['CPUExecutionProvider'])


def test_tensorrt_through_onnxruntime_comes_first_with_a_profile_of_batches_and_sizes(monkeypatch):
    monkeypatch.setenv('FLAGS_selected_gpus', '1')
    every = ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
    (trt, options), cuda, cpu = onnx_providers('gpu', every, True, (64, 1333), '/cache/compiled')
    assert trt == 'TensorrtExecutionProvider' and cuda[0] == 'CUDAExecutionProvider' and cpu == 'CPUExecutionProvider'
    assert options == {'device_id': 1, 'trt_fp16_enable': True, 'trt_profile_min_shapes': 'image:1x3x64x64',
                       'trt_profile_opt_shapes': 'image:1x3x1333x1333', 'trt_profile_max_shapes': 'image:8x3x1333x1333',
                       'trt_engine_cache_enable': True, 'trt_engine_cache_path': '/cache/compiled'}
    assert 'trt_engine_cache_path' not in onnx_providers('gpu', every, True, (64, 1333))[0][1]
    with pytest.raises(BackendError, match='no TensorRT provider .*TensorRT libraries'):
        onnx_providers('gpu', every[1:], True, (64, 1333))
    monkeypatch.setattr(onnxruntime_backend, 'onnxruntime_install_problem', lambda: None)
    with pytest.raises(BackendError, match='did not start its TensorRT provider'):
        onnxruntime_backend.check_providers(FellBack(None, None, None, started=every[1:]),
                                            onnx_providers('gpu', every, True, (64, 1333)), '1.20')
    onnxruntime_backend.check_providers(FellBack(None, None, None, started=every),
                                        onnx_providers('gpu', every, True, (64, 1333)), '1.20')


def _fake_export(folder, model=b'', files=None):
    """An exported folder of config 9 (inputs 64..640 px) holding ``model`` as model.onnx (or the
    ``files`` named, by format)."""
    folder.mkdir()
    (folder / 'model.onnx').write_bytes(model)
    (folder / 'infer_cfg.json').write_text(json.dumps({
        'config': 9, 'num_classes': 4, 'class_names': ['a', 'b', 'c', 'd'], 'test_short': 320, 'test_max': 320,
        'postprocess': InferenceParams.from_config(get_config(9)).to_json(),
        'input': {'min_size': 64, 'max_size': 640}, 'files': files or {'onnx': {'model': 'model.onnx'}}}))
    return str(folder)


def _onnx_model(weight: float) -> bytes:
    """A one-convolution ONNX graph ``image`` -> ``scores`` whose only weight is ``weight``: two
    of them differ in their weights' bytes only (the names onnxruntime keys TensorRT engines by)."""
    from onnx import TensorProto, helper, numpy_helper
    conv = helper.make_node('Conv', ['image', 'w'], ['scores'])
    graph = helper.make_graph([conv], 'g', [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info('scores', TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.full((1, 1, 1, 1), weight, np.float32), 'w')])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]).SerializeToString()


def test_the_onnx_backend_asks_this_onnxruntime_for_its_cuda_provider(tmp_path):
    """This onnxruntime (CPU) has none: a GPU device is refused in one line, before loading."""
    import onnxruntime
    folder = _fake_export(tmp_path / 'export')
    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has the CUDA provider')
    with pytest.raises(BackendError, match='no CUDA provider'):
        OnnxBackend(folder, device='gpu')
    with pytest.raises(BackendError, match='cannot load'):         # the CPU goes on to load the (empty) file
        OnnxBackend(folder, device='cpu')
    with pytest.raises(BackendError, match='openvino backend runs on the CPU here'):
        exported_backend(ModelSpec(backend='openvino', model_dir=folder, device='gpu:0'))


class FellBack:
    """Stands in for an ``onnxruntime.InferenceSession`` whose CUDA provider did not start (or
    that started ``started``): notes the providers asked and whether its fallback was disabled;
    its ``run`` fails as a provider does (``EPFail``)."""

    def __init__(self, path, options, providers, started=('CPUExecutionProvider',)):
        self.asked, self.started, self.falls_back = providers, list(started), True

    def get_providers(self):
        return self.started

    def get_inputs(self):
        return []

    def disable_fallback(self):
        self.falls_back = False

    def run(self, names, feed):
        raise EPFail('[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP execution context enqueue failed.')


def _on_a_gpu(monkeypatch, opened):
    """onnxruntime as if on a GPU with TensorRT: each session a ``FellBack`` that started every
    provider, kept in ``opened`` after the libraries loaded (noted there as 'preload_dlls' and
    'tensorrt')."""
    import onnxruntime
    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: EVERY)
    monkeypatch.setattr(onnxruntime, 'preload_dlls', lambda: opened.append('preload_dlls'), raising=False)
    monkeypatch.setattr(onnxruntime_backend.importlib, 'import_module', lambda name: opened.append(name))
    monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda path, options, providers: opened.append(
        Building(path, options, providers)) or opened[-1])


PROGRAM = framework_pb2.ProgramDesc(blocks=[framework_pb2.BlockDesc(idx=0, parent_idx=-1)]).SerializeToString()


def test_each_model_gets_its_own_tensorrt_engines(tmp_path, monkeypatch):
    """Two exports of one config with other weights have the same names (all that onnxruntime
    and Paddle Inference key an engine by) but each its own engine folder; the same bytes share one."""
    import onnx
    first, second = _onnx_model(1.0), _onnx_model(2.0)
    names = [[n.name for n in (*m.graph.input, *m.graph.initializer)] + [o for n in m.graph.node for o in n.output]
             for m in map(onnx.load_from_string, (first, second))]
    assert names[0] == names[1] and first != second
    opened = []
    _on_a_gpu(monkeypatch, opened)
    for name, model in (('a', first), ('b', second), ('c', first)):
        OnnxBackend(_fake_export(tmp_path / name, model), device='gpu', tensorrt=True, engine_cache=str(tmp_path))
    assert opened[:2] == ['preload_dlls', 'tensorrt']      # CUDA, cuDNN and TensorRT loaded before the session
    opened = [session for session in opened if isinstance(session, FellBack)]
    a, b, c = (session.asked[0][1]['trt_engine_cache_path'] for session in opened)
    assert a != b and os.path.basename(a).startswith('.' + os.path.basename(c)) and os.path.dirname(c) == str(tmp_path)
    paddle_files = {'paddle': {'model': 'model.pdmodel', 'params': 'model.pdiparams'}}
    configs = []
    monkeypatch.setattr(paddle.inference, 'Config', lambda *files: configs.append(RecordingConfig()) or configs[-1])
    for name, weights in (('pa', b'1'), ('pb', b'2')):
        folder = _fake_export(tmp_path / name, files=paddle_files)
        (tmp_path / name / 'model.pdmodel').write_bytes(PROGRAM)     # one that parses (parse_program)
        (tmp_path / name / 'model.pdiparams').write_bytes(weights)
        with pytest.raises(BackendError, match='cannot load'):       # no predictor on this CPU build
            InferenceBackend(folder, device='gpu', tensorrt=True, engine_cache=str(tmp_path))
    folders = [dict((name, args) for name, args, _ in config.calls)['set_optim_cache_dir'][0] for config in configs]
    assert folders[0] != folders[1] and {a, b}.isdisjoint(folders)
    assert all(dict((name, kw) for name, _, kw in config.calls)['enable_tensorrt_engine']['use_static']
               for config in configs)


class Building(FellBack):
    """A session whose TensorRT provider builds its engine while it opens (explicit profile): where it has an
    engine cache it writes ``model.engine`` and its ``model.profile`` there unless one is there (counted in
    ``built``), ``slow`` seconds."""
    built, slow = [], 0.0

    def __init__(self, path, options, providers, started=EVERY):
        super().__init__(path, options, providers, started)
        folder = providers[0][1].get('trt_engine_cache_path') if isinstance(providers[0], tuple) else None
        engine = os.path.join(folder or '', 'model.engine')
        if folder and not os.path.exists(engine):
            time.sleep(self.slow)
            for path in (engine, engine.replace('.engine', '.profile')):
                open(path, 'w').close()
            self.built.append(engine)


def test_tensorrt_engines_are_built_once_moved_into_place_whole_and_kept_per_tensorrt_and_gpu(tmp_path, monkeypatch):
    """Two processes (here threads) opening one model build its engine once: the first in a temporary
    folder moved into place with its manifest, the other waits and loads it; a failed open leaves
    nothing; another GPU or TensorRT gets its own folder; tools/cache.py lists it, stale with another runtime."""
    opened, cache = [], tmp_path / 'cache'
    _on_a_gpu(monkeypatch, opened)
    import onnxruntime
    monkeypatch.setattr(Building, 'built', [])
    monkeypatch.setattr(Building, 'slow', 0.3)
    monkeypatch.setattr(onnxruntime, 'InferenceSession', Building)
    monkeypatch.setattr(exported_folder, 'cuda_device', lambda number: 'NVIDIA L4 sm89')
    folder = _fake_export(tmp_path / 'export', _onnx_model(1.0))

    def open_model():
        return OnnxBackend(folder, device='gpu', tensorrt=True, engine_cache=str(cache))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: open_model(), range(2))
    assert len(Building.built) == 1 and '.tmp' in Building.built[0]          # one build, in a temporary folder
    entries = cache_entries(str(cache))
    assert [(e.path.parent, e.state, e.what) for e in entries] == [
        (cache, 'current', 'TensorRT none engines of onnxruntime on NVIDIA L4 sm89')]
    asked = {os.path.basename(backend.session.asked[0][1]['trt_engine_cache_path']) for backend in (first, second)}
    assert entries[0].path.name in asked and sorted(p.name for p in cache.iterdir()) == [
        f'.{entries[0].path.name}.lock', entries[0].path.name]                # its own lock beside it
    assert sorted(p.name for p in entries[0].path.iterdir()) == ['cache.json', 'model.engine', 'model.profile']
    monkeypatch.setattr(exported_folder, 'cuda_device', lambda number: 'NVIDIA A100 sm80')
    monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda *args, **kwargs: 1 / 0)
    with pytest.raises(BackendError, match='cannot load'):
        open_model()
    assert sorted(p.name for p in cache.iterdir()) == [f'.{entries[0].path.name}.lock', entries[0].path.name]
    monkeypatch.setattr(onnxruntime, 'InferenceSession', Building)
    open_model()
    monkeypatch.setattr(exported_folder, 'installed_wheels', lambda names: ['tensorrt-cu13'])
    open_model()
    assert len(Building.built) == 3 and len(cache_entries(str(cache))) == 3     # per GPU, per TensorRT
    monkeypatch.setattr(core_cache, 'package_version', lambda name: 'another')
    assert {entry.state for entry in cache_entries(str(cache))} == {'stale'}


def test_cuda_device_names_the_gpu_and_its_compute_capability(monkeypatch):
    """Through the driver's own library (a fake here); None without one or when a call fails."""
    class Driver:
        def __init__(self, path, no_device=False):
            self.cuInit = lambda flags: 100 if no_device else 0       # CUDA_ERROR_NO_DEVICE

        def cuDeviceGet(self, device, number):
            device._obj.value = number
            return 0

        def cuDeviceGetAttribute(self, value, attribute, device):
            value._obj.value = {75: 8, 76: 9}[attribute]
            return 0

        def cuDeviceGetName(self, name, size, device):
            name.value = b'NVIDIA L4'
            return 0
    assert cuda_device(0, 'libcuda-not-here.so.1') is None
    monkeypatch.setattr(install.ctypes, 'CDLL', Driver)
    assert cuda_device(1) == 'NVIDIA L4 sm89'
    monkeypatch.setattr(install.ctypes, 'CDLL', lambda path: Driver(path, no_device=True))
    assert cuda_device(0) is None


def test_a_provider_failure_during_a_run_is_an_error_naming_it(tmp_path, monkeypatch):
    """No session falls back after start (onnxruntime's own run would go on with CUDA or the CPU)."""
    opened = []
    _on_a_gpu(monkeypatch, opened)
    backend = OnnxBackend(_fake_export(tmp_path / 'export'), device='gpu', tensorrt=True)
    assert not opened[-1].falls_back
    with pytest.raises(RunError, match='TensorrtExecutionProvider failed during a run .*EP_FAIL'):
        backend.run(np.zeros((1, 3, 64, 64), np.float32))


def test_a_real_session_is_opened_without_its_fallback(tmp_path):
    """The onnxruntime installed here: ``disable_fallback`` is what its ``run`` reads."""
    backend = OnnxBackend(_fake_export(tmp_path / 'export', _onnx_model(1.0)), device='cpu')
    assert backend.session._enable_fallback is False


def test_onnxruntime_threads_sleep_between_runs(tmp_path):
    """Spinning, they took the cores from the pipeline's pre- and post-processing workers."""
    session = OnnxBackend(_fake_export(tmp_path / 'export', _onnx_model(1.0)), device='cpu').session
    assert session.get_session_options().get_session_config_entry('session.intra_op.allow_spinning') == '0'


def test_what_the_tensorrt_profile_cannot_take_is_refused_at_open(tmp_path, monkeypatch):
    """Batches over 8 (the service's max_batch, a command's batch_size) and a resize past the
    export's largest side, each in one line naming the option; without TensorRT any batch. Through
    TensorRT the engine's label names its float16."""
    _on_a_gpu(monkeypatch, [])
    folder = _fake_export(tmp_path / 'export')
    backend = OnnxBackend(folder, device='gpu', tensorrt=True)
    with pytest.raises(InputError, match='up to 8 pictures .*not 9: pass max_batch=8 or less'):
        backend.compile_ahead(9)
    with pytest.raises(InputError, match='not 12: pass batch_size=8'):
        next(Predictor(backend).run_pictures([], lambda item: item, batch_size=12))
    with pytest.raises(InputError, match='not 9: pass batch_size=8'):
        backend.batch_regions([np.zeros((3, 64, 64), np.float32)] * 9)
    backend.compile_ahead(8)
    assert backend.label == 'onnx fp16'                          # what demo, eval and /v1/model name
    OnnxBackend(folder, device='gpu').compile_ahead(9)
    assert OnnxBackend(folder, device='gpu').label == 'onnx'
    with pytest.raises(BackendError, match="test_max=700 gives inputs up to 704 px, above the 640 of the TensorRT "
                                           "profile.*overrides='test_max=640'"):
        OnnxBackend(folder, device='gpu', tensorrt=True, overrides=['test_max=700'])


def test_a_session_that_fell_back_to_the_cpu_is_refused_naming_the_fix(tmp_path, monkeypatch):
    import onnxruntime
    folder = _fake_export(tmp_path / 'export')
    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: ['CUDAExecutionProvider',
                                                                         'CPUExecutionProvider'])
    monkeypatch.setattr(onnxruntime, 'InferenceSession', FellBack)
    monkeypatch.setattr(onnxruntime_backend, 'onnxruntime_install_problem', lambda: None)
    with pytest.raises(BackendError, match='fell back to the CPU: its CUDA provider did not start. Install the CUDA '
                                           'and cuDNN libraries'):
        OnnxBackend(folder, device='gpu')
    assert OnnxBackend(folder, device='cpu').session.asked == ['CPUExecutionProvider']
    monkeypatch.setattr(onnxruntime_backend, 'nvidia_driver', lambda: '535.104.05')      # too old for CUDA 13
    monkeypatch.setattr(onnxruntime_backend, 'onnxruntime_cuda', lambda: '13.0')        # what it was built for
    with pytest.raises(BackendError, match="or use the CPU. This machine's NVIDIA driver is 535.104.05; "
                                           'this onnxruntime-gpu is built for CUDA 13.0, which needs driver 580'):
        OnnxBackend(folder, device='gpu')
    monkeypatch.setattr(onnxruntime_backend, 'cudnn_install_problem', lambda: 'two cuDNN wheels')
    with pytest.raises(BackendError, match='did not start. two cuDNN wheels$'):
        OnnxBackend(folder, device='gpu')
    monkeypatch.setattr(onnxruntime_backend, 'onnxruntime_install_problem', lambda: 'both are installed')
    with pytest.raises(BackendError, match='did not start. both are installed'):
        OnnxBackend(folder, device='gpu:0')


def test_tensorrt_needs_paddle_inference_or_onnxruntime_on_a_named_gpu(tmp_path):
    from solov2.model.inference.backend_factory import open_backend
    from solov2.model.inference.spec import ModelSpec
    folder = _fake_export(tmp_path / 'export')
    ModelSpec(backend='onnx', model_dir=folder, device='gpu', tensorrt=True).check()        # allowed
    with pytest.raises(BackendError, match='tensorrt.* needs .*inference.* and a GPU'):
        open_backend(ModelSpec(backend='onnx', model_dir=folder, tensorrt=True))
    with pytest.raises(BackendError, match='tensorrt.* needs .*inference.* and a GPU'):
        open_backend(ModelSpec(backend='inference', model_dir=folder, device='cpu', tensorrt=True))


def test_the_recording_config_refuses_what_the_real_one_would():
    with pytest.raises(AttributeError):
        RecordingConfig().enable_tensorrt_engines()
    with pytest.raises(AssertionError):
        RecordingConfig().enable_tensorrt_engine(precision=Precision.Half)
    with pytest.raises(AssertionError):
        RecordingConfig().enable_use_gpu(256, 0, Precision.Half, 1)


def test_tensorrt_refuses_a_paddle_3_json_model(tmp_path, monkeypatch):
    """Paddle Inference's Config TensorRT engine takes .pdmodel programs only: a .json (PIR)
    export with tensorrt is one line, before any predictor is built."""
    from solov2.model.inference import paddle_inference_backend
    folder = tmp_path / 'export'
    folder.mkdir()
    for name in ('model.json', 'model.pdiparams'):
        (folder / name).write_bytes(b'')
    (folder / 'infer_cfg.json').write_text(json.dumps({
        'config': 9, 'num_classes': 4, 'class_names': ['a', 'b', 'c', 'd'], 'test_short': 320, 'test_max': 320,
        'postprocess': InferenceParams.from_config(get_config(9)).to_json(),
        'input': {'min_size': 64, 'max_size': 640},
        'files': {'paddle': {'model': 'model.json', 'params': 'model.pdiparams'}}}))
    monkeypatch.setattr(paddle_inference_backend, 'paddle_major', lambda: 3)
    with pytest.raises(BackendError, match='Paddle 3 \\(PIR\\) model, which TensorRT'):
        paddle_inference_backend.InferenceBackend(str(folder), device='gpu', tensorrt=True)


def test_an_engine_on_a_gpu_post_processes_with_the_cores_the_network_leaves_free(tmp_path, monkeypatch):
    """Its outputs come back to the host: the CPU's finishing workers are sized for a network on
    the GPU (all cores but three), not the CPU's share (a quarter)."""
    import onnxruntime

    folder = _fake_export(tmp_path / 'export')
    every = ['CUDAExecutionProvider', 'CPUExecutionProvider']
    monkeypatch.setattr(onnxruntime, 'get_available_providers', lambda: every)
    monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda path, options, providers: FellBack(
        path, options, providers, started=every))
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(16)), raising=False)
    on_gpu = Predictor(OnnxBackend(folder, device='gpu'))
    assert on_gpu.queue.finishing.workers == default_finish_workers(network_on_gpu=True) == 13
    assert Predictor(OnnxBackend(folder, device='cpu')).queue.finishing.workers == default_finish_workers() == 4


NO_TENSORRT = '(Unavailable) Load tensorrt api getInferLibVersion failed'     # Paddle's dynload, GPU wheel alone


def _no_tensorrt():
    """``paddle.inference.get_trt_runtime_version`` of a paddlepaddle-gpu wheel without TensorRT's libraries."""
    raise RuntimeError(NO_TENSORRT)


def test_without_tensorrt_export_inference_and_auto_still_work(tmp_path, monkeypatch):
    """TensorRT's version is asked only where TensorRT runs with an engine cache: a GPU wheel without
    TensorRT (the CPU wheel answers 0.0.0) exports, opens ``inference`` and ``auto``; where it is asked, the
    failure is one line naming the library and the fix, not a damaged export."""
    from solov2.config.sidecar import resolve_config
    from solov2.core.paths import SHIPPED_WEIGHTS
    from solov2.model.inference.backend_factory import open_backend
    from solov2.model.inference.dygraph_backend import DygraphBackend
    from solov2.model.inference.export import export
    monkeypatch.setattr(paddle.inference, 'get_trt_runtime_version', _no_tensorrt)
    number, cfg = resolve_config(SHIPPED_WEIGHTS, None, ())
    folder = tmp_path / 'export'
    export(DygraphBackend(cfg, SHIPPED_WEIGHTS, 'cpu'), number, folder, fmt='paddle')     # its check opens inference
    batch = np.zeros((1, 3, 64, 64), np.float32)
    assert len(exported_backend(ModelSpec(backend='inference', model_dir=str(folder))).run_numpy(batch)) == 3
    assert len(open_backend(ModelSpec(SHIPPED_WEIGHTS, backend='auto'))[1].run_numpy(batch)) == 3
    monkeypatch.setattr(paddle.inference, 'Config', lambda *files: RecordingConfig())
    with pytest.raises(BackendError, match=r'^Paddle Inference cannot load TensorRT \(\(Unavailable\) Load tensorrt '
                                           r'api .*\): install the TensorRT .*libnvinfer.*or run without tensorrt$'):
        InferenceBackend(_paddle26_export(tmp_path / 'pdmodel'), device='gpu', tensorrt=True,
                         engine_cache=str(tmp_path / 'cache'))
    assert not (tmp_path / 'cache').exists() or not list((tmp_path / 'cache').iterdir())


def _paddle26_export(folder, weights=b'1'):
    """A Paddle 2.6 (.pdmodel) export of config 9 whose program parses (``parse_program``) and holds nothing."""
    _fake_export(folder, files={'paddle': {'model': 'model.pdmodel', 'params': 'model.pdiparams'}})
    (folder / 'model.pdmodel').write_bytes(PROGRAM)
    (folder / 'model.pdiparams').write_bytes(weights)
    return str(folder)


def _cache_names(cache) -> list:
    return sorted(path.name for path in cache.iterdir()) if cache.exists() else []


def test_a_tensorrt_entry_is_made_only_when_tensorrt_ran_and_wrote_its_engines(tmp_path, monkeypatch):
    """onnxruntime dropping its TensorRT provider (libnvinfer missing) is one line and leaves nothing in the
    cache; a session on TensorRT that wrote no engine leaves no entry either (it would be taken as built)."""
    import onnxruntime
    _on_a_gpu(monkeypatch, [])
    monkeypatch.setattr(onnxruntime_backend, 'onnxruntime_install_problem', lambda: None)
    folder, cache = _fake_export(tmp_path / 'export'), tmp_path / 'cache'
    monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda path, options, providers: Building(
        path, options, providers, started=EVERY[1:]))
    with pytest.raises(BackendError, match='did not start its TensorRT provider'):
        OnnxBackend(folder, device='gpu', tensorrt=True, engine_cache=str(cache))
    assert _cache_names(cache) == [] and cache_entries(str(cache)) == []
    monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda path, options, providers: FellBack(
        path, options, providers, started=EVERY))                           # TensorRT started, no engine written
    assert OnnxBackend(folder, device='gpu', tensorrt=True, engine_cache=str(cache)).session.started == EVERY
    assert _cache_names(cache) == []
    monkeypatch.setattr(onnxruntime, 'InferenceSession', Building)
    OnnxBackend(folder, device='gpu', tensorrt=True, engine_cache=str(cache))
    assert [entry.state for entry in cache_entries(str(cache))] == ['current']


def test_the_lock_is_the_entrys_own_one_model_building_holds_up_no_other(tmp_path, monkeypatch):
    """While one model's engines build (under its entry's lock), another model's open goes on."""
    import threading

    import onnxruntime
    _on_a_gpu(monkeypatch, [])
    release, building = threading.Event(), threading.Event()

    def session(path, options, providers):
        if 'slow' in str(path):
            building.set()
            assert release.wait(30)
        return Building(path, options, providers)
    monkeypatch.setattr(onnxruntime, 'InferenceSession', session)
    cache = str(tmp_path / 'cache')
    slow, quick = _fake_export(tmp_path / 'slow', _onnx_model(1.0)), _fake_export(tmp_path / 'quick', _onnx_model(2.0))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(OnnxBackend, slow, device='gpu', tensorrt=True, engine_cache=cache)
        assert building.wait(30)
        second = pool.submit(OnnxBackend, quick, device='gpu', tensorrt=True, engine_cache=cache)
        try:
            second.result(timeout=20)           # under one lock for the whole cache it waited for the slow build
        finally:
            release.set()
        first.result(timeout=30)
    assert [entry.state for entry in cache_entries(cache)] == ['current', 'current']


def test_a_tensorrt_provider_failure_at_open_says_what_failed_and_what_to_do(tmp_path, monkeypatch):
    """onnxruntime's TensorRT provider refusing the graph (EPFail, in its words) is not a damaged export."""
    import onnxruntime
    _on_a_gpu(monkeypatch, [])
    words = ('[ONNXRuntimeError] : 11 : EP_FAIL : User needs to provide all the dynamic shape inputs with '
             'associated profiles if they want to explicitly set profiles through provider options.')

    def refused(path, options, providers):
        raise EPFail(words)
    monkeypatch.setattr(onnxruntime, 'InferenceSession', refused)
    with pytest.raises(BackendError, match=r"^onnxruntime's TensorRT provider could not open .*model.onnx \(\[ONNX"
                                           r'.*User needs to provide all the dynamic shape inputs.*\); an input of '
                                           r'a TensorRT subgraph has no profile \(the profile covers image\): run '
                                           r'without tensorrt'):
        OnnxBackend(_fake_export(tmp_path / 'export'), device='gpu', tensorrt=True)
    with pytest.raises(BackendError, match=r"^onnxruntime's CUDA provider could not open .*: check the CUDA"):
        monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda *args, **kwargs: (_ for _ in ()).throw(
            EPFail('[ONNXRuntimeError] : 11 : EP_FAIL : CUDA failure 35: CUDA driver version is insufficient')))
        OnnxBackend(_fake_export(tmp_path / 'cuda'), device='gpu')
    monkeypatch.setattr(onnxruntime, 'InferenceSession', lambda *args, **kwargs: 1 / 0)
    with pytest.raises(BackendError, match='cannot load .*damaged'):       # anything else: the file
        OnnxBackend(_fake_export(tmp_path / 'damaged'), device='gpu', tensorrt=True)


def test_the_regions_graph_never_meets_tensorrt_batches_hold_one_size(tmp_path, monkeypatch):
    """Its output shape follows the values of ``regions`` (int64 [B, 2]): TensorRT could take it as a shape
    tensor, whose profile onnxruntime applies to the values. Through TensorRT the onnx engine runs batches of
    one size: a mixed open (the service's --max-padding) opens no regions graph, pictures of several sizes are
    shared into batches of one size each, a batch of several is refused in one line, and the profile names the
    plain graph's image only. Without TensorRT the regions graph mixes them as before."""
    from solov2.model.inference.backend import share_batches
    opened = []
    _on_a_gpu(monkeypatch, opened)
    folder = _fake_export(tmp_path / 'export', files={'onnx': {'model': 'model.onnx',
                                                               'regions_model': 'model_regions.onnx'}})
    (tmp_path / 'export' / 'model_regions.onnx').write_bytes(b'')
    engine = OnnxBackend(folder, device='gpu', tensorrt=True)
    engine.compile_ahead(8, mixed=True)
    sessions = [session for session in opened if isinstance(session, FellBack)]
    assert len(sessions) == 1 and not engine.mixes_sizes and set(engine.sessions) == {False}
    assert [sessions[0].asked[0][1][f'trt_profile_{which}_shapes'] for which in ('min', 'opt', 'max')] == [
        'image:1x3x64x64', 'image:1x3x640x640', 'image:8x3x640x640']
    sizes = [(96, 128), (128, 128), (96, 128), (128, 96)]
    assert share_batches(sizes, engine, max_batch=8, max_padding=1.0) == [[0, 2], [1], [3]]
    with pytest.raises(InputError, match='runs one input size a batch'):
        engine.batch_regions([np.zeros((3, h, w), np.float32) for h, w in sizes[:2]])
    with pytest.raises(BackendError, match='regions graph does not run through TensorRT'):
        engine.run(np.zeros((2, 3, 128, 128), np.float32), np.asarray([[96, 128], [128, 128]], np.int64))
    assert len([session for session in opened if isinstance(session, FellBack)]) == 1
    plain = OnnxBackend(folder, device='gpu')
    plain.compile_ahead(8, mixed=True)
    assert plain.mixes_sizes and set(plain.sessions) == {False, True}
    assert share_batches(sizes, plain, max_batch=8, max_padding=1.0) == [[0, 1, 2, 3]]


def test_paddle_inference_tensorrt_takes_ppdetections_subgraph_size_and_names_a_missing_shape_range(
        tmp_path, monkeypatch):
    """min_subgraph_size 60, PaddleDetection's for SOLOv2 (3 left subgraph inputs without a shape range);
    its "dynamic shape info not set" is said as such, not as a damaged export."""
    config = RecordingConfig()
    place_inference(config, 'gpu', True, (64, 1333), Precision)
    assert dict((name, kw) for name, _, kw in config.calls)['enable_tensorrt_engine']['min_subgraph_size'] == 60
    from ppdet.engine.export_utils import TRT_MIN_SUBGRAPH
    assert TRT_MIN_SUBGRAPH['SOLOv2'] == 60
    monkeypatch.setattr(paddle.inference, 'Config', lambda *files: RecordingConfig())
    monkeypatch.setattr(paddle.inference, 'create_predictor', lambda config: (_ for _ in ()).throw(RuntimeError(
        '\n\n----------------------\nError Message Summary:\n----------------------\nPreconditionNotMetError: some '
        'trt inputs dynamic shape info not set, check the INFO log above for more details.')))
    with pytest.raises(BackendError, match=r"^Paddle Inference's TensorRT found a subgraph input without a shape "
                                           r'range \(PreconditionNotMetError: some trt inputs .*; subgraphs of at '
                                           r'least 60 ops .*min_subgraph_size\): run without tensorrt'):
        InferenceBackend(_paddle26_export(tmp_path / 'export'), device='gpu', tensorrt=True)


def test_tensorrt_engines_follow_the_tensorrt_loaded_and_go_stale_with_the_model_not_the_source(
        tmp_path, monkeypatch):
    """A system TensorRT (no wheel) upgraded gets engines of its own; the entry goes stale when the model
    file changes, not when the toolkit's source does (a code update kept 100-300 MB engines)."""
    import onnxruntime
    _on_a_gpu(monkeypatch, [])
    monkeypatch.setattr(onnxruntime, 'InferenceSession', Building)
    monkeypatch.setattr(exported_folder, 'installed_wheels', lambda names: [])
    folder, cache = _fake_export(tmp_path / 'export', _onnx_model(1.0)), tmp_path / 'cache'
    for version in ('10.13.3', '10.14.1'):
        monkeypatch.setattr(onnxruntime_backend, 'tensorrt_version', lambda: version)
        OnnxBackend(folder, device='gpu', tensorrt=True, engine_cache=str(cache))
    assert sorted(entry.what.split()[1] for entry in cache_entries(str(cache))) == ['10.13.3', '10.14.1']
    core_cache.source_hash.cache_clear()
    monkeypatch.setattr(core_cache, 'source_hash', lambda: 'another version of the toolkit')
    assert {entry.state for entry in cache_entries(str(cache))} == {'current'}
    model = tmp_path / 'export' / 'model.onnx'
    model.write_bytes(_onnx_model(3.0))
    os.utime(model, ns=(1, 1))
    assert {entry.state for entry in cache_entries(str(cache))} == {'stale'}
