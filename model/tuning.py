"""``tune_process``: the one call that changes the whole process for speed (MKL's code path
on AMD CPUs, Paddle's CPU math threads, freed memory kept for reuse, OpenCV's and BLAS's
threads). The commands make it, and so may a program that wants their speed; the library
itself never does."""
import ctypes
import ctypes.util

from solov2.model.cpu_math import prefer_avx2_mkl
from solov2.model.runtime import cpu_threads, set_math_threads

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
