"""Unpickling that never runs code from the file, behind every checkpoint reader
(``model/checkpoint.py``, ``convert/pth_reader.py``): ``RestrictedUnpickler`` resolves only the
globals of an allow-list, each to a stand-in here that builds plain data, and raises
``RefusedGlobal`` for any other. ``DATA_GLOBALS``: what a checkpoint of numpy arrays needs (numpy
arrays, dtypes, scalars, ``OrderedDict``, data builtins); ``PADDLE_GLOBALS`` adds Paddle's tensors:
``paddle.save`` writes a tensor outside a state dict as tuple((name, array)) and a DenseTensor as
eval('data', {'data': array}) (paddle/framework/io.py, _pickle_save).
"""
import collections
import pickle
from typing import Dict, Tuple

import numpy as np

from solov2.core.errors import InputError

AllowList = Dict[Tuple[str, str], object]


class Refused(pickle.UnpicklingError, InputError):
    """The pickle asks for something a checkpoint of plain data never contains."""


class RefusedGlobal(Refused):
    """The pickle names a global outside the allow-list (``qualname``: 'module.name')."""

    def __init__(self, module: str, name: str):
        self.qualname = f'{module}.{name}'
        super().__init__(f'refusing to unpickle {self.qualname}')


def refusal_message(path: str, exc: Refused, holds: str, makers: str) -> str:
    """The one line a refused file gets, e.g. ``x.pdparams: refused to load: it asks
    for posix.system (a checkpoint holds only arrays) — was it made by paddle.save?``"""
    if isinstance(exc, RefusedGlobal):
        return (f'{path}: refused to load: it asks for {exc.qualname} (a checkpoint holds only {holds}) '
                f'— was it made by {makers}?')
    return f'{path}: refused to load: {exc} — was it made by {makers}?'


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come from ``allowed`` only.

    Args:
        file: binary file positioned at a pickle.
        allowed: {(module, name): stand-in}; anything else raises RefusedGlobal.
        encoding: how protocol-2 pickles written by Python 2 decode their strings.
    """

    def __init__(self, file, allowed: AllowList, encoding: str = 'latin1'):
        super().__init__(file, encoding=encoding)
        self.allowed = allowed

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def _latin1_bytes(text, encoding):
    """Stand-in for ``_codecs.encode`` (how protocol 2 pickles bytes)."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise Refused(f'refusing _codecs.encode with encoding {encoding!r:.40}')
    return text.encode('latin1')


def _numpy_dtype(spec, align=False, copy=False):
    """Stand-in for ``numpy.dtype``: a dtype string naming plain data (no objects)."""
    if not isinstance(spec, str):
        raise Refused(f'refusing numpy.dtype({spec!r:.60})')
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:
        raise Refused(f'refusing numpy.dtype({spec!r:.60}): it holds Python objects')
    return dtype


def _numpy_scalar(dtype, data):
    """Stand-in for ``numpy.core.multiarray.scalar`` (plain dtypes only)."""
    if (not isinstance(dtype, np.dtype) or dtype.hasobject
            or not isinstance(data, bytes) or len(data) != dtype.itemsize):
        raise Refused('refusing a numpy scalar that is not plain data')
    return np.frombuffer(data, dtype)[0]


class _NdarrayType:
    """Stand-in for the class ``numpy.ndarray``: only ``_reconstruct`` accepts it."""


def _ndarray_reconstruct(subtype, shape, typecode):
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: the
    empty array that the pickle's BUILD then fills with shape, dtype and bytes."""
    if not isinstance(subtype, _NdarrayType) or tuple(shape) != (0,):
        raise Refused('refusing numpy _reconstruct of anything but a plain ndarray')
    return np.empty((0,), np.uint8)


def _dense_tensor(expression, scope):
    """Stand-in for the ``eval('data', {'data': array})`` that Paddle's pickler writes
    for a DenseTensor outside a state dict: returns the array, evaluates nothing."""
    if expression != 'data' or not isinstance(scope, dict) or not isinstance(scope.get('data'), np.ndarray):
        raise Refused(f'refusing eval({expression!r:.60})')
    return scope['data']


def _from_data(kind: type):
    """Stand-in for ``bytes``/``bytearray`` that copies data but refuses a size
    (``bytearray(10**12)`` would exhaust memory)."""
    def make(*args):
        if args and isinstance(args[0], int):
            raise Refused(f'refusing {kind.__name__}({args[0]!r:.20})')
        return kind(*args)
    return make


def _allow(pairs) -> AllowList:
    """``((modules, name, stand-in), ...)`` -> {(module, name): stand-in}."""
    return {(module, name): value for modules, name, value in pairs for module in modules}


_NUMPY_CORE = ('numpy.core.multiarray', 'numpy._core.multiarray')   # numpy 1.x, 2.x
_BUILTINS = ('builtins', '__builtin__')                              # protocol 3+, 2
_DATA_BUILTINS = {'set': set, 'frozenset': frozenset, 'complex': complex, 'tuple': tuple,
                  'bytes': _from_data(bytes), 'bytearray': _from_data(bytearray)}

DATA_GLOBALS: AllowList = _allow(
    [(('collections',), 'OrderedDict', collections.OrderedDict),
     (('_codecs',), 'encode', _latin1_bytes),
     (('numpy',), 'dtype', _numpy_dtype),
     (('numpy',), 'ndarray', _NdarrayType()),
     (_NUMPY_CORE, 'scalar', _numpy_scalar),
     (_NUMPY_CORE, '_reconstruct', _ndarray_reconstruct)]
    + [(_BUILTINS, name, value) for name, value in _DATA_BUILTINS.items()])

PADDLE_GLOBALS: AllowList = {**DATA_GLOBALS, **_allow([(_BUILTINS, 'eval', _dense_tensor)])}
