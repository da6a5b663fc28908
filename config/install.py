"""Which Paddle is installed, read from the installed distributions without importing it (the
commands check it before Paddle loads). The package depends on no Paddle wheel, so it keeps the
user's (``paddlepaddle`` or ``paddlepaddle-gpu``: both install ``paddle/``, one over the other
silently changes the device); the same for onnxruntime's. ``paddle_major`` is the one version
check: code past Paddle's public API runs on the checked lines only (``internals_checked``)."""
import importlib.metadata
import importlib.util
from typing import Callable, Optional, Sequence

WHEELS = ('paddlepaddle', 'paddlepaddle-gpu')
ONNXRUNTIME_WHEELS = ('onnxruntime', 'onnxruntime-gpu')     # both install onnxruntime/
CHECKED_MAJORS = (2, 3)     # Paddle 2.6 (CI's second venv) and 3.x
INSTALL = ('pip install paddlepaddle (CPU); for GPUs up to Ampere paddlepaddle-gpu==2.6.2 (CUDA 11.8), for Hopper '
           'Paddle 3.x with CUDA 12, both from the PaddlePaddle index (README, GPU)')


def installed_wheels(names: Sequence[str] = WHEELS) -> Sequence[str]:
    """The wheels of ``names`` (default: Paddle's, ``WHEELS``) installed in this Python, in that order."""
    found = []
    for name in names:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


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


def paddle_major() -> int:
    """The installed Paddle's major version (2 or 3: their kernels and saved formats differ;
    0 for a development build)."""
    from solov2.core.paddle_import import import_paddle
    return int(import_paddle().__version__.split('.')[0])


def internals_checked() -> bool:
    """Whether the installed Paddle is of a line (``CHECKED_MAJORS``) that the internals the
    toolkit touches were checked on."""
    return paddle_major() in CHECKED_MAJORS
