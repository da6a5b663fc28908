"""Inference backends by name: the one factory behind demo.py, eval.py, the export tools,
``solov2.api.Segmenter`` and the service. ``ModelSpec`` describes the model to open (weights or
an exported folder, config, engine and its settings) with its one check; ``open_backend`` opens it.

- ``auto`` (the default of demo.py and eval.py): exported once into a cache and run in OpenVINO
  or onnxruntime f32, whichever was faster when timed on this CPU, or OpenVINO bf16 on a CPU with
  native bf16 where it kept f32's instances and was faster (precision unset;
  ``model.inference.auto_backend``);
- ``dygraph``: ``model.inference.dygraph_backend.DygraphBackend``, the Paddle model from a checkpoint;
- ``inference``: ``paddle.inference`` on an exported model folder (CPU or GPU, TensorRT as an option);
- ``onnx``: onnxruntime on an exported model folder (the CPU provider, or the CUDA one on a GPU);
- ``openvino``: OpenVINO on an exported model folder, ``precision`` f32 | bf16 | int8.
"""
import numbers
import os
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Optional, Sequence, Tuple, Union

from solov2.config import get_config, with_overrides
from solov2.config.device import device_name, on_gpu
from solov2.config.engines import BACKENDS, EXPORTED, PRECISIONS
from solov2.config.sidecar import read_sidecar, resolve_config
from solov2.core.cache import compiled_cache
from solov2.core.errors import InputError, param
from solov2.model.checkpoint import check_unrecorded, check_weights_file
from solov2.model.distributed import SINGLE, Processes, local_rank0_first
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.onnxruntime_backend import OnnxBackend
from solov2.model.inference.openvino_backend import OpenVinoBackend
from solov2.model.inference.paddle_inference_backend import InferenceBackend
from solov2.model.runtime import cpu_threads, resolve_device

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ModelSpec:
    """The model to open and the engine to run it on, as ``Segmenter``, the service and the
    commands take it (``open_backend`` opens it; ``check`` refuses what cannot work).

    ``weights``: a project checkpoint (.pdparams) or a published name (``solov2.api`` fetches
    it); ``config``: its config number (default: the sidecar's, or the export's); ``backend``:
    one of ``BACKENDS``; ``model_dir``: an exported folder, for 'inference', 'onnx' and
    'openvino'; ``precision``: f32 | bf16 | int8 (openvino; None: f32 there, and for 'auto' f32 or
    bf16 where the CPU has it natively and it proved itself, 'f32': f32 only); ``device``: 'cpu', 'gpu' or 'gpu:N'
    (None: the GPU if Paddle has one); ``threads``: CPU math threads (0: this process's share of
    the cores, ``model.runtime.cpu_threads``); ``overrides``: config changes, ``['name=value',
    ...]`` or ``{'name': value}`` (kept as a tuple of strings); ``mkldnn``: Paddle Inference
    with oneDNN; ``tensorrt``: Paddle Inference or onnxruntime through TensorRT float16 on a GPU;
    ``fast_decode``: a JPEG much larger than the network's input decoded by the codec at 1/2, 1/4
    or 1/8 where nothing needs its full pixels (``Backend.decode_fit``; docs/api.md)."""
    weights: Union[str, os.PathLike, None] = None
    config: Optional[int] = None
    backend: str = 'auto'
    model_dir: Union[str, os.PathLike, None] = None
    precision: Optional[str] = None
    device: Optional[str] = None
    threads: int = 0
    overrides: Sequence[str] = ()
    mkldnn: bool = False
    tensorrt: bool = False
    fast_decode: bool = False

    def __post_init__(self):
        """Paths as strings, ``overrides`` as a tuple of 'name=value' strings (a string or
        another type stays as it is, for ``check`` to refuse)."""
        overrides = () if self.overrides is None else self.overrides
        if isinstance(overrides, Mapping):
            overrides = [f'{name}={value!r}' for name, value in overrides.items()]
        for name, value in (('weights', _text(self.weights)), ('model_dir', _text(self.model_dir)),
                            ('overrides', tuple(overrides) if isinstance(overrides, (list, tuple)) else overrides)):
            object.__setattr__(self, name, value)

    def check(self, named: Optional[Callable[[Optional[str], Optional[int]], Optional[int]]] = None
              ) -> Optional[int]:
        """InputError (BackendError for the engine's choices) naming the field that cannot work,
        found without reading a file, so before a published name is fetched or anything is
        exported: every field but ``weights`` and ``mkldnn`` (the ``overrides`` on the config).
        ``named(weights, config)``: the config number of a published name in ``weights``, refusing
        another ``config`` (``convert.zoo.checked_config``, which ``solov2.api`` passes: this layer
        knows no names); without it, ``config``. Returns the config number the overrides were
        checked on (None when only the weights will tell)."""
        backend, precision, config, threads = self.backend, self.precision, self.config, self.threads
        if config is not None and (isinstance(config, bool) or not isinstance(config, numbers.Integral)):
            raise InputError(param('config'), f' takes a config number, not {config!r}')
        number = named(self.weights, config) if named else config
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend '{backend}' (expected one of {', '.join(BACKENDS)})")
        if precision is not None and precision not in PRECISIONS:
            raise BackendError(f"unknown precision '{precision}' (expected one of {', '.join(PRECISIONS)})")
        if precision not in (None, 'f32') and backend != 'openvino':
            raise BackendError(param('precision', precision), ' needs ', param('backend', 'openvino'),
                               ' (auto chooses bf16 itself where the CPU has it and it keeps the f32 instances)')
        if self.model_dir and backend not in EXPORTED:
            raise BackendError(param('model_dir'), ' needs ', param('backend', *EXPORTED), f' (not {backend})')
        device = device_name(self.device)
        if self.tensorrt and (backend not in ('inference', 'onnx') or device is None or not on_gpu(device)):
            raise BackendError(param('tensorrt'), ' needs ', param('backend', 'inference', 'onnx'), ' and a GPU ',
                               param('device'))
        if backend in EXPORTED and not self.model_dir:
            raise BackendError(param('backend', backend), ' needs ', param('model_dir'),
                               ' (a folder from tools/export_model.py)')
        if not isinstance(self.fast_decode, bool):
            raise InputError(param('fast_decode'), f' takes True or False, not {self.fast_decode!r}')
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise InputError(param('threads'), f' takes a whole number, 0 (every core) or more, not {threads!r}')
        if not isinstance(self.overrides, tuple) or not all(isinstance(item, str) for item in self.overrides):
            raise InputError(param('overrides'), " takes a dict or a list of 'name=value' strings, not "
                             f'{self.overrides!r}')
        if number is not None:
            with_overrides(get_config(number), self.overrides)
        return number


