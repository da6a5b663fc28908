"""Inference backends by name, used by demo.py, eval.py and the export tools.

- ``dygraph``: ``model.inference.predictor.Predictor``, the Paddle model from a checkpoint;
- ``inference``: ``paddle.inference`` on an exported model folder (CPU);
- ``onnx``: onnxruntime ``CPUExecutionProvider`` on an exported model folder.
"""
from typing import Optional, Sequence

from model.inference.backend import Backend, BackendError
from model.inference.exported import InferenceBackend, OnnxBackend
from model.inference.predictor import Predictor

BACKENDS = ('dygraph', 'inference', 'onnx')


def create_backend(kind: str, cfg=None, weights: Optional[str] = None, model_dir: Optional[str] = None,
                   device: Optional[str] = None, threads: int = 0, mkldnn: bool = False,
                   overrides: Sequence[str] = ()) -> Backend:
    """A backend by name: 'dygraph' (cfg + weights) or 'inference' / 'onnx' (model_dir)."""
    if kind == 'dygraph':
        return Predictor(cfg, weights, device)
    if kind == 'inference':
        return InferenceBackend(model_dir, threads, mkldnn, overrides)
    if kind == 'onnx':
        return OnnxBackend(model_dir, threads, overrides)
    raise BackendError(f"unknown backend '{kind}' (expected one of {', '.join(BACKENDS)})")
