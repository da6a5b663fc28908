"""The ``onnx`` backend: onnxruntime on an exported folder's ``model.onnx``, on the CPU or a GPU,
optionally through TensorRT (``onnx_providers``; a session that fell back from the GPU to the CPU
is refused, ``check_providers``; none falls back after that, ``OnnxBackend.run``)."""
import contextlib
import importlib
import threading
from typing import Callable, List, Optional, Sequence

import numpy as np

from solov2.config.device import gpu_number, on_gpu
from solov2.config.install import (
    cudnn_install_problem,
    driver_problem,
    nvidia_driver,
    onnxruntime_cuda,
    onnxruntime_install_problem,
    tensorrt_version,
)
from solov2.core.cache import EngineFiles
from solov2.core.errors import RunError
from solov2.model.inference.backend import BackendError
from solov2.model.inference.export_network import (
    INPUT_NAME,
    OUTPUT_NAMES,
    TENSORRT_MAX_BATCH,
    network_feed,
)
from solov2.model.inference.exported_folder import ExportedBackend, loading
from solov2.model.runtime import cpu_threads

CUDA, TENSORRT = 'CUDAExecutionProvider', 'TensorrtExecutionProvider'
# the engines the TensorRT provider writes in trt_engine_cache_path, each with the .profile of its explicit profile
# (an engine found without it is built again, into the entry's final folder: onnxruntime's SerializeProfileV2)
ENGINE_FILES = EngineFiles('*.engine', ('.profile',))


def tensorrt_options(number: int, size_range, engine_cache: Optional[str]) -> dict:
    """onnxruntime's TensorRT provider options on GPU ``number``: float16, one profile of the plain graph's
    one input from 1 picture of ``size_range``'s smallest side to ``TENSORRT_MAX_BATCH`` of its largest,
    engines kept in ``engine_cache`` (None: built at each start). The regions graph never runs through
    TensorRT (``OnnxBackend``: batches of one size)."""
    low, high = size_range
    shapes = {key: f'{INPUT_NAME}:{batch}x3x{side}x{side}'
              for key, batch, side in (('trt_profile_min_shapes', 1, low), ('trt_profile_opt_shapes', 1, high),
                                       ('trt_profile_max_shapes', TENSORRT_MAX_BATCH, high))}
    cache = {'trt_engine_cache_enable': True, 'trt_engine_cache_path': engine_cache} if engine_cache else {}
    return {'device_id': number, 'trt_fp16_enable': True, **shapes, **cache}


def onnx_providers(device: str, available: Sequence[str], tensorrt: bool = False, size_range=(0, 0),
                   engine_cache: Optional[str] = None) -> list:
    """onnxruntime's execution providers for ``device``: the CPU's, or the CUDA provider on GPU N first
    (cuDNN's HEURISTIC algorithm choice: EXHAUSTIVE times them again for each input size), the CPU's
    after; ``tensorrt``: TensorRT's before CUDA's (``tensorrt_options``). ``available``:
    ``onnxruntime.get_available_providers()``. BackendError when a GPU (or TensorRT) is asked of an
    onnxruntime without its provider."""
    if not on_gpu(device):
        return ['CPUExecutionProvider']
    for provider, name, also in [(CUDA, 'CUDA', ', or use the CPU')] + [
            (TENSORRT, 'TensorRT', ' with the TensorRT libraries it was built for')] * tensorrt:
        if provider not in available:
            raise BackendError(f"this onnxruntime has no {name} provider (it has {', '.join(available)}): "
                               + (onnxruntime_install_problem()
                                  or f'pip install onnxruntime-gpu in its place (requirements-deploy-gpu.txt){also}'))
    number = gpu_number(device)
    cuda = (CUDA, {'device_id': number, 'cudnn_conv_algo_search': 'HEURISTIC'})
    first = [(TENSORRT, tensorrt_options(number, size_range, engine_cache))] if tensorrt else []
    return first + [cuda, 'CPUExecutionProvider']


def check_providers(session, providers: list, version: str) -> None:
    """BackendError when ``providers`` asked for CUDA (or TensorRT) and the ``session`` did not get it
    (onnxruntime falls back when a provider's libraries are missing or of another version)."""
    asked = {provider[0] for provider in providers if isinstance(provider, tuple)}
    if asked <= set(session.get_providers()):
        return
    if TENSORRT in asked and CUDA in session.get_providers():
        raise BackendError(f'onnxruntime {version} did not start its TensorRT provider: install the TensorRT '
                           'libraries this onnxruntime-gpu was built for, or run without tensorrt')
    raise BackendError(f'onnxruntime {version} fell back to the CPU: its CUDA provider did not start. '
                       + (onnxruntime_install_problem() or cudnn_install_problem()
                          or 'Install the CUDA and cuDNN libraries this onnxruntime-gpu was built for (onnxruntime.ai, '
                             'CUDA Execution Provider, Requirements), or use the CPU.'
                             + driver_problem(nvidia_driver(), onnxruntime_cuda())))


