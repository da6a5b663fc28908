"""Which Paddle is installed, read from the installed distributions without importing it (the
commands check it before Paddle loads). The package depends on no Paddle wheel, so it keeps the
user's (``paddlepaddle`` or ``paddlepaddle-gpu``: both install ``paddle/``, one over the other
silently changes the device); the same for onnxruntime's. ``paddle_major`` is the one version
check: code past Paddle's public API runs on the checked lines only (``internals_checked``)."""
import ctypes
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

WHEELS = ('paddlepaddle', 'paddlepaddle-gpu')
ONNXRUNTIME_WHEELS = ('onnxruntime', 'onnxruntime-gpu')     # both install onnxruntime/
CUDNN_WHEELS = ('nvidia-cudnn-cu11', 'nvidia-cudnn-cu12', 'nvidia-cudnn-cu13')    # each writes nvidia/cudnn/lib
DRIVER_FILE = '/proc/driver/nvidia/version'      # Linux: the loaded NVIDIA kernel module's version line
CUDA_DRIVERS = {'11': 450, '12': 525, '13': 580}     # the least Linux NVIDIA driver of each CUDA major (NVIDIA's table)
TENSORRT_LIBRARY = 'libnvinfer.so.10'     # what onnxruntime-gpu's TensorRT provider loads (TensorRT 10)
TENSORRT_WHEELS = ('tensorrt', 'tensorrt-cu13', 'tensorrt-cu12', 'tensorrt-cu13-libs', 'tensorrt-cu12-libs')
CHECKED_MAJORS = (2, 3)     # Paddle 2.6 (CI's second venv) and 3.x
INSTALL = ('pip install paddlepaddle (CPU); for GPUs up to Ampere paddlepaddle-gpu==2.6.2 (CUDA 11.8), for Hopper '
           'and newer Paddle 3.x with CUDA 13 (cu130), both from the PaddlePaddle index (README, GPU)')


PADDLE_INDEX = 'https://www.paddlepaddle.org.cn/packages/stable/'     # Paddle 3.x's GPU wheels, per CUDA (cu126/)
NVIDIA_INDEX = 'https://pypi.nvidia.com'        # TensorRT's libraries and bindings (tensorrt-cu13's dependencies)
NO_PADDLE2ONNX = (3, 13)      # from this Python paddle2onnx has no wheel: the deployment extras' marker leaves it out


@dataclass(frozen=True)
class InstallRoute:
    """One way to install the toolkit with Paddle: Paddle's wheel, then the package with one extra. ``device``:
    for whom (the README's GPU table's first column; 'CPU' for the CPU route, README's Python line);
    ``paddle``: the Paddle requirement, ``cuda``: the folder of ``PADDLE_INDEX`` it comes from ('' for the
    package index); ``extra``: pyproject.toml's extra (its requirement files), ``nvidia``: it needs
    ``NVIDIA_INDEX`` too; ``pythons``: the lowest and highest Python 3 minor on which the whole route
    resolves to binary wheels on Linux x86-64 (``tools/dev/resolve_routes.py`` checks it with uv)."""
    device: str
    paddle: str
    cuda: str
    extra: str
    pythons: Tuple[int, int]
    nvidia: bool = False

    def command(self) -> str:
        """The route's pip commands, run from a checkout."""
        index = f' -i {PADDLE_INDEX}{self.cuda}/' if self.cuda else ''
        nvidia = f'--extra-index-url {NVIDIA_INDEX} ' if self.nvidia else ''
        return f'pip install {self.paddle}{index} && pip install {nvidia}".[{self.extra}]"'

    def python_range(self) -> str:
        """'3.9-3.12': the Pythons it resolves on."""
        low, high = self.pythons
        return f'3.{low}-3.{high}' if high > low else f'3.{low}'


# The one table of the install routes: README.md's GPU table and Python line, docs/deployment.md's resolver
# matrix and pyproject.toml's extras are held to it (tests/test_install_routes.py), the resolver checks it
# (tools/dev/resolve_routes.py). On 3.13 the extras leave paddle2onnx out (no cp313 wheel: ONNX export needs
# 3.12 or older, an exported folder runs anywhere), on 3.9 faster-coco-eval (none for cp39: pycocotools scores).
ROUTES = (
    InstallRoute('CPU', 'paddlepaddle', '', 'deploy', (9, 13)),
    InstallRoute('up to Ampere (RTX 30, A100), CUDA 11.8 or 12.0 with cuDNN 8 on the system', 'paddlepaddle-gpu==2.6.2',
                 '', 'deploy-paddle26', (9, 12)),
    InstallRoute('the same, onnxruntime on the GPU too (driver 580+)', 'paddlepaddle-gpu==2.6.2', '',
                 'deploy-gpu-paddle26', (11, 12)),
    InstallRoute('any, Hopper (H100) and newer too, CUDA 13 (driver 580+)', 'paddlepaddle-gpu', 'cu130', 'deploy-gpu',
                 (11, 13)),
    InstallRoute('the same with TensorRT for onnxruntime', 'paddlepaddle-gpu', 'cu130', 'deploy-tensorrt', (11, 13),
                 nvidia=True),
    InstallRoute('any, CUDA 12.6 (a driver older than 580)', 'paddlepaddle-gpu', 'cu126', 'deploy', (9, 13)),
)


def installed_wheels(names: Sequence[str] = WHEELS) -> Sequence[str]:
    """The wheels of ``names`` (default: Paddle's, ``WHEELS``) installed in this Python, in that order."""
    return [name for name in names if next(importlib.metadata.distributions(name=name), None) is not None]


