"""Tests for convert/pth_reader.py (torch is used only to write the files)."""
import collections
import os
import pickle
import zipfile

import pytest

pytest.importorskip('torch', reason='reference test: needs PyTorch (requirements-test.txt)')

import numpy as np
import torch

from solov2.convert.pth_reader import load_pth, load_state_dict  # noqa: E402
from solov2.core.errors import InputError  # noqa: E402
from tests.fixtures.solo_checkpoints import write_solo_checkpoint

pytestmark = pytest.mark.reference

FORMATS = {'zip': True, 'legacy': False}


def _make_tensors():
    """Tensors covering every dtype, a transposed view and shared storage."""
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(40, generator=gen)
    matrix = torch.randn(3, 5, generator=gen)
    return collections.OrderedDict([
        ('backbone.conv1.weight', torch.randn(8, 3, 3, 3, generator=gen)),
        ('backbone.bn1.num_batches_tracked', torch.tensor(0)),
        ('half', torch.randn(2, 3, generator=gen).half()),
        ('bf16', torch.randn(4, 2, generator=gen).bfloat16()),
        ('mask', torch.tensor([[True, False], [False, True]])),
        ('transposed', matrix.t()),
        ('slice_a', shared[3:15].view(3, 4)),
        ('slice_b', shared[20:30:2]),
        ('double', torch.randn(3, generator=gen).double()),
        ('int32', torch.arange(-3, 3, dtype=torch.int32)),
        ('int16', torch.arange(-2, 2, dtype=torch.int16)),
        ('int8', torch.arange(-4, 4, dtype=torch.int8).view(2, 4)),
        ('uint8', torch.arange(250, 256, dtype=torch.uint8)),
        ('empty', torch.zeros(0, 3)),
    ])


META = {
    'mmdet_version': '1.0.0', 'epoch': 36, 'CLASSES': ('person', 'car'),
    'config': 'model = dict(type="SOLOv2")', 'nested': {'lr': 0.01},
    'shape': torch.Size([2, 3]), 'device': torch.device('cuda', 0),
    'dtype': torch.float16, 'score': np.float64(0.5), 'ids': {1, 2},
}
EXPECTED_META = dict(META, shape=(2, 3), device='cuda:0',
                     dtype='torch.float16')


def _expected(tensor):
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy()
    return tensor.numpy()


@pytest.fixture(params=sorted(FORMATS))
def mmcv_checkpoint(request, tmp_path):
    """An mmcv-style checkpoint in one of the two torch.save formats."""
    tensors = _make_tensors()
    path = tmp_path / f'{request.param}.pth'
    torch.save({'meta': META, 'state_dict': tensors}, path,
               _use_new_zipfile_serialization=FORMATS[request.param])
    return path, tensors


def test_format_of_fixture_files(mmcv_checkpoint):
    path, _ = mmcv_checkpoint
    assert zipfile.is_zipfile(path) == (path.stem == 'zip')


def test_shared_storage_views_have_offsets():
    tensors = _make_tensors()
    assert tensors['slice_a'].storage_offset() != 0
    assert tensors['slice_b'].storage_offset() != 0
    assert (tensors['slice_a'].untyped_storage().data_ptr()
            == tensors['slice_b'].untyped_storage().data_ptr())
    assert not tensors['transposed'].is_contiguous()


def test_load_state_dict_matches_torch(mmcv_checkpoint):
    path, tensors = mmcv_checkpoint
    state = load_state_dict(path)
    assert list(state) == list(tensors)
    for name, tensor in tensors.items():
        expected = _expected(tensor)
        array = state[name]
        assert array.dtype == expected.dtype, name
        assert array.shape == expected.shape, name
        assert array.flags['C_CONTIGUOUS'], name
        np.testing.assert_array_equal(array, expected, err_msg=name)


def test_load_pth_keeps_meta(mmcv_checkpoint):
    path, _ = mmcv_checkpoint
    checkpoint = load_pth(path)
    assert isinstance(checkpoint['state_dict'], collections.OrderedDict)
    assert checkpoint['meta'] == EXPECTED_META
    assert type(checkpoint['meta']['score']) is np.float64


def test_generated_solo_weights_load(tmp_path):
    out = tmp_path / 'solo.pth'
    write_solo_checkpoint('solov2_light_448_r18_fpn_8gpu_3x', out, seed=3)
    expected = torch.load(out)['state_dict']
    state = load_state_dict(out)
    assert list(state) == list(expected)
    for name, tensor in expected.items():
        assert state[name].dtype == tensor.numpy().dtype, name
        assert state[name].shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(state[name], tensor.numpy(), name)