def provider_problem(providers: list, path) -> Callable[[Exception, str], Optional[str]]:
    """``loading``'s ``explain`` for a session of ``path`` opened with ``providers``: a failure of the
    TensorRT or CUDA provider (onnxruntime's EPFail, or Fail in its words) as the line saying which, in the
    runtime's own words, with what to do; None for another failure (a damaged file)."""
    def explain(exc: Exception, first: str) -> Optional[str]:
        from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail
        asked = [provider for provider in providers if isinstance(provider, tuple)]
        words = str(exc).lower()
        if not asked or not (isinstance(exc, EPFail) or isinstance(exc, Fail) and ('tensorrt' in words or
                                                                                   'cuda' in words)):
            return None
        if asked[0][0] != TENSORRT or 'tensorrt' not in words and 'trt' not in words and 'profile' not in words:
            return (f"onnxruntime's CUDA provider could not open {path} ({first}): check the CUDA and cuDNN "
                    'this onnxruntime-gpu was built for, or use the CPU')
        covered = sorted({part.split(':')[0] for part in asked[0][1]['trt_profile_min_shapes'].split(',')})
        unprofiled = ('; an input of a TensorRT subgraph has no profile (the profile covers '
                      f"{', '.join(covered)})") if 'dynamic shape' in words or 'profile' in words else ''
        return (f"onnxruntime's TensorRT provider could not open {path} ({first}){unprofiled}: run without "
                'tensorrt (the CUDA provider alone), or report it with the model')
    return explain


class OnnxBackend(ExportedBackend):
    """onnxruntime with ``threads`` intra-op threads (0 = every core; idle, they sleep rather than spin,
    docs/deployment.md#backends) on ``device`` (``tensorrt``: through TensorRT float16, engines in an
    entry of the ``engine_cache`` folder, ``tensorrt_engines``); safe from several threads. A batch of
    several sizes runs the regions graph (``model_regions.onnx``, opened on first use); with ``tensorrt``
    batches hold one size (``mixes_sizes`` False): that graph's output shape follows the values of its
    ``regions`` input, which TensorRT may take as a shape tensor, whose profile onnxruntime would then apply
    to the values (``ApplyProfileShapesFromProviderOptions``), so it never meets TensorRT. No fallback
    after opening. On a GPU the providers' libraries are loaded from their wheels before a session opens:
    CUDA and cuDNN (``preload_dlls``, onnxruntime-gpu >= 1.21), and with ``tensorrt`` TensorRT's (importing
    the ``tensorrt`` package; without it, the system's)."""
    name = 'onnx'

    def __init__(self, model_dir: str, threads: int = 0, overrides: Sequence[str] = (), device: str = 'cpu',
                 tensorrt: bool = False, engine_cache: Optional[str] = None, pinned: bool = False):
        super().__init__(model_dir, overrides, device, tensorrt, engine_cache, pinned)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError('the onnx backend needs onnxruntime: pip install -r requirements-deploy.txt')
        self.files, self.options = self.model_files('onnx'), ort.SessionOptions()
        self.options.intra_op_num_threads = cpu_threads(threads)
        self.options.inter_op_num_threads = 1
        self.options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self.options.log_severity_level = 3
        onnx_providers(device, ort.get_available_providers(), tensorrt)     # a provider it lacks: before loading
        if on_gpu(device):         # its providers' libraries loaded before a session opens (class docstring)
            if hasattr(ort, 'preload_dlls'):
                ort.preload_dlls()
            if tensorrt:
                with contextlib.suppress(ImportError):
                    importlib.import_module('tensorrt')
        self.sessions, self.lock = {}, threading.Lock()
        self.session = self.session_for(False)
        self.mixes_sizes = 'regions_model' in self.files and not tensorrt     # regions never meet TensorRT

    def session_for(self, regions: bool):
        """The session of the plain or the regions graph, opened on first use, providers checked; BackendError
        for the regions graph through TensorRT (class docstring)."""
        import onnxruntime as ort
        if regions and self.tensorrt:
            raise BackendError('the onnx engine through TensorRT runs one input size a batch (its regions graph '
                               'does not run through TensorRT): run batches of one size, or open it without tensorrt')
        with self.lock:
            if regions not in self.sessions:
                path = self.model_file(self.files, 'regions_model' if regions else 'model')
                version = (tensorrt_version() or 'none') if self.tensorrt and self.engine_cache else ''
                with self.tensorrt_engines([path], 'onnxruntime', version, ENGINE_FILES) as engines:
                    providers = onnx_providers(self.device, ort.get_available_providers(), self.tensorrt,
                                               self.size_range, engines)
                    with loading(str(path), provider_problem(providers, path)):
                        session = ort.InferenceSession(str(path), self.options, providers=providers)
                    check_providers(session, providers, ort.__version__)    # no entry for a provider not started
                session.disable_fallback()
                self.sessions[regions] = session
            return self.sessions[regions]

    def compile_ahead(self, max_batch: int, mixed: bool = False) -> None:
        """Open the regions graph's session now when batches will be ``mixed``."""
        super().compile_ahead(max_batch, mixed)
        if mixed and self.mixes_sizes:
            self.session_for(True)

    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """The network's outputs; RunError naming the provider that failed during the run (rather
        than onnxruntime's fallback for the rest of the process)."""
        from onnxruntime.capi.onnxruntime_pybind11_state import EPFail
        session = self.session if regions is None else self.session_for(True)
        names = [value.name for value in session.get_inputs()]
        try:
            return session.run(list(OUTPUT_NAMES), network_feed(names, batch, regions))
        except EPFail as exc:
            first = next(iter(str(exc).strip().splitlines()), '')[:300]
            raise RunError(f"onnxruntime's {session.get_providers()[0]} failed during a run ({first}); nothing "
                           'falls back after start: fix the provider, or open the model without it') from exc
