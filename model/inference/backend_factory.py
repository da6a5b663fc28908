"""Inference backends by name: ``open_backend``, the one factory behind demo.py, eval.py, the
export tools, ``solov2.api.Segmenter`` and the service, opens a ``model.inference.spec.ModelSpec``:
``auto`` (exported once into a cache, run on the engine timed fastest here, ``auto_backend``),
``dygraph`` (the Paddle model of a checkpoint), or an exported folder on ``inference`` (Paddle
Inference), ``onnx`` (onnxruntime) or ``openvino`` (f32 | bf16 | int8).
"""
from dataclasses import replace
from typing import Optional, Tuple

from solov2.config.device import on_gpu
from solov2.config.engines import EXPORTED
from solov2.config.sidecar import read_sidecar, resolve_config
from solov2.core.cache import compiled_cache
from solov2.core.errors import InputError, param
from solov2.model.checkpoint import check_unrecorded, check_weights_file
from solov2.model.distributed import SINGLE, Processes, local_rank0_first
from solov2.model.inference import auto_backend
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.spec import ModelSpec, Progress, dygraph_backend, exported_backend
from solov2.model.runtime import resolve_device


def checked_weights(spec: ModelSpec) -> Tuple[int, type]:
    """(number, config) of ``spec``'s checkpoint (``config.sidecar.resolve_config``) once the path names
    a file and, without a sidecar, the weights fit ``spec.config``; InputError naming the fix."""
    weights = spec.weights
    if not weights:
        raise InputError('pass ', param('weights'), ' (a .pdparams checkpoint) or ', param('backend', *EXPORTED),
                         ' with ', param('model_dir'), ' (an exported folder)')
    check_weights_file(weights)
    if read_sidecar(weights) is None:
        check_unrecorded(weights, spec.config, spec.overrides)     # before an export: names the configs they fit
    return resolve_config(weights, spec.config, spec.overrides)


def open_backend(spec: ModelSpec, *, resolved: Optional[Tuple[int, type]] = None, processes: Processes = SINGLE,
                 cache_dir: Optional[str] = None, progress: Optional[Progress] = None,
                 checked: bool = False) -> Tuple[int, Backend]:
    """(config number, backend) of ``spec`` ready to run (``spec.check`` first unless ``checked`` by the
    caller; ``resolved``: ``checked_weights``'s result when the caller has it). ``device`` and ``threads``
    are the backend's own (``spec.threads``, resolved when the spec was made). Under the
    launcher 'auto' exports on each node's first process while the others wait. ``cache_dir``: the
    export cache (default ``$SOLOV2_CACHE``); ``progress(stage, fraction)`` hears 'auto''s first export.
    On a GPU 'auto' is 'dygraph'; exported folders run on the CPU unless ``device`` names a GPU
    ('openvino': CPU only). InputError (BackendError, CheckpointError) in one line."""
    if not checked:
        spec.check()
    chosen = resolve_device(spec.device, named=True)    # InputError naming the fix for a GPU this Paddle cannot use
    exported = spec.backend in EXPORTED        # an exported model runs on a GPU only when named
    placed = replace(spec, device='cpu' if exported and spec.device is None else chosen)
    if exported:
        backend = exported_backend(placed, compiled_cache(cache_dir))
        number = backend.info['config']
        if spec.config is not None and spec.config != number:
            raise BackendError(f'{spec.model_dir} was exported from config {number}, not ',
                               param('config', spec.config))
    else:
        number, cfg = resolved or checked_weights(spec)
        if spec.backend == 'dygraph' or on_gpu(chosen):
            backend = dygraph_backend(placed, cfg)
        else:
            backend = local_rank0_first(lambda: auto_backend.cached_backend(
                placed, number, cfg, cache_dir=cache_dir, progress=progress)[1], processes)
    return number, backend