@pytest.mark.parametrize('layout', ['model', 'plain'])
def test_load_state_dict_layouts(tmp_path, layout):
    weights = {'w': torch.ones(2, 2), 'step': 7}
    obj = {'model': weights, 'epoch': 1} if layout == 'model' else weights
    path = tmp_path / 'ckpt.pth'
    torch.save(obj, path)
    state = load_state_dict(path)
    assert list(state) == ['w']
    np.testing.assert_array_equal(state['w'], np.ones((2, 2), np.float32))


def test_parameters_load(tmp_path):
    path = tmp_path / 'params.pth'
    layer = torch.nn.Linear(3, 2)
    torch.save(dict(layer.named_parameters()), path)
    state = load_state_dict(path)
    np.testing.assert_array_equal(state['weight'], layer.weight.detach())


class _Evil:
    def __reduce__(self):
        return os.system, ('touch pwned',)


@pytest.mark.parametrize('fmt', sorted(FORMATS))
def test_malicious_pickle_is_refused(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _Evil()}, path,
               _use_new_zipfile_serialization=FORMATS[fmt])
    with pytest.raises(ValueError, match=r'evil.pth: refused to load: it asks for \w+\.system '):
        load_pth(path)
    assert not (tmp_path / 'pwned').exists()


def _write_pdparams(tmp_path):
    path = tmp_path / 'model.pdparams'
    with open(path, 'wb') as f:
        pickle.dump({'w': np.ones(3, np.float32)}, f, protocol=2)
    return path


def _write_random(tmp_path):
    path = tmp_path / 'random.pth'
    path.write_bytes(np.random.RandomState(0).bytes(1000))
    return path


def _write_npz(tmp_path):
    path = tmp_path / 'arrays.npz'
    np.savez(path, w=np.ones(3))
    return path


def _write_empty(tmp_path):
    path = tmp_path / 'empty.pth'
    path.write_bytes(b'')
    return path


@pytest.mark.parametrize('writer', [_write_pdparams, _write_random,
                                    _write_npz, _write_empty])
def test_not_a_checkpoint(tmp_path, writer):
    with pytest.raises(ValueError, match='not a PyTorch checkpoint'):
        load_pth(writer(tmp_path))


_VIEW_STORAGE = object()


class _FakeTensor:
    """Pickled like a pre-1.0 tensor on a storage view (offset 2, size 6)."""

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (
            _VIEW_STORAGE, 1, (2, 2), (1, 2), False, collections.OrderedDict())


class _OldTorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if obj is _VIEW_STORAGE:
            return ('storage', torch.FloatStorage, 'root', 'cpu', 10,
                    ('view', 2, 6))
        return None


@pytest.mark.parametrize('order', ['<', '>'])
def test_legacy_storage_view_and_byte_order(tmp_path, order):
    path = tmp_path / 'old.pth'
    with open(path, 'wb') as f:
        sys_info = {'protocol_version': 1001, 'little_endian': order == '<'}
        for header in (0x1950a86a20f9469cfc6c, 1001, sys_info):
            pickle.dump(header, f, protocol=2)
        _OldTorchPickler(f, protocol=2).dump({'t': _FakeTensor()})
        pickle.dump(['root'], f, protocol=2)
        f.write(np.array(10, order + 'i8').tobytes())
        f.write(np.arange(10, dtype=order + 'f4').tobytes())
    tensor = load_pth(path)['t']
    np.testing.assert_array_equal(tensor, [[3, 5], [4, 6]])
    assert tensor.dtype == np.float32


def test_an_unknown_byte_order_is_refused_not_read_as_big_endian(tmp_path):
    path, bad = tmp_path / 'good.pth', tmp_path / 'bad.pth'
    torch.save({'t': torch.arange(4, dtype=torch.float32)}, path)
    with zipfile.ZipFile(path) as good, zipfile.ZipFile(bad, 'w') as written:
        assert any(name.endswith('/byteorder') for name in good.namelist())
        for name in good.namelist():
            written.writestr(name, b'middle' if name.endswith('/byteorder') else good.read(name))
    np.testing.assert_array_equal(load_pth(path)['t'], [0, 1, 2, 3])
    with pytest.raises(InputError, match="byte order 'middle', not 'little' or 'big'"):
        load_pth(bad)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match='not found'):
        load_state_dict(tmp_path / 'missing.pth')
