"""model.tuning: freed memory kept for reuse on the CPU (glibc's malloc), Intel OpenMP's idle workers asleep soon."""
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_DIR

# malloc, fill and free 256 MB twice (as Paddle's CPU allocator does with a tensor); print
# the page faults of the second time
PROBE = """
import ctypes, resource, sys
sys.path.insert(0, {repo!r})
from solov2.model.tuning import malloc_keeps_freed_memory
applied = malloc_keeps_freed_memory() if {keep} else False
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def use_once():
    block = libc.malloc(2 ** 28)
    ctypes.memset(block, 1, 2 ** 28)
    libc.free(block)
use_once()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
use_once()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 256 * 2 ** 20 // 4096


def _second_allocation_faults(keep: bool):
    out = subprocess.run([sys.executable, '-c', PROBE.format(repo=str(REPO_DIR), keep=keep)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == 'True', int(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason="glibc's malloc: Linux only")
def test_keep_freed_memory_reuses_freed_blocks_instead_of_fresh_pages():
    applied, kept = _second_allocation_faults(keep=True)
    _, fresh = _second_allocation_faults(keep=False)
    assert applied
    assert kept < PAGES // 20 and kept * 10 < fresh    # without it: a fresh mapping, faulted page by page


# The idle wait (KMP_BLOCKTIME, ms) a thread that starts after it gets from Intel OpenMP, and the CPU seconds of this
# process in 0.3 s of sleep after a network run on two math threads, by a Segmenter made before and one made after
# ``openmp_workers_sleep_soon``
IDLE_PROBE = """
import ctypes, os, sys, threading, time
sys.path.insert(0, {repo!r})
from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter
from solov2.model.runtime import set_math_threads
from solov2.model.tuning import INTEL_OPENMP, openmp_workers_sleep_soon
set_math_threads(2)
picture = SAMPLE_IMAGES + '/shapes_000023.jpg'
runtime = ctypes.CDLL(INTEL_OPENMP, mode=os.RTLD_NOLOAD)

def new_threads_wait():
    waits = []
    thread = threading.Thread(target=lambda: waits.append(runtime.kmp_get_blocktime()))
    thread.start()
    thread.join()
    return waits[0]

def idle_cpu():
    with Segmenter(SHIPPED_WEIGHTS, backend='dygraph') as segmenter:
        segmenter(picture)
        began = time.process_time()
        time.sleep(0.3)
        return time.process_time() - began
before = new_threads_wait(), idle_cpu()
applied = openmp_workers_sleep_soon()
print(applied, *before, new_threads_wait(), idle_cpu())
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason="Paddle's Linux wheels load Intel OpenMP")
def test_openmp_workers_sleep_after_a_run_instead_of_spinning_a_core():
    """Before: a worker waits 200 ms for more work, spinning (about 0.2 s of CPU in 0.3 s of sleep on a quiet
    machine; on a busy one it yields its core, so the CPU shows little either way); after: a new thread waits 1 ms
    and the workers sleep (a hundredth of that CPU); the user's own KMP_BLOCKTIME is left alone."""
    environment = {name: value for name, value in os.environ.items() if name != 'KMP_BLOCKTIME'}
    out = subprocess.run([sys.executable, '-c', IDLE_PROBE.format(repo=str(REPO_DIR))], env=environment,
                         capture_output=True, text=True, check=True).stdout.split()
    applied, (waited, spinning, waits, asleep) = out[0] == 'True', map(float, out[1:])
    assert applied and (waited, waits) == (200, 1) and asleep < 0.02, (waited, spinning, waits, asleep)
    users = (f'import sys; sys.path.insert(0, {str(REPO_DIR)!r}); from solov2.model.tuning import '
             'openmp_workers_sleep_soon; import paddle; print(openmp_workers_sleep_soon())')
    out = subprocess.run([sys.executable, '-c', users], env={**environment, 'KMP_BLOCKTIME': '200'},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == 'False'
