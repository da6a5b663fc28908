"""Inference backends by name: the one factory behind demo.py, eval.py, the export tools and
``model.api.Segmenter``.

- ``auto`` (the default of demo.py and eval.py): exported once into a cache and run at full
  f32 accuracy in OpenVINO or onnxruntime, whichever was faster when it exported
  (``model.inference.auto_backend``);
- ``dygraph``: ``model.inference.dygraph_backend.DygraphBackend``, the Paddle model from a checkpoint;
- ``inference``: ``paddle.inference`` on an exported model folder (CPU or GPU, TensorRT as an option);
- ``onnx``: onnxruntime on an exported model folder (the CPU provider, or the CUDA one on a GPU);
- ``openvino``: OpenVINO on an exported model folder, ``precision`` f32 | bf16 | int8.
"""
import numbers
from typing import Callable, Optional, Sequence, Tuple

from solov2.config import get_config, with_overrides
from solov2.config.device import device_name, on_gpu
from solov2.config.sidecar import read_sidecar, resolve_config
from solov2.core.errors import InputError, param
from solov2.core.paths import cache_root
from solov2.model.checkpoint import check_unrecorded, check_weights_file
from solov2.model.distributed import SINGLE, Processes, local_rank0_first
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.onnxruntime_backend import OnnxBackend
from solov2.model.inference.openvino_backend import PRECISIONS, OpenVinoBackend
from solov2.model.inference.paddle_inference_backend import InferenceBackend
from solov2.model.runtime import cpu_threads, resolve_device

BACKENDS = ('auto', 'dygraph', 'inference', 'onnx', 'openvino')
EXPORTED = ('inference', 'onnx', 'openvino')   # exported_backend's names
Progress = Callable[[str, float], None]


def exported_backend(kind: str, model_dir: str, threads: int = 0, precision: str = 'f32',
                     overrides: Sequence[str] = (), mkldnn: bool = False, compiled: Optional[str] = None,
                     device: str = 'cpu', tensorrt: bool = False) -> Backend:
    """The backend of an exported model folder by name, the one way every caller opens one: 'inference'
    (Paddle Inference; ``mkldnn``: with oneDNN; on a GPU ``tensorrt``: TensorRT float16), 'onnx'
    (onnxruntime) or 'openvino' (``precision`` f32 | bf16 | int8; ``compiled``: the folder where OpenVINO
    keeps its compiled models, ``auto_backend.compiled_cache``; None: none; CPU only). ``device``: 'cpu',
    'gpu' or 'gpu:N'. ``overrides``: ``['name=value', ...]`` config changes. BackendError on another name."""
    if kind == 'inference':
        return InferenceBackend(model_dir, threads, mkldnn, overrides, device, tensorrt)
    if kind == 'onnx':
        return OnnxBackend(model_dir, threads, overrides, device)
    if kind == 'openvino' and on_gpu(device):
        raise BackendError("the openvino backend runs on the CPU here; on a GPU use 'inference' or 'onnx'")
    if kind == 'openvino':
        return OpenVinoBackend(model_dir, threads, precision, overrides, compiled_cache=compiled)
    raise BackendError(f"unknown exported backend '{kind}' (expected one of {', '.join(EXPORTED)})")


def checked_weights(weights: Optional[str], number: Optional[int], overrides: Sequence[str]) -> Tuple[int, type]:
    """(number, config) of a checkpoint (``config.sidecar.resolve_config``) after checking the
    path names a file and, without a sidecar, that the weights fit config ``number``
    (``model.checkpoint.check_unrecorded``); InputError naming the fix (none given, a folder,
    a typo, the config they fit)."""
    if not weights:
        raise InputError('pass ', param('weights'), ' (a .pdparams checkpoint) or ', param('backend', *EXPORTED),
                         ' with ', param('model_dir'), ' (an exported folder)')
    check_weights_file(weights)
    if read_sidecar(weights) is None:
        check_unrecorded(weights, number, overrides)     # before an export: names the configs they fit
    return resolve_config(weights, number, overrides)


