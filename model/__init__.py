"""SOLOv2 network, written by hand in PaddlePaddle dynamic graph.

Pieces: ``layers`` and ``fast_ops`` (building blocks), ``resnet`` (backbone), ``fpn``
(neck), ``solov2_head`` (category and kernel branches), ``mask_feat_head`` (unified mask
features), ``solov2`` (assembly), ``build`` (config -> model), ``checkpoint`` (weights in
and out) and ``runtime`` / ``cpu_math`` (device, threads, MKL). Training lives in
``model.training`` and inference in ``model.inference``; the network imports neither.
The public Python API is ``solov2.api``.
"""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')

from solov2.core.paddle_import import paddle  # noqa: E402,F401  (first: the host's logging kept)
