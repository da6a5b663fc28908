"""SOLOv2 network, written by hand in PaddlePaddle dynamic graph.

Pieces: ``resnet`` (backbone), ``fpn`` (neck), ``solov2_head`` (category and kernel
branches), ``mask_feat_head`` (unified mask features), ``solov2`` (assembly),
``postprocess`` (pure inference functions) and ``build`` (config -> model).
"""
from model.cpu_math import prefer_avx2_mkl

prefer_avx2_mkl()
