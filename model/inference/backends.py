"""Inference backends by name, used by demo.py, eval.py and the export tools.

- ``auto`` (the default of demo.py and eval.py): the fastest installed exported backend at
  full f32 accuracy, exported once into a cache (``model.inference.export_cache``);
- ``dygraph``: ``model.inference.predictor.Predictor``, the Paddle model from a checkpoint;
- ``inference``: ``paddle.inference`` on an exported model folder (CPU);
- ``onnx``: onnxruntime ``CPUExecutionProvider`` on an exported model folder;
- ``openvino``: OpenVINO on an exported model folder, ``--precision f32 | bf16 | int8``.
"""
from pathlib import Path
from typing import Sequence, Tuple

from config.errors import InputError
from config.sidecar import resolve_config
from model.inference.backend import Backend, BackendError
from model.inference.export_cache import cached_backend
from model.inference.exported import InferenceBackend, OnnxBackend
from model.inference.openvino_backend import OpenVinoBackend
from model.inference.predictor import Predictor
from model.runtime import default_device, setup

BACKENDS = ('auto', 'dygraph', 'inference', 'onnx', 'openvino')
EXPORTED = ('inference', 'onnx', 'openvino')


def exported_backend(kind: str, model_dir: str, threads: int = 0, mkldnn: bool = False,
                     overrides: Sequence[str] = (), precision: str = 'f32') -> Backend:
    """The backend of an exported model folder by name: 'inference', 'onnx' or 'openvino'."""
    if kind == 'inference':
        return InferenceBackend(model_dir, threads, mkldnn, overrides)
    if kind == 'onnx':
        return OnnxBackend(model_dir, threads, overrides)
    if kind == 'openvino':
        return OpenVinoBackend(model_dir, threads, precision, overrides)
    raise BackendError(f"unknown exported backend '{kind}' (expected one of {', '.join(EXPORTED)})")


def _checked_weights(args) -> Tuple[int, type]:
    if not args.weights or not Path(args.weights).is_file():
        raise InputError(
            f'weights not found: {args.weights} (convert a checkpoint first, e.g. '
            'python convert/ppdet2paddle.py SRC.pdparams weights/model.pdparams)')
    return resolve_config(args.weights, args.config, args.opt)


def backend_from_args(args) -> Tuple[int, Backend]:
    """(config number, backend) from the parsed --backend/--weights/--model-dir/... flags.
    Raises InputError, CheckpointError, BackendError, KeyError or ValueError with a
    one-line message."""
    if args.precision != 'f32' and args.backend != 'openvino':
        raise BackendError(f'--precision {args.precision} needs --backend openvino (auto is always f32)')
    if args.model_dir and args.backend not in EXPORTED:
        raise ValueError(f'--model-dir needs --backend {"|".join(EXPORTED)} (not {args.backend})')
    device = args.device or default_device()
    if args.backend == 'dygraph' or (args.backend == 'auto' and device != 'cpu'):
        number, cfg = _checked_weights(args)
        return number, Predictor(cfg, args.weights, setup(device, args.threads))
    if args.device not in (None, 'cpu'):      # an exported backend runs on the CPU whatever the machine has
        raise ValueError(f'--backend {args.backend} runs on the CPU here; '
                         f'use --backend dygraph for --device {args.device}')
    setup('cpu', args.threads)
    if args.backend == 'auto':
        number, cfg = _checked_weights(args)
        return number, cached_backend(number, cfg, args.weights, args.opt, args.threads)[1]
    if not args.model_dir:
        raise InputError(f'--backend {args.backend} needs --model-dir (a folder from tools/export_model.py)')
    backend = exported_backend(args.backend, args.model_dir, args.threads, args.mkldnn, args.opt, args.precision)
    if args.config is not None and args.config != backend.number:
        raise ValueError(f'{args.model_dir} was exported from config {backend.number}, not --config={args.config}')
    return backend.number, backend