def paddle_install_problem(wheels: Optional[Sequence[str]] = None,
                           importable: Callable[[], bool] = lambda: importlib.util.find_spec('paddle') is not None
                           ) -> Optional[str]:
    """A one-line message when Paddle's install is wrong, else None: no Paddle at all (neither
    wheel and no importable ``paddle``, such as a build from source), or both the CPU and the
    GPU wheel (one overwrote the other's files). ``wheels``: default ``installed_wheels()``."""
    wheels = installed_wheels() if wheels is None else wheels
    if len(wheels) > 1:
        return ('both paddlepaddle and paddlepaddle-gpu are installed, in the same paddle/ folder (the last one '
                'installed overwrote the other): pip uninstall -y paddlepaddle paddlepaddle-gpu, then install the one '
                'for your device')
    return f'PaddlePaddle is not installed: {INSTALL}' if not wheels and not importable() else None


def onnxruntime_install_problem(wheels: Optional[Sequence[str]] = None) -> Optional[str]:
    """A one-line message when both onnxruntime wheels are installed (``wheels``: default those
    of ``ONNXRUNTIME_WHEELS`` installed), else None: they share the onnxruntime/ folder, and
    the CPU one's files shadow the GPU one's (no CUDA provider)."""
    wheels = installed_wheels(ONNXRUNTIME_WHEELS) if wheels is None else wheels
    if len(wheels) < 2:
        return None
    return ('both onnxruntime and onnxruntime-gpu are installed, in the same onnxruntime/ folder (the CPU one shadows '
            'the GPU one): pip uninstall -y onnxruntime onnxruntime-gpu, then pip install onnxruntime-gpu for a GPU '
            '(requirements-deploy-gpu.txt) or onnxruntime for the CPU')


def cudnn_install_problem(versions: Optional[dict] = None) -> Optional[str]:
    """A one-line message when two cuDNN wheels of one cuDNN major are installed (``versions``: {wheel:
    version}, default those of ``CUDNN_WHEELS`` installed), else None: each writes
    nvidia/cudnn/lib/libcudnn*.so.<major>, so the last installed won and uninstalling either removes the
    other's files (Paddle's cu12 wheels pin nvidia-cudnn-cu12, onnxruntime-gpu's cudnn extra brings cu13)."""
    if versions is None:
        versions = {name: importlib.metadata.version(name) for name in installed_wheels(CUDNN_WHEELS)}
    majors: dict = {}
    for name, version in versions.items():
        majors.setdefault(version.split('.')[0], []).append(f'{name} {version}')
    clash = next((names for names in majors.values() if len(names) > 1), None)
    if clash is None:
        return None
    return (f'{" and ".join(clash)} are both installed, in the same nvidia/cudnn/lib folder (the last one installed '
            'overwrote the other, and uninstalling either removes both): keep one CUDA stack — README, GPU')


def nvidia_driver(path: str = DRIVER_FILE) -> Optional[str]:
    """The NVIDIA driver's version ('580.65.06') from the loaded kernel module, None without one."""
    try:
        line = open(path).readline()
    except OSError:
        return None
    words = [word for word in line.split() if word[:1].isdigit() and '.' in word]
    return words[0] if words else None


def cuda_device(number: int, library: str = 'libcuda.so.1') -> Optional[str]:
    """GPU ``number``'s name and compute capability ('NVIDIA L4 sm89') from the NVIDIA driver's own
    ``library`` (CUDA's driver API: no runtime, Paddle or onnxruntime needed), None without one."""
    device, major, minor, name = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.create_string_buffer(96)
    try:
        cuda = ctypes.CDLL(library)
        failed = (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(device), number)
                  or cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)       # ..._COMPUTE_CAPABILITY_MAJOR
                  or cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)       # ..._COMPUTE_CAPABILITY_MINOR
                  or cuda.cuDeviceGetName(name, len(name), device))
    except (OSError, AttributeError):
        return None
    return None if failed else f'{name.value.decode(errors="replace")} sm{major.value}{minor.value}'


def onnxruntime_cuda() -> Optional[str]:
    """The CUDA version the installed onnxruntime was built for ('13.0'), from its own
    ``capi.build_and_package_info`` (written by its build); None for a CPU build or without onnxruntime."""
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return getattr(build_and_package_info, 'cuda_version', None) or None


def driver_problem(driver: Optional[str], cuda: Optional[str]) -> str:
    """'' when ``driver`` (a version) runs CUDA ``cuda`` (what onnxruntime was built for, ``onnxruntime_cuda``;
    ``CUDA_DRIVERS``) or either is unknown, else a sentence saying so."""
    least = CUDA_DRIVERS.get((cuda or '').split('.')[0])
    if not least or not driver or not driver.split('.')[0].isdigit() or int(driver.split('.')[0]) >= least:
        return ''
    return (f" This machine's NVIDIA driver is {driver}; this onnxruntime-gpu is built for CUDA {cuda}, which "
            f'needs driver {least} or newer: update the driver, or use the CPU.')


def tensorrt_version(library: str = TENSORRT_LIBRARY) -> Optional[str]:
    """TensorRT's version ('10.13.3') as its ``library`` reports it (``getInferLibVersion``; the one a runtime
    loads, from a wheel already loaded or the system's), None where it cannot be loaded."""
    try:
        number = int(ctypes.CDLL(library).getInferLibVersion())
    except (OSError, AttributeError):
        return None
    return f'{number // 10000}.{number // 100 % 100}.{number % 100}'


def paddle_major() -> int:
    """The installed Paddle's major version (2 or 3: their kernels and saved formats differ;
    0 for a development build)."""
    from solov2.core.paddle_import import import_paddle
    return int(import_paddle().__version__.split('.')[0])


def internals_checked() -> bool:
    """Whether the installed Paddle is of a line (``CHECKED_MAJORS``) that the internals the
    toolkit touches were checked on."""
    return paddle_major() in CHECKED_MAJORS