def _text(path):
    """A path given as ``os.PathLike`` as its string; anything else as it is."""
    return os.fspath(path) if isinstance(path, os.PathLike) else path


def exported_backend(spec: ModelSpec, compiled: Optional[str] = None) -> Backend:
    """The backend of ``spec``'s exported folder (``model_dir``) by its ``backend`` name, the one
    way every caller opens one: 'inference' and 'onnx' (Paddle Inference, ``mkldnn``: with oneDNN;
    onnxruntime; on a GPU ``tensorrt``: through TensorRT float16, its engines kept in a folder of
    ``compiled`` of the model's own) or 'openvino' (``precision`` f32 | bf16 | int8;
    ``compiled``: the folder where OpenVINO keeps its compiled models, ``core.cache.compiled_cache``;
    None: none; CPU only), on ``device`` as it is (None: the CPU)
    with ``threads`` (0: every core). BackendError on another name."""
    kind, folder, threads, overrides, device = spec.backend, spec.model_dir, spec.threads, spec.overrides, spec.device
    if kind == 'inference':
        return InferenceBackend(folder, threads, mkldnn=spec.mkldnn, overrides=overrides, device=device or 'cpu',
                                tensorrt=spec.tensorrt, engine_cache=compiled)
    if kind == 'onnx':
        return OnnxBackend(folder, threads, overrides=overrides, device=device or 'cpu', tensorrt=spec.tensorrt,
                           engine_cache=compiled)
    if kind == 'openvino' and device and on_gpu(device):
        raise BackendError("the openvino backend runs on the CPU here; on a GPU use 'inference' or 'onnx'")
    if kind == 'openvino':
        return OpenVinoBackend(folder, threads, precision=spec.precision or 'f32', overrides=overrides,
                               compiled_cache=compiled)
    raise BackendError(f"unknown exported backend '{kind}' (expected one of {', '.join(EXPORTED)})")


