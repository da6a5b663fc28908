"""Running a trained SOLOv2: the exportable network, pure post-processing, backends
(dygraph, Paddle Inference, onnxruntime, OpenVINO) behind one interface, export, the threaded
pipeline and COCO predictions.

Imports the network (``model``) and ``data``; nothing in ``model`` outside this package
imports it.
"""
