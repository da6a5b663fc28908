"""model.tuning: freed memory kept for reuse on the CPU (glibc's malloc)."""
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
