"""The inference engines' and precisions' names (``model.inference.backend_factory`` opens them),
without Paddle: a command checks its flags, and a ``--workers`` service parent starts, before
(or without) loading it."""
BACKENDS = ('auto', 'dygraph', 'inference', 'onnx', 'openvino')
EXPORTED = ('inference', 'onnx', 'openvino')   # spec.exported_backend's names
PRECISIONS = ('f32', 'bf16', 'int8')            # OpenVINO's
