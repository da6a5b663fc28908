"""INT8 post-training quantization of an exported model with NNCF, for
``--backend openvino --precision int8`` (``tools/quantize.py`` is the command line).

NNCF needs a static-shape model (on a dynamic one, the quantized model then fails to compile:
"Accessing out-of-range dimension"): the calibration images are preprocessed as for inference
and zero-padded to one common size, the model is reshaped to it and quantized, and the result
is reshaped back to [?, 3, ?, ?] (its FakeQuantize ranges do not depend on the size) and saved as
an OpenVINO IR beside a copy of ``infer_cfg.json`` that names it. The quantized model still does
not compile with dynamic shapes, so the backend compiles it for each input shape.

The convolutions nearest to the three outputs (category and kernel predictors, the mask
feature head's last layers, ``keep_depth`` convolutions deep along every path) stay in f32
(NNCF's ignored scope): they decide scores and mask shapes, and quantizing them cost the most.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List, Sequence, Set

import numpy as np

from data.transforms import batch_images, read_image
from model.inference.openvino_backend import INT8_FILES, OpenVinoBackend

INT8_XML = 'model_int8.xml'
_CONVOLUTIONS = ('Convolution', 'GroupConvolution', 'DeformableConvolution')


def output_convolutions(model, keep_depth: int) -> List[str]:
    """Names of the convolutions of an ``openvino.Model`` that lie within ``keep_depth``
    convolutions of an output, walking back from every output."""
    found: Set[str] = set()
    frontier = [(result.input_value(0).get_node(), 0) for result in model.get_results()]
    seen = set()
    while frontier:
        node, depth = frontier.pop()
        key = (node.get_friendly_name(), depth)
        if key in seen:
            continue
        seen.add(key)
        if node.get_type_name() in _CONVOLUTIONS:
            found.add(node.get_friendly_name())
            depth += 1
            if depth >= keep_depth:
                continue
        frontier.extend((value.get_node(), depth) for value in node.input_values())
    return sorted(found)


def calibration_batches(backend, paths: Sequence[Path], progress: Callable[[], None]) -> List[np.ndarray]:
    """Each image preprocessed as for inference and zero-padded to the largest size among
    them: [1, 3, H, W] float32 each, one shape for all."""
    inputs = []
    for path in paths:
        inputs.append(backend.prepare(read_image(str(path)))[0])
        progress()
    padded = batch_images(inputs)
    return [padded[index:index + 1] for index in range(len(inputs))]


def quantize_model(model_dir: str, paths: Sequence[Path], out_dir: Path, keep_depth: int = 2,
                   progress: Callable[[], None] = lambda: None) -> dict:
    """Quantize ``model_dir``'s model.onnx on the images ``paths`` into ``out_dir``.
    Returns {'input_shape', 'kept_f32', 'images'}."""
    import nncf
    import openvino as ov
    backend = OpenVinoBackend(model_dir, precision='f32')
    batches = calibration_batches(backend, paths, progress)
    model = backend.model.clone()
    model.reshape({0: list(batches[0].shape)})
    kept = output_convolutions(model, keep_depth) if keep_depth > 0 else []
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                              ignored_scope=nncf.IgnoredScope(names=kept) if kept else None)
    quantized.reshape({0: ov.PartialShape([-1, 3, -1, -1])})
    info = dict(backend.info)
    info['files'] = {INT8_FILES: {'model': INT8_XML, 'weights': Path(INT8_XML).with_suffix('.bin').name,
                                  'nncf': nncf.__version__, 'openvino': ov.__version__,
                                  'calibration_images': len(batches), 'kept_f32': kept}}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}-', dir=out_dir.parent))
    try:                                  # complete or absent: written aside, then renamed
        ov.save_model(quantized, str(tmp / INT8_XML), compress_to_fp16=False)
        (tmp / 'infer_cfg.json').write_text(json.dumps(info, indent=2) + '\n')
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {'input_shape': list(batches[0].shape), 'kept_f32': kept, 'images': len(batches)}
