"""The one way to open an exported model folder by name (``export_cache.exported_backend``): the
engine each name means, with what it is given, for the demo's command line, the auto cache, the
benchmark tools and the API alike."""
import pytest

from solov2.model.inference import backends, export_cache
from solov2.model.inference.backend import BackendError
from solov2.tools import benchmark, mixed_speed


@pytest.fixture
def opened(monkeypatch):
    """The engines replaced by recorders: [(engine, args, keywords)] of each one opened."""
    calls = []
    for name in ('InferenceBackend', 'OnnxBackend', 'OpenVinoBackend'):
        monkeypatch.setattr(export_cache, name, lambda *args, _name=name, **kwargs: calls.append((_name, args, kwargs))
                            or _name)
    return calls


def test_each_name_opens_its_engine_with_what_it_is_given(opened):
    assert export_cache.exported_backend('inference', 'dir', 2, mkldnn=True, overrides=['a=1']) == 'InferenceBackend'
    assert export_cache.exported_backend('onnx', 'dir', 3, overrides=['a=1']) == 'OnnxBackend'
    assert export_cache.exported_backend('openvino', 'dir', 1, 'int8', ['b=2'], compiled='ov') == 'OpenVinoBackend'
    assert export_cache.exported_backend('inference', 'dir', 2, device='gpu:1', tensorrt=True) == 'InferenceBackend'
    assert export_cache.exported_backend('onnx', 'dir', 3, device='gpu') == 'OnnxBackend'
    assert opened == [('InferenceBackend', ('dir', 2, True, ['a=1'], 'cpu', False), {}),
                      ('OnnxBackend', ('dir', 3, ['a=1'], 'cpu'), {}),
                      ('OpenVinoBackend', ('dir', 1, 'int8', ['b=2']), {'compiled_cache': 'ov'}),
                      ('InferenceBackend', ('dir', 2, False, (), 'gpu:1', True), {}),
                      ('OnnxBackend', ('dir', 3, (), 'gpu'), {})]
    with pytest.raises(BackendError, match="unknown exported backend 'tensorrt' .*inference, onnx, openvino"):
        export_cache.exported_backend('tensorrt', 'dir')


def test_every_caller_opens_exported_folders_through_it(opened, tmp_path):
    assert backends.exported_backend is export_cache.exported_backend is mixed_speed.exported_backend
    assert benchmark.exported_backend is export_cache.exported_backend
    backends.exported_backend('openvino', str(tmp_path), 1, compiled=None)
    mixed_speed.fresh_backend('int8-per-size', {'f32': 'f32dir', 'int8': 'int8dir'}, 2)
    mixed_speed.fresh_backend('onnx', {'f32': 'f32dir', 'int8': 'int8dir'}, 2)
    export_cache._open('onnx', tmp_path / 'entry', 1, ['c=3'])
    assert [call[:2] for call in opened] == [('OpenVinoBackend', (str(tmp_path), 1, 'f32', ())),
                                             ('OpenVinoBackend', ('int8dir', 2, 'int8', ('openvino_buckets=none',))),
                                             ('OnnxBackend', ('f32dir', 2, (), 'cpu')),
                                             ('OnnxBackend', (str(tmp_path / 'entry'), 1, ['c=3'], 'cpu'))]
