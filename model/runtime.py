"""Where and how Paddle runs: the device and the CPU math threads (one each per process), held for a
call (``paddle_on``) and put back after it; ``cpu_threads`` is the one threads-per-core rule. What
changes the whole process is ``model.tuning.tune_process``."""
import contextlib
import ctypes
import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterator, Optional, Tuple

import paddle
from paddle.base import core

from solov2.config.device import device_name, gpu_number, on_gpu
from solov2.config.install import internals_checked
from solov2.core.errors import InputError, param

logger = logging.getLogger(__name__)


def _gpu_count() -> int:
    """The GPUs this Paddle can use: 0 on a CPU build."""
    return paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0


def default_device() -> str:
    """'gpu' when this Paddle build has CUDA and sees a GPU, else 'cpu'."""
    return 'gpu' if _gpu_count() > 0 else 'cpu'


def resolve_device(device: Optional[str], named: bool = False) -> str:
    """The device a run uses: ``device`` normalised (``config.device.device_name``: 'cpu', 'gpu', 'gpu:N';
    ``named``: it is already, ``ModelSpec.check``'s), None giving ``default_device()``. InputError, naming the
    fix, when it names a GPU that this Paddle cannot use (a CPU build, no GPU seen, N past the last)."""
    name = (device if named else device_name(device)) or default_device()
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
                f'{capability[1]}, Hopper or newer): install Paddle 3.x with CUDA 13 (cu130) from the PaddlePaddle '
                'index (README, GPU)')
    return None


def launched_here() -> int:
    """How many processes ``paddle.distributed.launch`` started on this machine (1 without it): its
    ``PADDLE_LOCAL_SIZE``, read, never set."""
    value = os.environ.get('PADDLE_LOCAL_SIZE', '')
    return max(1, int(value)) if value.isdigit() else 1


CGROUP = Path('/sys/fs/cgroup')      # a container's own cgroup, as its runtime mounts it


def _cgroup_value(name: str) -> str:
    """The first line of the cgroup file ``name`` (under ``CGROUP``), '' when there is none."""
    try:
        return (CGROUP / name).read_text().strip()
    except OSError:
        return ''


def cpu_quota() -> Optional[float]:
    """The CPUs this process's cgroup may use by its CFS quota (``docker run --cpus 2``, a Kubernetes CPU
    limit, systemd's ``CPUQuota=``): cgroup v2's ``cpu.max`` ('200000 100000' is 2.0, 'max 100000' none),
    else v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none); None without a quota."""
    quota, _, period = _cgroup_value('cpu.max').partition(' ')
    if not quota:
        for folder in ('cpu', 'cpu,cpuacct'):
            quota, period = _cgroup_value(f'{folder}/cpu.cfs_quota_us'), _cgroup_value(f'{folder}/cpu.cfs_period_us')
            if quota:
                break
    if quota.isdigit() and period.isdigit() and int(period) > 0:
        return int(quota) / int(period)
    return None


def cpu_threads(threads: int = 0, processes: int = 1) -> int:
    """The toolkit's one threads-per-core rule: ``threads``, or when 0 this process's share of
    the cores it may run on (its CPU affinity, which a container's cpuset limits, and its CPU quota,
    ``cpu_quota``, whole CPUs, at least 1) with ``processes`` of them running side by side on the
    machine (at least one)."""
    if threads:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores // processes)


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
def tf32_off(*libraries: str) -> Iterator[None]:
    """TF32 off for the block in ``libraries`` ('cublas', 'cudnn'), put back after it: Paddle's switches
    (``core.set_cublas_switch``, read at each call) and its flags ``FLAGS_<library>_allow_tf32`` (Paddle 3.3's
    cuBLAS calls set their math mode from ``FLAGS_cublas_allow_tf32`` at each call, whatever the switch
    says); nothing where this build has neither (a CPU wheel). They are the process's (another thread's
    products run without TF32 too: slower, never wrong)."""
    before = {name: getattr(core, f'get_{name}_switch')() for name in libraries if hasattr(core, f'get_{name}_switch')}
    flags = {}
    for flag in (f'FLAGS_{name}_allow_tf32' for name in libraries):
        with contextlib.suppress(ValueError):          # a build without that flag
            flags[flag] = paddle.get_flags([flag])[flag]
    for name in before:
        getattr(core, f'set_{name}_switch')(False)
    if flags:
        paddle.set_flags(dict.fromkeys(flags, False))
    try:
        yield
    finally:
        for name, on in before.items():
            getattr(core, f'set_{name}_switch')(on)
        if flags:
            paddle.set_flags(flags)


@dataclass(frozen=True)
class Placement:
    """Where a model runs: Paddle's ``device`` ('cpu', 'gpu:1') and CPU math ``threads`` (at
    least 1); calling it gives the block that runs Paddle with them (``paddle_on``)."""
    device: str
    threads: int

    def __call__(self) -> ContextManager[None]:
        return paddle_on(self.device, self.threads)


@contextlib.contextmanager
def paddle_on(device: str, threads: int) -> Iterator[None]:
    """Paddle's device ('cpu', 'gpu', 'gpu:1') and CPU math threads (at least 1) for the block, put back
    after it with Paddle's random generators, the CPU's and every GPU's (building a model draws from them;
    training seeds them). Such blocks run one at a time across threads; one inside another sets its own
    and puts the outer's back."""
    with _PADDLE_SETTINGS:
        before = paddle.get_device(), math_threads()
        cpu = core.default_cpu_generator().get_state()
        gpus = paddle.get_cuda_rng_state() if paddle.is_compiled_with_cuda() else None
        paddle.set_device(f'gpu:{gpu_number(device)}' if on_gpu(device) else 'cpu')
        set_math_threads(threads)
        try:
            yield
        finally:
            paddle.set_device(before[0])
            set_math_threads(before[1])
            core.default_cpu_generator().set_state(cpu)
            if gpus is not None:
                paddle.set_cuda_rng_state(gpus)
