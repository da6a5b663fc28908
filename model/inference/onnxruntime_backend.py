"""The ``onnx`` backend: onnxruntime on an exported folder's ``model.onnx``, on the CPU or a GPU
(``onnx_providers``)."""
from typing import List, Sequence

import numpy as np

from solov2.config.device import gpu_number, on_gpu
from solov2.model.inference.backend import BackendError
from solov2.model.inference.export_network import OUTPUT_NAMES, network_feed
from solov2.model.inference.exported_folder import ExportedBackend, loading
from solov2.model.runtime import cpu_threads


def onnx_providers(device: str, available: Sequence[str]) -> list:
    """onnxruntime's execution providers for ``device``: the CPU's, or on a GPU the CUDA
    provider on GPU N first (the CPU's for what it lacks); ``available``:
    ``onnxruntime.get_available_providers()``. BackendError when a GPU is asked of an
    onnxruntime without the CUDA provider."""
    if not on_gpu(device):
        return ['CPUExecutionProvider']
    if 'CUDAExecutionProvider' not in available:
        raise BackendError(f"this onnxruntime has no CUDA provider (it has {', '.join(available)}): "
                           'pip install onnxruntime-gpu in its place, or use the CPU')
    return [('CUDAExecutionProvider', {'device_id': gpu_number(device)}), 'CPUExecutionProvider']


class OnnxBackend(ExportedBackend):
    """onnxruntime with ``threads`` intra-op threads (0 = every core), on the CPU or a GPU
    (``device``, ``onnx_providers``). Its ``InferenceSession.run`` may be called from several
    threads at once."""
    name = 'onnx'

    def __init__(self, model_dir: str, threads: int = 0, overrides: Sequence[str] = (), device: str = 'cpu'):
        super().__init__(model_dir, overrides)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError('the onnx backend needs onnxruntime: pip install -r requirements-deploy.txt')
        files = self.info.get('files', {}).get('onnx')
        if not files:
            raise BackendError(f'{model_dir} has no ONNX model '
                               '(export it with tools/export_model.py --format onnx or both)')
        path = self.model_dir / files['model']
        if not path.is_file():
            raise BackendError(f'{path} not found')
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = onnx_providers(device, ort.get_available_providers())
        with loading(str(path)):
            self.session = ort.InferenceSession(str(path), options, providers=providers)
            self.input_names = [value.name for value in self.session.get_inputs()]
        self.output_names = list(OUTPUT_NAMES)

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        return self.session.run(self.output_names, network_feed(self.input_names, batch))
