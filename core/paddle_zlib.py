"""Whether Paddle 2.x has already broken this process's zlib, said before it crashes.

Paddle 2.x's core library (``libpaddle.so``) needs the system's zlib and also exports its own
older copy of it (zlib 1.2.8 in 2.6.2). Where ``paddle`` is imported before anything else loads
zlib, the system's zlib comes in with it and its inner calls reach Paddle's copy: the next
decompression (pycocotools' import, a PNG, a .pdparams) crashes the process in inflateReset2
(PaddlePaddle issue #70538). ``solov2`` imports zlib first, which avoids it; once it has
happened, nothing in the process can undo it. Paddle 3.x exports no zlib."""
import ctypes
import sys
from typing import List


class _ObjectInfo(ctypes.Structure):
    """The first two fields of glibc's ``struct dl_phdr_info``: load address and path."""
    _fields_ = [('address', ctypes.c_void_p), ('name', ctypes.c_char_p)]


_VISIT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_ObjectInfo), ctypes.c_size_t, ctypes.c_void_p)


def loaded_objects() -> List[str]:
    """The paths of the shared objects this process has loaded, in the order they were loaded
    (glibc's ``dl_iterate_phdr``); [] where there is no such call (not Linux)."""
    names: List[str] = []

    def visit(info, size, data) -> int:
        names.append((info.contents.name or b'').decode(errors='replace'))
        return 0
    iterate = getattr(ctypes.CDLL(None), 'dl_iterate_phdr', None) if sys.platform.startswith('linux') else None
    if iterate is not None:
        iterate(_VISIT(visit), None)
    return names


def zlib_taken_by_paddle(objects: List[str]) -> bool:
    """Whether the system's zlib was loaded after Paddle's core library in ``objects``
    (``loaded_objects``), that is with it, so that its calls reach Paddle 2.x's copy."""
    names = [path.rsplit('/', 1)[-1] for path in objects]
    paddle = [i for i, name in enumerate(names) if name == 'libpaddle.so']
    zlib = [i for i, name in enumerate(names) if name.startswith('libz.so')]
    return bool(paddle and zlib) and zlib[0] > paddle[0]


def check_zlib() -> None:
    """ImportError in one line where Paddle 2.x, imported before ``solov2``, brought zlib in with
    its own copy (``zlib_taken_by_paddle``): the process would crash at its next decompression."""
    version = str(getattr(sys.modules.get('paddle'), '__version__', ''))
    if version.startswith('2.') and zlib_taken_by_paddle(loaded_objects()):
        raise ImportError(f'Paddle {version} was imported before solov2 and brought in zlib with its own older copy, '
                          'so the next decompression would crash this process (PaddlePaddle issue #70538): '
                          'import solov2 (or zlib) before paddle')
