"""Read PyTorch checkpoints (``.pth``) as numpy arrays without torch: the zip format of
``torch.save`` (``<prefix>/data.pkl`` and one raw blob per storage, ``<prefix>/data/<key>``) and
the legacy one (torch < 1.6: a stream of pickles, then each storage as an 8-byte element count and
its bytes). Unpickling resolves only the globals a checkpoint of tensors needs, each to a stand-in
here or in ``model/safe_pickle.py`` (shared with the Paddle reader); any other is an ``InputError``
naming it, so nothing from the file runs. Tensors are references until the storages are read.

``_STORAGE_DTYPES``: torch storage class -> numpy dtype name ('bfloat16' is widened to float32). ``_ALLOWED``:
the ``(module, name) -> stand-in`` table of a PyTorch checkpoint: the shared plain-data globals
(model/safe_pickle.py) and torch's tensor machinery.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from solov2.core.errors import InputError
from solov2.data.files import looked_up
from solov2.model.checkpoint import check_finite
from solov2.model.safe_pickle import DATA_GLOBALS, Refused, RestrictedUnpickler, refusal_message

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    'FloatStorage': 'float32', 'DoubleStorage': 'float64', 'HalfStorage': 'float16', 'BFloat16Storage': 'bfloat16',
    'LongStorage': 'int64', 'IntStorage': 'int32', 'ShortStorage': 'int16', 'CharStorage': 'int8',
    'ByteStorage': 'uint8', 'BoolStorage': 'bool', 'UntypedStorage': 'uint8'}
_TORCH_DTYPE_NAMES = tuple(dict.fromkeys(_STORAGE_DTYPES.values()))     # torch.float32, ...: every storage's dtype


class RefusedCheckpoint(InputError):
    """A checkpoint the safe reader refused (one line); ``qualname`` is the global it asked
    for ('module.name'), None when it was refused for another reason."""

    def __init__(self, message: str, qualname=None):
        super().__init__(message)
        self.qualname = qualname


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a torch storage class such as ``torch.FloatStorage``."""
    dtype: str


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by the checkpoint; offset/size select a legacy view."""
    key: str
    dtype: str
    offset: int = 0
    size: int | None = None


@dataclass(frozen=True)
class _TensorRef:
    """A strided view (in elements) into a storage, resolved after loading."""
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    """Stand-in for ``torch._utils._rebuild_tensor`` and ``_v2``."""
    if not isinstance(storage, _StorageRef):
        raise InputError('malformed checkpoint: tensor without a storage')
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_unused):
    """Stand-in for ``torch._utils._rebuild_parameter(_with_state)``."""
    return data


def _device(kind, index=None):
    """Stand-in for ``torch.device``: the device as a string like 'cuda:0'."""
    return kind if index is None else f'{kind}:{index}'


_ALLOWED = {
    **DATA_GLOBALS,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch', 'Size'): tuple,
    ('torch', 'device'): _device,
    ('torch.storage', 'UntypedStorage'): _StorageType('uint8'),
    **{(module, name): _StorageType(dtype) for module in ('torch', 'torch.cuda')
       for name, dtype in _STORAGE_DTYPES.items()},
    **{('torch', name): 'torch.' + name for name in _TORCH_DTYPE_NAMES},
}


class _TorchUnpickler(RestrictedUnpickler):
    """The restricted unpickler with torch's persistent ids (tensor storages); notes
    each storage's dtype."""

    def __init__(self, file):
        super().__init__(file, _ALLOWED, encoding='utf-8')
        self.storage_dtypes = {}

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6)
                and pid[0] == 'storage' and isinstance(pid[1], _StorageType)):
            raise InputError(f'unsupported persistent id in checkpoint: {pid!r:.80}')
        key, dtype = str(pid[2]), pid[1].dtype
        self.storage_dtypes[key] = dtype
        if len(pid) == 5 or pid[5] is None:
            return _StorageRef(key, dtype)
        _view_key, offset, size = pid[5]
        return _StorageRef(key, dtype, int(offset), int(size))


def _itemsize(dtype):
    return 2 if dtype == 'bfloat16' else np.dtype(dtype).itemsize


def _decode_storage(raw, dtype, byteorder):
    """Raw storage bytes -> 1-D native-order array (bfloat16 -> float32)."""
    order = '<' if byteorder == 'little' else '>'
    if len(raw) % _itemsize(dtype):
        raise InputError(f'malformed checkpoint: {len(raw)} bytes is not a whole number of {dtype} elements')
    if dtype == 'bfloat16':
        return (np.frombuffer(raw, order + 'u2').astype(np.uint32) << 16).view(np.float32)
    array = np.frombuffer(raw, np.dtype(dtype).newbyteorder(order))
    return array.astype(array.dtype.newbyteorder('='), copy=False)


def _not_a_checkpoint(path):
    return InputError(f'{path} is not a PyTorch checkpoint (neither a zip archive with data.pkl nor a legacy '
                      'torch.save file)')


def _zip_prefix(archive, path):
    """The ``<prefix>/`` of the archive's top-level ``data.pkl``."""
    for name in archive.namelist():
        if name.endswith('/data.pkl') and name.count('/') == 1:
            return name[:-len('data.pkl')]
    raise _not_a_checkpoint(path)


