"""The model to open, ``ModelSpec``, with its one check; ``exported_backend``, the one opener of
an exported folder by its engine's name, and ``dygraph_backend``, of a checkpoint
(``backend_factory`` and ``auto_backend`` use them)."""
import numbers
import os
from dataclasses import dataclass
from typing import Callable, Optional, Union

from solov2.config import get_config, with_overrides
from solov2.config.device import device_name, on_gpu
from solov2.config.engines import BACKENDS, EXPORTED, PRECISIONS
from solov2.config.model_fields import ModelFields
from solov2.core.cache import cache_of
from solov2.core.errors import InputError, param
from solov2.model.inference.backend import BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.exported_folder import ExportedBackend
from solov2.model.inference.onnxruntime_backend import OnnxBackend
from solov2.model.inference.openvino_backend import OpenVinoBackend
from solov2.model.inference.paddle_inference_backend import InferenceBackend
from solov2.model.runtime import cpu_threads, launched_here

Progress = Callable[[str, float], None]      # progress(stage, fraction): auto's first export (auto_backend.STAGES)


@dataclass(frozen=True)
class ModelSpec(ModelFields):
    """The model to open and the engine to run it on, as ``Segmenter``, the service and the
    commands take it (``backend_factory.open_backend`` opens it; ``check`` refuses what cannot work).

    ``weights``: a project checkpoint (.pdparams) or a published name (``solov2.api`` fetches it); ``config``: its
    config number (default: the sidecar's, or the export's); ``backend``: one of ``BACKENDS``; ``model_dir``: an
    exported folder, for 'inference', 'onnx' and 'openvino'; ``precision``: f32 | bf16 | int8 (openvino; None: f32
    there, and for 'auto' f32 or bf16 where the CPU has it natively and it proved itself, 'f32': f32 only);
    ``device``: 'cpu', 'gpu' or 'gpu:N' (None: the GPU if Paddle has one; ``check`` names it once,
    ``config.device.device_name``); ``threads``: CPU math threads (0: this process's share of the cores among
    those ``paddle.distributed.launch`` started here, ``model.runtime.cpu_threads``, resolved when the spec is
    made); ``overrides``: config changes, ``['name=value', ...]`` or ``{'name': value}``
    (kept as a tuple of strings); ``mkldnn``: Paddle Inference with oneDNN; ``tensorrt``: Paddle Inference or
    onnxruntime through TensorRT float16 on a GPU; ``fast_decode``: a JPEG much larger than the network's input
    decoded by the codec at 1/2, 1/4 or 1/8 where nothing needs its full pixels (``reading.PictureReader``;
    docs/api.md)."""
    backend: str = 'auto'
    model_dir: Union[str, os.PathLike, None] = None
    precision: Optional[str] = None
    mkldnn: bool = False
    tensorrt: bool = False
    fast_decode: bool = False

    def __post_init__(self):
        """Normalised once, when made (``ModelFields``'s paths and overrides, ``device`` named as the
        toolkit names it: InputError for a name that is no device, and ``threads`` 0 resolved to this
        process's share), so every reader sees one spelling and one count; a bad ``threads`` is left to
        ``check``, which names it."""
        super().__post_init__()
        object.__setattr__(self, 'device', device_name(self.device))
        if self.threads == 0 and not isinstance(self.threads, bool):
            object.__setattr__(self, 'threads', cpu_threads(0, launched_here()))

    def check(self, named: Optional[Callable[[Optional[str], Optional[int]], Optional[int]]] = None
              ) -> Optional[int]:
        """InputError (BackendError for the engine's choices) naming the field that cannot work, without
        reading a file (so before a fetch or an export). ``named(weights, config)``: the config number of
        a published name (``convert.zoo.checked_config``, passed by ``solov2.api``); without it ``config``.
        Returns the config number the overrides were checked on (None: only the weights will tell). It does
        not check what needs a file: that the weights or the folder exist and load, that the weights fit
        the config, or that the engine is installed; the opener does, when it reads them."""
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
        if self.tensorrt and (backend not in ('inference', 'onnx') or self.device is None or not on_gpu(self.device)):
            raise BackendError(param('tensorrt'), ' needs ', param('backend', 'inference', 'onnx'), ' and a GPU ',
                               param('device'))
        if backend in EXPORTED and not self.model_dir:
            raise BackendError(param('backend', backend), ' needs ', param('model_dir'),
                               ' (a folder from solov2 export / tools/export_model.py)')
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


def exported_backend(spec: ModelSpec, compiled: Optional[str] = None, pinned: bool = False,
                     **openvino) -> ExportedBackend:
    """The backend of ``spec``'s exported folder by its ``backend`` name ('inference', 'onnx' or 'openvino'), on
    ``device`` (None: the CPU); ``compiled``: the cache's folder of OpenVINO's compiled models
    (``core.cache.compiled_cache``; None: no cache), beside which TensorRT's engines are entries of their own
    (``ExportedBackend.tensorrt_engines``); ``pinned``: ``auto`` runs it as its cache entry pins it;
    ``openvino``: quantization's own OpenVINO options (``buckets``, ``compiled_model``: ``OpenVinoBackend``).
    BackendError on another name."""
    kind, folder, threads, device = spec.backend, spec.model_dir, spec.threads, spec.device or 'cpu'
    either = {'overrides': spec.overrides, 'device': device, 'tensorrt': spec.tensorrt,
              'engine_cache': cache_of(compiled), 'pinned': pinned}
    if kind == 'inference':
        return InferenceBackend(folder, threads, mkldnn=spec.mkldnn, **either)
    if kind == 'onnx':
        return OnnxBackend(folder, threads, **either)
    if kind == 'openvino' and on_gpu(device):
        raise BackendError("the openvino backend runs on the CPU here; on a GPU use 'inference' or 'onnx'")
    if kind == 'openvino':
        return OpenVinoBackend(folder, threads, precision=spec.precision or 'f32', overrides=spec.overrides,
                               compiled_cache=compiled, pinned=pinned, **openvino)
    raise BackendError(f"unknown exported backend '{kind}' (expected one of {', '.join(EXPORTED)})")


def dygraph_backend(spec: ModelSpec, cfg, fallback: Optional[str] = None) -> DygraphBackend:
    """The Paddle model of ``spec``'s checkpoint on its ``device`` and ``threads``; ``cfg``: its config
    with the sidecar applied (``config.sidecar.resolve_config``); ``fallback``: why it runs instead of the
    engine asked for (``Backend.fallback``)."""
    return DygraphBackend(cfg, spec.weights, spec.device, sidecar=False, threads=spec.threads, fallback=fallback)
