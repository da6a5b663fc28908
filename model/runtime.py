"""Where and how Paddle runs: device choice, CPU threads and MKL's code path."""
import os
from typing import Optional

import paddle
from paddle.base import core

from model.cpu_math import prefer_avx2_mkl


def default_device() -> str:
    """'gpu' when this Paddle build has CUDA and sees a GPU, else 'cpu'."""
    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return 'gpu'
    return 'cpu'


def cpu_threads(threads: int = 0, processes: int = 1) -> int:
    """``threads``, or when 0 this process's share of the cores with ``processes`` of them
    running side by side on the machine (at least one)."""
    return threads or max(1, (os.cpu_count() or 1) // processes)


def setup(device: Optional[str] = None, threads: int = 0, processes: int = 1) -> str:
    """Select the device and the CPU math threads (0 = this process's share of the cores
    when `processes` of them run side by side; Paddle itself defaults to one), and on an AMD
    CPU MKL's AVX2 kernels (``model.cpu_math``; before the first Paddle op). Returns the
    device name."""
    prefer_avx2_mkl()
    device = device or default_device()
    paddle.set_device(device)
    core.set_num_threads(cpu_threads(threads, processes))
    return device
