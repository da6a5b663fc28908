"""The toolkit's compiled loops (``compiled``): where numpy's whole-array steps cost more than the work itself
(the polygon tracer's walk along each outline, COCO's polygon fill worked per column crossing), a loop compiled
to machine code by numba does it once per item.

Each loop is compiled on its first call (about 3 s for the tracer's, once) and kept in numba's cache: where
``NUMBA_CACHE_DIR`` says, else beside its module, else in the user's cache folder; later processes load it (about
0.3 s). Where none of those can be written (a read-only install run by a user without a home), it is compiled
in each process instead. A compiled loop releases the GIL while it runs: other threads go on."""
from typing import Callable, TypeVar, cast

import numba

Function = TypeVar('Function', bound=Callable)


def compiled(function: Function) -> Function:
    """``function`` compiled by numba (``njit``: no Python objects inside), the GIL released while it runs, kept
    in numba's cache where one can be written (else compiled once in each process)."""
    try:
        dispatcher = numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:        # numba: "cannot cache function ...: no locator available" (no folder writable)
        dispatcher = numba.njit(nogil=True)(function)
    return cast(Function, dispatcher)      # called as the function it compiles