def _load_zip(path):
    """Unpickle a zip-format checkpoint; return (object, {key: array})."""
    with zipfile.ZipFile(path) as archive:
        prefix = _zip_prefix(archive, path)
        unpickler = _TorchUnpickler(io.BytesIO(archive.read(prefix + 'data.pkl')))
        obj = unpickler.load()
        byteorder = 'little'
        if prefix + 'byteorder' in archive.namelist():
            byteorder = archive.read(prefix + 'byteorder').decode(errors='replace').strip()
        if byteorder not in ('little', 'big'):      # never read as the other in silence
            raise InputError(f"{path}: malformed checkpoint: byte order {byteorder[:20]!r}, not 'little' or 'big'")
        arrays = {key: _decode_storage(archive.read(f'{prefix}data/{key}'), dtype, byteorder)
                  for key, dtype in unpickler.storage_dtypes.items()}
    return obj, arrays


def _read_legacy_header(f, path):
    """Check magic number and protocol version; return the byte order."""
    try:
        magic = _TorchUnpickler(f).load()
    except Refused:
        raise
    except Exception as exc:
        raise _not_a_checkpoint(path) from exc
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise _not_a_checkpoint(path)
    protocol = _TorchUnpickler(f).load()
    if protocol != _LEGACY_PROTOCOL:
        raise InputError(f'{path}: unsupported legacy torch protocol version {protocol!r}')
    return 'little' if _TorchUnpickler(f).load().get('little_endian', True) else 'big'     # the sys_info record


def _read_legacy_storage(f, dtype, byteorder, path):
    """One storage of the legacy stream: int64 element count + raw bytes."""
    header = f.read(8)
    if len(header) != 8:
        raise InputError(f'{path}: truncated legacy checkpoint')
    count, = struct.unpack('<q' if byteorder == 'little' else '>q', header)
    raw = f.read(count * _itemsize(dtype))
    if len(raw) != count * _itemsize(dtype):
        raise InputError(f'{path}: truncated legacy checkpoint')
    return _decode_storage(raw, dtype, byteorder)


def _load_legacy(path):
    """Unpickle a legacy-format checkpoint; return (object, {key: array})."""
    with open(path, 'rb') as f:
        byteorder = _read_legacy_header(f, path)
        unpickler = _TorchUnpickler(f)
        obj = unpickler.load()
        keys = _TorchUnpickler(f).load()
        arrays = {}
        for key in map(str, keys):
            if key not in unpickler.storage_dtypes:
                raise InputError(f'{path}: storage {key!r} is never used')
            arrays[key] = _read_legacy_storage(f, unpickler.storage_dtypes[key], byteorder, path)
    return obj, arrays


def _tensor_to_array(ref, arrays):
    """Contiguous copy of the strided view ``ref`` into its storage."""
    flat = arrays[ref.storage.key]
    start = ref.storage.offset + ref.offset
    if len(ref.size) != len(ref.stride) or min(ref.stride, default=0) < 0:
        raise InputError(f'malformed checkpoint: bad tensor view {ref}')
    if 0 in ref.size:
        return np.zeros(ref.size, flat.dtype)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if start < 0 or last >= flat.size:
        raise InputError(f'malformed checkpoint: tensor view {ref} lies outside its storage of {flat.size} elements')
    strides = [s * flat.itemsize for s in ref.stride]
    return np.lib.stride_tricks.as_strided(flat[start:], shape=ref.size, strides=strides).copy(order='C')


def _materialize(obj, arrays, seen):
    """Replace tensor/storage references inside ``obj`` by numpy arrays."""
    if isinstance(obj, _TensorRef):
        return _tensor_to_array(obj, arrays)
    if isinstance(obj, _StorageRef):      # a bare storage (not a tensor): a 1-D copy
        flat = arrays[obj.key][obj.offset:]
        return (flat if obj.size is None else flat[:obj.size]).copy()
    if isinstance(obj, tuple):
        return tuple(_materialize(item, arrays, seen) for item in obj)
    if isinstance(obj, (dict, list)) and id(obj) not in seen:
        seen.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in list(items):
            obj[key] = _materialize(value, arrays, seen)
    return obj


def load_pth(path):
    """The object a ``torch.save`` file holds, each tensor a C-contiguous numpy array (bfloat16
    widened to float32); InputError for a missing file, not a checkpoint or a global not allowed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f'PyTorch checkpoint not found: {looked_up(path)}')
    loader = _load_zip if zipfile.is_zipfile(path) else _load_legacy
    try:
        obj, arrays = loader(path)
    except Refused as exc:
        raise RefusedCheckpoint(refusal_message(path, exc, 'tensors', 'torch.save'),
                                getattr(exc, 'qualname', None)) from None
    return _materialize(obj, arrays, set())


def load_state_dict(path):
    """The tensors of a checkpoint as ``{name: numpy array}``, out of mmcv/mmdet's
    ``{'state_dict': ...}`` or ``{'model': ...}``; entries that are not arrays are dropped; InputError for a
    tensor that is not finite (``model.checkpoint.check_finite``)."""
    obj = load_pth(path)
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise InputError(f'{path}: expected a dict of tensors, got {type(obj).__name__}')
    tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not tensors:
        raise InputError(f'{path}: checkpoint holds no tensors')
    check_finite(tensors, os.fspath(path))
    return tensors