def check_choices(backend: str = 'auto', precision: str = 'f32', model_dir: Optional[str] = None,
                  device: Optional[str] = None, threads: int = 0, number: Optional[int] = None,
                  overrides: Sequence[str] = (), tensorrt: bool = False) -> None:
    """InputError (BackendError for the backend's choices) for an ``open_backend`` argument that
    cannot work, found without reading a file: the backend, precision, ``model_dir`` and its
    backend, ``device`` ('cpu', 'gpu' or 'gpu:N'), ``tensorrt`` (Paddle Inference on a GPU),
    ``threads``
    (0 or more) and, when the config ``number`` is known, the ``overrides`` on it
    (``config.with_overrides``). Callers check before fetching a published name or exporting
    (``model.api.segmenter.check_arguments``)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}' (expected one of {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision '{precision}' (expected one of {', '.join(PRECISIONS)})")
    if precision != 'f32' and backend != 'openvino':
        raise BackendError(param('precision', precision), ' needs ', param('backend', 'openvino'),
                           ' (auto is always f32)')
    if model_dir and backend not in EXPORTED:
        raise BackendError(param('model_dir'), ' needs ', param('backend', *EXPORTED), f' (not {backend})')
    device = device_name(device)
    if tensorrt and (backend != 'inference' or device is None or not on_gpu(device)):
        raise BackendError(param('tensorrt'), ' needs ', param('backend', 'inference'), ' and a GPU ',
                           param('device'))
    if backend in EXPORTED and not model_dir:
        raise BackendError(param('backend', backend), ' needs ', param('model_dir'),
                           ' (a folder from tools/export_model.py)')
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
        raise InputError(param('threads'), f' takes a whole number, 0 (every core) or more, not {threads!r}')
    if number is not None:
        with_overrides(get_config(number), overrides)


def open_backend(weights: Optional[str] = None, config: Optional[int] = None, backend: str = 'auto',
                 model_dir: Optional[str] = None, precision: str = 'f32', device: Optional[str] = None,
                 threads: int = 0, overrides: Sequence[str] = (), mkldnn: bool = False,
                 resolved: Optional[Tuple[int, type]] = None, processes: Processes = SINGLE,
                 cache_dir: Optional[str] = None, progress: Optional[Progress] = None,
                 tensorrt: bool = False) -> Tuple[int, Backend]:
    """(config number, backend) ready to run: ``weights`` (a project checkpoint; its config from
    ``config`` or its sidecar) for 'auto' and 'dygraph', ``model_dir`` (an exported folder) for
    'inference', 'onnx' and 'openvino'. ``overrides``: ``['name=value', ...]`` config changes.
    ``resolved``: ``checked_weights``'s (number, config) when the caller has it already.
    ``device`` and ``threads`` are the backend's own (``threads`` 0: this process's share of
    the cores among ``processes.local_size`` on the machine); the process's Paddle settings
    are left as they are (``model.runtime.paddle_on``). Under the
    launcher (``processes``, ``model.distributed``) 'auto' exports into the cache on each
    node's first process while the others wait, then all load it. ``cache_dir``: the export
    cache (default ``$SOLOV2_CACHE``, ``core.paths.cache_root``); ``progress(stage, fraction)``
    hears 'auto''s first export (``auto_backend.cached_backend``). On a GPU 'auto' is 'dygraph';
    'inference' and 'onnx' run on a GPU when ``device`` names one (``tensorrt``: Paddle Inference
    with TensorRT float16), else on the CPU; 'openvino' runs on the CPU only. Raises InputError
    (or a subclass: BackendError, CheckpointError) with a one-line message."""
    check_choices(backend, precision, model_dir, device, threads, tensorrt=tensorrt)
    chosen = resolve_device(device)      # InputError naming the fix for a GPU this Paddle cannot use
    threads = cpu_threads(threads, processes.local_size)
    if backend == 'dygraph' or (backend == 'auto' and on_gpu(chosen)):
        number, cfg = resolved or checked_weights(weights, config, overrides)
        return number, DygraphBackend(cfg, weights, chosen, sidecar=False, threads=threads)
    exported_on = chosen if device is not None else 'cpu'      # an exported model runs on a GPU only when named
    from solov2.model.inference import auto_backend  # it opens its engines here: imported once we run
    if backend == 'auto':
        number, cfg = resolved or checked_weights(weights, config, overrides)
        return number, local_rank0_first(lambda: auto_backend.cached_backend(
            number, cfg, weights, overrides, threads, cache_dir=cache_dir, progress=progress)[1], processes)
    opened = exported_backend(backend, model_dir, threads, precision, overrides, mkldnn,
                              auto_backend.compiled_cache(cache_root(cache_dir)), exported_on, tensorrt)
    if config is not None and config != opened.number:
        raise BackendError(f'{model_dir} was exported from config {opened.number}, not ', param('config', config))
    return opened.number, opened

