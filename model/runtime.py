"""Where and how Paddle runs: the device, the CPU math threads, and the process-wide tuning
that a program may ask for (MKL's code path on AMD CPUs, freed memory kept for reuse).

Paddle has one device and one CPU math thread count per process. The library never leaves
them changed: a ``DygraphBackend`` (so a ``Segmenter`` on the dygraph backend) and a training run
set their own for the time of each call (``paddle_on``) and put the previous ones back.
``tune_process`` is the one call here that changes the process; the commands make it, and so
may a program that wants their speed."""
import contextlib
import ctypes
import ctypes.util
import functools
import importlib
import logging
import os
import signal
import threading
from typing import Iterator, Optional, Tuple

import paddle
from paddle.base import core

from solov2.config.device import device_name, gpu_number, on_gpu
from solov2.config.install import internals_checked
from solov2.core.errors import InputError, param
from solov2.model.cpu_math import prefer_avx2_mkl

logger = logging.getLogger(__name__)


def _gpu_count() -> int:
    """The GPUs this Paddle can use: 0 on a CPU build."""
    return paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0


def default_device() -> str:
    """'gpu' when this Paddle build has CUDA and sees a GPU, else 'cpu'."""
    return 'gpu' if _gpu_count() > 0 else 'cpu'


def resolve_device(device: Optional[str]) -> str:
    """The device a run uses: ``device`` normalised (``config.device.device_name``: 'cpu',
    'gpu', 'gpu:N'), None giving ``default_device()``. InputError, naming the fix, when it
    names a GPU that this Paddle cannot use (a CPU build, no GPU seen, N past the last)."""
    name = device_name(device) or default_device()
    if not on_gpu(name):
        return name
    count, number = _gpu_count(), gpu_number(name)
    if count == 0:
        reason = 'this Paddle sees no GPU' if paddle.is_compiled_with_cuda() else 'this Paddle is a CPU build'
        raise InputError(param('device', device), f' needs a GPU and paddlepaddle-gpu: {reason} — use ',
                         param('device', 'cpu'), ' or install paddlepaddle-gpu (docs/training.md)')
    if number >= count:
        raise InputError(param('device', device), f': this machine has {count} GPU(s), numbered from 0')
    note = unsupported_gpu(paddle.__version__, paddle.device.cuda.get_device_capability(number))
    if note:
        logger.warning(note)
    return name


def unsupported_gpu(version: str, capability: Tuple[int, int]) -> Optional[str]:
    """A line naming the fix when Paddle ``version`` is reported not to run on a GPU of compute
    ``capability`` (major, minor), else None: the Paddle 2.x GPU wheels (CUDA 11.8 at most) on
    Hopper (9.0) and newer (Paddle issue 66339; PaddleHelix 369). Development builds (0.0.0) pass."""
    major = version.split('.')[0]
    if major.isdigit() and 0 < int(major) < 3 and capability[0] >= 9:
        return (f'Paddle {version} is reported not to run on this GPU (compute capability {capability[0]}.'
                f'{capability[1]}, Hopper or newer): install Paddle 3.x with CUDA 12 from the PaddlePaddle index '
                '(README, GPU)')
    return None


def cpu_threads(threads: int = 0, processes: int = 1) -> int:
    """``threads``, or when 0 this process's share of the cores with ``processes`` of them
    running side by side on the machine (at least one)."""
    return threads or max(1, (os.cpu_count() or 1) // processes)


@functools.lru_cache(maxsize=1)
def _mkl_threads_reader():
    """MKL's ``MKL_Get_Max_Threads`` from the MKL that Paddle's wheels of the checked lines ship
    (``libs/libmklml_intel.so``); None on another Paddle line or a build without it."""
    if not internals_checked():
        return None
    try:
        return ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), 'libs', 'libmklml_intel.so')
                           ).MKL_Get_Max_Threads
    except (OSError, AttributeError):
        return None


# the CPU math threads that set_math_threads last set; before any, Paddle's start-up setting
_threads_set = int(paddle.get_flags(['FLAGS_paddle_num_threads'])['FLAGS_paddle_num_threads'])


def set_math_threads(threads: int) -> None:
    """Paddle's CPU math threads for the process (a count, at least 1), noted for ``math_threads``."""
    global _threads_set
    core.set_num_threads(threads)
    _threads_set = threads


def math_threads() -> int:
    """Paddle's CPU math threads now, as its MKL counts them; where MKL cannot be asked
    (``_mkl_threads_reader``), the count ``set_math_threads`` last set, or before any,
    Paddle's start-up setting."""
    reader = _mkl_threads_reader()
    return _threads_set if reader is None else int(reader())