def checked_weights(spec: ModelSpec) -> Tuple[int, type]:
    """(number, config) of ``spec``'s checkpoint (``config.sidecar.resolve_config``) after checking
    the path names a file and, without a sidecar, that the weights fit ``spec.config``
    (``model.checkpoint.check_unrecorded``); InputError naming the fix (none given, a folder,
    a typo, the config they fit)."""
    weights = spec.weights
    if not weights:
        raise InputError('pass ', param('weights'), ' (a .pdparams checkpoint) or ', param('backend', *EXPORTED),
                         ' with ', param('model_dir'), ' (an exported folder)')
    check_weights_file(weights)
    if read_sidecar(weights) is None:
        check_unrecorded(weights, spec.config, spec.overrides)     # before an export: names the configs they fit
    return resolve_config(weights, spec.config, spec.overrides)


def open_backend(spec: ModelSpec, *, resolved: Optional[Tuple[int, type]] = None, processes: Processes = SINGLE,
                 cache_dir: Optional[str] = None, progress: Optional[Progress] = None) -> Tuple[int, Backend]:
    """(config number, backend) of ``spec`` ready to run (``spec.check`` first; its weights a
    checkpoint's path, not a published name): ``weights`` for 'auto' and 'dygraph', ``model_dir``
    for 'inference', 'onnx' and 'openvino'. ``resolved``: ``checked_weights``'s (number, config)
    when the caller has it already. ``device`` and ``threads`` are the backend's own (``threads``
    0: this process's share of the cores among ``processes.local_size`` on the machine); the
    process's Paddle settings are left as they are (``model.runtime.paddle_on``). Under the
    launcher (``processes``, ``model.distributed``) 'auto' exports into the cache on each
    node's first process while the others wait, then all load it. ``cache_dir``: the export
    cache (default ``$SOLOV2_CACHE``, ``core.paths.cache_root``); ``progress(stage, fraction)``
    hears 'auto''s first export (``auto_backend.cached_backend``). On a GPU 'auto' is 'dygraph';
    'inference' and 'onnx' run on a GPU when ``device`` names one, else on the CPU; 'openvino'
    runs on the CPU only. Raises InputError (or a subclass: BackendError, CheckpointError) with
    a one-line message."""
    number, backend = _opened(spec, resolved, processes, cache_dir, progress)
    backend.fast_decode = spec.fast_decode       # how its pictures are read (``Backend.decode_fit``)
    return number, backend


def _opened(spec: ModelSpec, resolved: Optional[Tuple[int, type]], processes: Processes, cache_dir: Optional[str],
            progress: Optional[Progress]) -> Tuple[int, Backend]:
    spec.check()
    chosen = resolve_device(spec.device)      # InputError naming the fix for a GPU this Paddle cannot use
    threads = cpu_threads(spec.threads, processes.local_size)
    if spec.backend == 'dygraph' or (spec.backend == 'auto' and on_gpu(chosen)):
        number, cfg = resolved or checked_weights(spec)
        return number, DygraphBackend(cfg, spec.weights, chosen, sidecar=False, threads=threads)
    from solov2.model.inference import auto_backend  # it opens its engines here: imported once we run
    if spec.backend == 'auto':
        number, cfg = resolved or checked_weights(spec)
        return number, local_rank0_first(lambda: auto_backend.cached_backend(
            number, cfg, spec.weights, overrides=spec.overrides, threads=threads, cache_dir=cache_dir,
            progress=progress, precision=spec.precision)[1], processes)
    exported_on = chosen if spec.device is not None else 'cpu'      # an exported model runs on a GPU only when named
    opened = exported_backend(replace(spec, threads=threads, device=exported_on), compiled_cache(cache_dir))
    if spec.config is not None and spec.config != opened.number:
        raise BackendError(f'{spec.model_dir} was exported from config {opened.number}, not ',
                           param('config', spec.config))
    return opened.number, opened
