"""``tune_process``: the one call that changes the whole process for speed (MKL's code path
on AMD CPUs, Paddle's CPU math threads, freed memory kept for reuse, OpenCV's and BLAS's
threads, OpenMP's idle workers). The commands make it, and so may a program that wants their speed; the library
itself never does."""
import ctypes
import ctypes.util
import os

from solov2.model.cpu_math import prefer_avx2_mkl
from solov2.model.runtime import cpu_threads, set_math_threads

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_AT_TOP = 2 ** 31 - 1           # bytes of free heap top kept before trimming (mallopt takes an int)
INTEL_OPENMP = 'libiomp5.so'        # the OpenMP runtime Paddle's CPU wheels load (paddle/libs)
IDLE_SPIN_MS = 1        # an idle OpenMP worker's wait for more work before it sleeps (KMP_BLOCKTIME)


def malloc_keeps_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse (no fresh mappings, no trimming): otherwise each
    large tensor of a training step is new memory zeroed page by page (130,000 page faults a step of
    config 1 against 22,000). The process keeps its peak memory for good. False where not glibc.
    ``M_TRIM_THRESHOLD`` and ``M_MMAP_MAX``: glibc's mallopt parameters (malloc.h)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_AT_TOP))


def tune_process(threads: int = 0, processes: int = 1, keep_freed_memory: bool = False,
                 helper_threads: int = 0) -> None:
    """Tune the whole process for speed, as the commands do (the library never does); call it first:
    on an AMD CPU MKL's AVX2 kernels (``model.cpu_math``); Paddle's CPU math ``threads`` (0: this
    process's share among ``processes``); ``keep_freed_memory``: ``malloc_keeps_freed_memory``;
    ``helper_threads``: OpenCV's and OpenBLAS's threads (0: left as they are; 1 when pictures are
    read and finished in threads beside the network, as demo.py and eval.py ask), and then Paddle's idle
    OpenMP workers soon asleep (``openmp_workers_sleep_soon``)."""
    prefer_avx2_mkl()
    if keep_freed_memory:
        malloc_keeps_freed_memory()
    set_math_threads(cpu_threads(threads, processes))
    if helper_threads:
        import cv2
        import threadpoolctl
        cv2.setNumThreads(helper_threads)
        threadpoolctl.ThreadpoolController().select(internal_api='openblas').limit(limits=helper_threads)
        openmp_workers_sleep_soon()


def openmp_workers_sleep_soon(milliseconds: int = IDLE_SPIN_MS) -> bool:
    """Intel OpenMP's idle workers (Paddle's CPU math: MKL, oneDNN) sleep after waiting ``milliseconds`` for the
    next parallel region, not after its default 200 ms (``KMP_BLOCKTIME``, set with the runtime's
    ``kmp_set_defaults``), in threads whose parallel work starts after the call. Measured (dygraph, shipped model,
    640x480, 2-core Zen 4): after each network run a worker spun 190 ms of a core, which the threads that read and
    finish pictures beside the network wait for; runs within ``milliseconds`` of each other (a network's layers)
    still find them awake. Nothing when ``KMP_BLOCKTIME`` is set (the user's) or no such runtime is loaded;
    whether it was set."""
    if 'KMP_BLOCKTIME' in os.environ:
        return False
    try:
        runtime = ctypes.CDLL(INTEL_OPENMP, mode=getattr(os, 'RTLD_NOLOAD', 0) | ctypes.RTLD_GLOBAL)
        runtime.kmp_set_defaults(f'KMP_BLOCKTIME={milliseconds}'.encode())
    except (OSError, AttributeError):       # not loaded (another build of Paddle), or no such call
        return False
    return True
