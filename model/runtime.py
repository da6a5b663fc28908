"""Where and how Paddle runs: device choice, CPU threads, MKL's code path and how freed
memory is kept."""
import ctypes
import ctypes.util
import os
from typing import Optional

import paddle
from paddle.base import core

from solov2.model.cpu_math import prefer_avx2_mkl


def default_device() -> str:
    """'gpu' when this Paddle build has CUDA and sees a GPU, else 'cpu'."""
    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return 'gpu'
    return 'cpu'


def cpu_threads(threads: int = 0, processes: int = 1) -> int:
    """``threads``, or when 0 this process's share of the cores with ``processes`` of them
    running side by side on the machine (at least one)."""
    return threads or max(1, (os.cpu_count() or 1) // processes)


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_AT_TOP = 2 ** 31 - 1           # bytes of free heap top kept before trimming (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next allocation instead of giving it back
    to the system: large blocks come from the heap rather than fresh mappings, and the heap is
    not trimmed. Paddle takes each CPU tensor from malloc, so otherwise every large tensor of
    a training step is new memory that the system zeroes page by page (about 130,000 page
    faults per step of config 1 at batch 2, 448x448, against 22,000 with this). The process
    keeps its peak memory. True when applied (glibc), False where malloc is not glibc's."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_AT_TOP))


def setup(device: Optional[str] = None, threads: int = 0, processes: int = 1) -> str:
    """Select the device and the CPU math threads (0 = this process's share of the cores
    when `processes` of them run side by side; Paddle itself defaults to one), and on an AMD
    CPU MKL's AVX2 kernels (``model.cpu_math``; before the first Paddle op). On the CPU,
    freed memory is kept for reuse (``keep_freed_memory``). Returns the device name."""
    prefer_avx2_mkl()
    device = device or default_device()
    if device == 'cpu':
        keep_freed_memory()
    paddle.set_device(device)
    core.set_num_threads(cpu_threads(threads, processes))
    return device