_PADDLE_SETTINGS = threading.RLock()


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Paddle's random generators (the CPU's and every GPU's) put back as they were before
    the block (building a model draws from them; training seeds them)."""
    cpu = core.default_cpu_generator().get_state()
    gpus = paddle.get_cuda_rng_state() if paddle.is_compiled_with_cuda() else None
    try:
        yield
    finally:
        core.default_cpu_generator().set_state(cpu)
        if gpus is not None:
            paddle.set_cuda_rng_state(gpus)


@contextlib.contextmanager
def paddle_on(device: str, threads: int) -> Iterator[None]:
    """Paddle's device ('cpu', 'gpu', 'gpu:1') and CPU math threads (a count, at least 1) set
    for the block, and put back after it with Paddle's random generators as they were
    (``kept_random_state``): each model keeps its own device and threads although Paddle
    has one of each per process. Such blocks run one at a time: one in another thread waits
    for this one to end; one inside this one sets its own and puts these back."""
    with _PADDLE_SETTINGS, kept_random_state():
        before = paddle.get_device(), math_threads()
        paddle.set_device(f'gpu:{gpu_number(device)}' if on_gpu(device) else 'cpu')
        set_math_threads(threads)
        try:
            yield
        finally:
            paddle.set_device(before[0])
            set_math_threads(before[1])


def set_outside_python(signum: int) -> bool:
    """Whether the process's disposition of ``signum`` is not the one ``signal.getsignal``
    reports as SIG_DFL or SIG_IGN: a handler (or ignore) installed from C after Python
    started, which Python still reads as what it found at start. Read from the caught and
    ignored masks of /proc/self/status (Linux; False where it cannot be read)."""
    reported = signal.getsignal(signum)
    if reported not in (signal.SIG_DFL, signal.SIG_IGN):
        return False
    try:
        with open('/proc/self/status') as file:
            status = dict(line.split(':', 1) for line in file if ':' in line)
        caught, ignored = ((int(status[key], 16) >> (signum - 1)) & 1 for key in ('SigCgt', 'SigIgn'))
    except (OSError, KeyError, ValueError):
        return False
    return bool(caught) or bool(ignored) != (reported == signal.SIG_IGN)


@contextlib.contextmanager
def kept_child_signal() -> Iterator[None]:
    """The process's SIGCHLD handler as it was after the block: Paddle's first DataLoader with
    worker processes sets its own for the rest of the process (it checks its workers whenever
    any child ends; a long-lived process that later ran subprocesses was seen to crash in it),
    so it is put back, and Paddle told to set it again next time. Where it could not be put
    back, Paddle is told it is set already for the block and finds dead workers by its 5-second
    status checks alone: outside the main thread (Python sets handlers there only; Paddle's
    loader would fail), and where the handler was installed from C, which Python cannot set
    again: before Python started (``signal.getsignal`` gives None) or after
    (``set_outside_python``; off Linux such a handler reads as SIG_DFL and is replaced by it).
    The flag is Paddle's private ``_SIGCHLD_handler_set``: on a Paddle line it was not checked
    on (``internals_checked``) the block changes nothing, and Paddle's handler stays."""
    if not hasattr(signal, 'SIGCHLD') or not internals_checked():
        yield
        return
    paddle_side = importlib.import_module('paddle.io.multiprocess_utils')
    flag = paddle_side._SIGCHLD_handler_set
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGCHLD) if main and not set_outside_python(signal.SIGCHLD) else None
    if handler is None:
        paddle_side._SIGCHLD_handler_set = True
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGCHLD, handler)
        paddle_side._SIGCHLD_handler_set = flag


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_AT_TOP = 2 ** 31 - 1           # bytes of free heap top kept before trimming (mallopt takes an int)


def malloc_keeps_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next allocation instead of giving it back
    to the system: large blocks come from the heap rather than fresh mappings, and the heap is
    not trimmed. Paddle takes each CPU tensor from malloc, so otherwise every large tensor of
    a training step is new memory that the system zeroes page by page (about 130,000 page
    faults per step of config 1 at batch 2, 448x448, against 22,000 with this). The process
    keeps its peak memory, for good: there is no undoing it. True when applied (glibc), False
    where malloc is not glibc's."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_AT_TOP))


def tune_process(threads: int = 0, processes: int = 1, keep_freed_memory: bool = False,
                 helper_threads: int = 0) -> None:
    """Tune the whole process for speed, as demo.py, eval.py and train.py do; the library
    itself never does. Call it first, before any Paddle work:

    - on an AMD CPU, MKL's AVX2 kernels for Paddle's CPU math (``MKL_DEBUG_CPU_TYPE=5`` in
      ``os.environ`` unless it is set; ``model.cpu_math``): dygraph and Paddle Inference run
      several times faster there;
    - Paddle's CPU math threads for the process: ``threads``, 0 for this process's share of
      the cores among ``processes`` on the machine (a ``Segmenter`` or ``train`` uses its own
      ``threads`` while it runs and puts these back);
    - ``keep_freed_memory``: glibc's malloc keeps freed memory for reuse
      (``malloc_keeps_freed_memory``): faster steps of CPU training, but the process keeps
      its peak memory until it ends (the commands ask for it when they run on the CPU);
    - ``helper_threads``: OpenCV's threads and numpy's BLAS's (OpenBLAS; not MKL, which
      Paddle's network may share) for the process, 0 to leave them: 1 when pictures are read
      and post-processed in several threads beside the network (``Segmenter.stream``,
      ``evaluate``, callers in threads), as demo.py and eval.py ask."""
    prefer_avx2_mkl()
    if keep_freed_memory:
        malloc_keeps_freed_memory()
    set_math_threads(cpu_threads(threads, processes))
    if helper_threads:
        import cv2
        import threadpoolctl
        cv2.setNumThreads(helper_threads)
        threadpoolctl.ThreadpoolController().select(internal_api='openblas').limit(limits=helper_threads)
