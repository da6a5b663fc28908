"""config.device and model.runtime.resolve_device: devices named once ('cpu', 'gpu', 'gpu:N'),
so 'gpu:0' is a GPU wherever 'gpu' is, and a GPU this Paddle cannot use fails in one line."""
import pytest

from solov2.config.device import device_name, gpu_number, on_gpu
from solov2.core.errors import InputError
from solov2.model import runtime
from solov2.tools import train


@pytest.mark.parametrize('given, name, gpu', [('cpu', 'cpu', False), (' CPU ', 'cpu', False), ('gpu', 'gpu', True),
                                              ('GPU:0', 'gpu:0', True), ('gpu:3', 'gpu:3', True)])
def test_device_names_are_normalised(given, name, gpu):
    assert device_name(given) == name and on_gpu(given) is gpu


@pytest.mark.parametrize('bad', ['cuda', 'gpu0', 'gpu:', 'gpu:-1', 'xpu:0', 'cpu:0', ''])
def test_other_names_are_refused_naming_the_choices(bad):
    with pytest.raises(InputError, match="'cpu', 'gpu' or 'gpu:N'"):
        device_name(bad)


@pytest.mark.parametrize('selected, plain', [(None, 0), ('1', 1), ('3,2', 3), ('', 0)])
def test_a_plain_gpu_is_the_launcher_s_gpu_of_this_process(monkeypatch, selected, plain):
    """Under paddle.distributed.launch (FLAGS_selected_gpus: this process's GPUs, numbered among
    CUDA_VISIBLE_DEVICES) 'gpu' is the process's own GPU; 'gpu:N' stays N."""
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5,6,7')
    if selected is None:
        monkeypatch.delenv('FLAGS_selected_gpus', raising=False)
    else:
        monkeypatch.setenv('FLAGS_selected_gpus', selected)
    assert gpu_number('gpu') == gpu_number(' GPU ') == plain and gpu_number('gpu:2') == 2


def test_dygraph_is_placed_on_the_launcher_s_gpu(monkeypatch):
    asked = []
    monkeypatch.setenv('FLAGS_selected_gpus', '1')
    monkeypatch.setattr(runtime.paddle, 'set_device', asked.append)
    with runtime.paddle_on('gpu', 1):
        pass
    with runtime.paddle_on('gpu:0', 1):
        pass
    assert asked[0::2] == ['gpu:1', 'gpu:0']


def test_command_flag_is_normalised_and_checked(capsys):
    assert train.parse_args(['--device', 'GPU:1']).device == 'gpu:1'
    with pytest.raises(SystemExit):
        train.parse_args(['--device', 'cuda:0'])
    assert "argument --device: device='cuda:0' is not a device: use 'cpu', 'gpu' or 'gpu:N'" in capsys.readouterr().err


def test_resolve_device_checks_the_gpus_paddle_has(monkeypatch):
    monkeypatch.setattr(runtime, '_gpu_count', lambda: 0)
    assert runtime.resolve_device(None) == 'cpu' and runtime.resolve_device('CPU') == 'cpu'
    with pytest.raises(InputError, match='needs a GPU and paddlepaddle-gpu'):
        runtime.resolve_device('gpu:0')
    monkeypatch.setattr(runtime, '_gpu_count', lambda: 2)
    monkeypatch.setattr(runtime.paddle.device.cuda, 'get_device_capability', lambda number: (8, 0))
    assert runtime.resolve_device(None) == 'gpu' and runtime.resolve_device('Gpu:1') == 'gpu:1'
    with pytest.raises(InputError, match='2 GPU'):
        runtime.resolve_device('gpu:2')


@pytest.mark.parametrize('version, capability, named', [('2.6.2', (9, 0), True), ('2.6.2', (8, 6), False),
                                                        ('3.3.1', (9, 0), False), ('0.0.0', (9, 0), False)])
def test_paddle_2_on_hopper_names_the_fix(version, capability, named):
    note = runtime.unsupported_gpu(version, capability)
    assert (note is not None) == named
    assert not named or ('compute capability 9.0' in note and 'Paddle 3.x with CUDA 13 (cu130)' in note)


def test_library_device_names_are_normalised_as_the_flags_are():
    """open_backend (Segmenter's) takes the same names: 'CPU' is the CPU an exported backend
    runs on (it gets as far as asking for its model folder), 'cuda' is refused."""
    from solov2.model.inference.backend import BackendError
    from solov2.model.inference.backend_factory import open_backend
    from solov2.model.inference.spec import ModelSpec
    with pytest.raises(BackendError, match='needs model_dir'):
        open_backend(ModelSpec(backend='onnx', device='CPU'))
    with pytest.raises(InputError, match="'cpu', 'gpu' or 'gpu:N'"):
        open_backend(ModelSpec(backend='onnx', device='cuda'))
    spec = ModelSpec(device=' Gpu:1 ')
    spec.check()
    assert spec.device == 'gpu:1'       # the spec carries the name its check gave it
