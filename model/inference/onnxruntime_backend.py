"""The ``onnx`` backend: onnxruntime on an exported folder's ``model.onnx``, on the CPU or a GPU
(``onnx_providers``; a session that fell back from the GPU to the CPU is refused, ``check_providers``)."""
import threading
from typing import List, Optional, Sequence

import numpy as np

from solov2.config.device import gpu_number, on_gpu
from solov2.config.install import onnxruntime_install_problem
from solov2.model.inference.backend import BackendError
from solov2.model.inference.export_network import OUTPUT_NAMES, network_feed
from solov2.model.inference.exported_folder import ExportedBackend, loading
from solov2.model.runtime import cpu_threads

CUDA = 'CUDAExecutionProvider'


def onnx_providers(device: str, available: Sequence[str]) -> list:
    """onnxruntime's execution providers for ``device``: the CPU's, or on a GPU the CUDA
    provider on GPU N (``gpu_number``: under the launcher, the process's own) first, with
    cuDNN's heuristic choice of convolution algorithms (the default, EXHAUSTIVE, times them
    all again for each new input size, and sizes change with each picture), the CPU's for what
    it lacks; ``available``: ``onnxruntime.get_available_providers()``. BackendError when a
    GPU is asked of an onnxruntime without the CUDA provider."""
    if not on_gpu(device):
        return ['CPUExecutionProvider']
    if CUDA not in available:
        raise BackendError(f"this onnxruntime has no CUDA provider (it has {', '.join(available)}): "
                           + (onnxruntime_install_problem() or 'pip install onnxruntime-gpu in its place '
                              '(requirements-deploy-gpu.txt), or use the CPU'))
    return [(CUDA, {'device_id': gpu_number(device), 'cudnn_conv_algo_search': 'HEURISTIC'}), 'CPUExecutionProvider']


def check_providers(session, providers: list, version: str) -> None:
    """BackendError when ``providers`` asked for CUDA and the ``session`` that onnxruntime
    ``version`` opened did not get it (it falls back to the CPU when the CUDA provider cannot
    start: CUDA or cuDNN libraries missing or of another version)."""
    if providers[0] == 'CPUExecutionProvider' or CUDA in session.get_providers():
        return
    raise BackendError(f'onnxruntime {version} fell back to the CPU: its CUDA provider did not start. '
                       + (onnxruntime_install_problem() or 'Install the CUDA and cuDNN libraries this onnxruntime-gpu '
                          'was built for (onnxruntime.ai, CUDA Execution Provider, Requirements), or use the CPU'))


class OnnxBackend(ExportedBackend):
    """onnxruntime with ``threads`` intra-op threads (0 = every core), on the CPU or a GPU
    (``device``, ``onnx_providers``). Its ``InferenceSession.run`` may be called from several
    threads at once. A batch of pictures of several sizes runs the folder's regions graph
    (``model_regions.onnx``), whose session opens on the first such batch."""
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
        self.files, self.options = files, ort.SessionOptions()
        self.options.intra_op_num_threads = cpu_threads(threads)
        self.options.inter_op_num_threads = 1
        self.options.log_severity_level = 3
        self.providers = onnx_providers(device, ort.get_available_providers())
        self.sessions, self.lock = {}, threading.Lock()
        self.session = self.session_for(False)
        self.mixes_sizes = 'regions_model' in files
        self.input_names = [value.name for value in self.session.get_inputs()]
        self.output_names = list(OUTPUT_NAMES)

    def session_for(self, regions: bool):
        """The session of the plain graph, or of the regions graph (opened on first use)."""
        import onnxruntime as ort
        with self.lock:
            if regions not in self.sessions:
                path = self.model_dir / self.files['regions_model' if regions else 'model']
                if not path.is_file():
                    raise BackendError(f'{path} not found')
                with loading(str(path)):
                    session = ort.InferenceSession(str(path), self.options, providers=self.providers)
                check_providers(session, self.providers, ort.__version__)
                self.sessions[regions] = session
            return self.sessions[regions]

    def compile_ahead(self, max_batch: int, mixed: bool = False) -> None:
        """Open the regions graph's session now when batches will be ``mixed``."""
        if mixed and self.mixes_sizes:
            self.session_for(True)

    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None) -> List[np.ndarray]:
        session = self.session if regions is None else self.session_for(True)
        names = [value.name for value in session.get_inputs()]
        return session.run(self.output_names, network_feed(names, batch, regions))
