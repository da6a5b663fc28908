"""The processes of one run started by ``python -m paddle.distributed.launch``: who this process is
(``Processes``, ``launched_processes``), its share of the work, the process group's start
(``start_processes``) and what the processes exchange (``gather``, ``from_rank0``, ``rank0_state``).
Without the launcher a run is process 0 of 1 and nothing here talks to another process.
"""
import contextlib
import io
import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, TypeVar

import paddle
import paddle.distributed as dist

from solov2.config.device import on_gpu
from solov2.core.errors import InputError, param

T = TypeVar('T')
BACKEND_VARIABLE = 'PADDLE_DISTRI_BACKEND'    # read by paddle.distributed.init_parallel_env only


@dataclass(frozen=True)
class Processes:
    """Process ``rank`` of ``world`` (global), ``local_rank`` of the ``local_size`` on this node."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """True for process 0, the one that scores, prints the tables and writes shared files."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> List[T]:
        """This process's disjoint shard of ``items``: item i goes to process i % world."""
        return list(items)[self.rank::self.world]

    def counts(self, total: int) -> List[int]:
        """How many of ``total`` items each process's ``share`` holds, in rank order."""
        return [len(range(rank, total, self.world)) for rank in range(self.world)]


SINGLE = Processes()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, '')
    return int(value) if value.isdigit() else default


def launched_processes() -> Processes:
    """This process among those ``paddle.distributed.launch`` started (``SINGLE`` without it)."""
    world = dist.get_world_size()
    if world <= 1:
        return SINGLE
    return Processes(dist.get_rank(), world, _env_int('PADDLE_LOCAL_RANK', 0), _env_int('PADDLE_LOCAL_SIZE', world))


def check_paddle_runs(world: int, device: str, version: str = paddle.__version__,
                      cuda_build: bool = paddle.is_compiled_with_cuda()) -> None:
    """InputError when this Paddle cannot run ``world`` processes on ``device``: Paddle 2.x's CUDA
    wheels crash in their CPU collectives (gloo) from two processes on. ``cuda_build`` (default: this
    Paddle's): whether ``version`` is a CUDA build."""
    major = version.split('.')[0]
    if world > 1 and device == 'cpu' and cuda_build and major.isdigit() and 0 < int(major) < 3:
        raise InputError(f'{world} CPU processes need Paddle 3 or the CPU wheel: Paddle {version} (CUDA build) '
                         'crashes (segfault) in its CPU collectives (gloo) — run one process, use the GPUs (',
                         param('device', 'gpu'), '), or pip install "paddlepaddle-gpu>=3"')


def cpu_launch_env(processes: int) -> Dict[str, str]:
    """The environment in which ``paddle.distributed.launch`` starts ``processes`` CPU processes a node
    on any host: ``CUDA_VISIBLE_DEVICES`` of one hidden GPU (-1) a process (the launcher hands process
    i the i-th GPU it counts there, counted from that variable whenever it is set, '' and -1 as one, and
    fails with IndexError when it counts fewer GPUs than processes), and gloo by name."""
    return {'CUDA_VISIBLE_DEVICES': ','.join(['-1'] * processes), BACKEND_VARIABLE: 'gloo'}


def start_processes(device: str) -> Processes:
    """Check this Paddle can run the launched processes on ``device`` (``check_paddle_runs``) and start
    their process group once, quietly; ``SINGLE`` without a launcher. On the CPU the group is gloo's,
    named in ``PADDLE_DISTRI_BACKEND`` for that call only (left to choose, a CUDA build takes NCCL)."""
    processes = launched_processes()
    check_paddle_runs(processes.world, 'gpu' if on_gpu(device) else 'cpu')
    if processes.world > 1 and not dist.is_initialized():
        before = os.environ.get(BACKEND_VARIABLE)
        if not on_gpu(device):
            os.environ[BACKEND_VARIABLE] = 'gloo'
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                dist.init_parallel_env()
        finally:
            if before is None:
                os.environ.pop(BACKEND_VARIABLE, None)
            else:
                os.environ[BACKEND_VARIABLE] = before
    return processes


def gather(value: Any, processes: Processes) -> list:
    """Every process's ``value`` (picklable), in rank order, on every process: ``[value]``
    with one process. All processes must call it."""
    if processes.world == 1:
        return [value]
    gathered: list = []
    dist.all_gather_object(gathered, value)
    return gathered


def from_rank0(value: Any, processes: Processes) -> Any:
    """Process 0's ``value`` on every process (the others' are ignored)."""
    return gather(value if processes.main else None, processes)[0]


def rank0_state(layer: paddle.nn.Layer, processes: Processes) -> None:
    """Give ``layer``'s parameters and buffers process 0's values, in place, on every process
    (nothing with one process): e.g. BN running statistics, which each process of a
    data-parallel run updates from its own images. All processes must call it."""
    if processes.world == 1:
        return
    with paddle.no_grad():
        for tensor in layer.state_dict().values():
            dist.broadcast(tensor, src=0)


def _store():
    """The launcher's key-value store (a TCP store that ``init_parallel_env`` started)."""
    from paddle.base import core
    return core.create_or_get_global_tcp_store()


_first_calls = itertools.count()


def local_rank0_first(work: Callable[[], T], processes: Processes) -> T:
    """``work()`` on every process, on each node's local process 0 before the others (a cache one
    builds and the others load). The others wait in the launcher's key-value store (900 s), not on a
    gloo barrier (30 s). Every process of a node must call it the same number of times."""
    if processes.world == 1:
        return work()
    key = f'solov2/local_rank0_first/{processes.rank - processes.local_rank}/{next(_first_calls)}'
    if processes.local_rank == 0:
        try:
            return work()
        finally:
            _store().set(key, 'done')
    _store().get(key)
    return work()
