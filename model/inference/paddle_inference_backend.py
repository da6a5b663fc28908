"""The ``inference`` backend: Paddle Inference (``paddle.inference``) on an exported folder's
Paddle model, on the CPU or a GPU (``place_inference``; TensorRT as an option)."""
import threading
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import paddle

from solov2.config.device import gpu_number, on_gpu
from solov2.config.install import paddle_major
from solov2.core.cache import EngineFiles
from solov2.model.inference.backend import BackendError
from solov2.model.inference.export_network import INPUT_NAME, OUTPUT_NAMES, TENSORRT_MAX_BATCH, network_feed
from solov2.model.inference.exported_folder import ExportedBackend, first_line, loading
from solov2.model.runtime import cpu_threads, paddle_on

GPU_MEMORY_POOL_MB = 256     # Paddle Inference's first GPU memory pool; it grows as needed
TENSORRT_MIN_SUBGRAPH = 60   # PaddleDetection's TRT_MIN_SUBGRAPH for SOLOv2 (ppdet/engine/export_utils.py)
ENGINE_FILES = EngineFiles('trt_serialized_*')     # the engines Paddle Inference writes in its optim cache dir


def tensorrt_missing(first: str) -> str:
    """The line for a Paddle Inference that cannot load TensorRT (``first``: its own words)."""
    return (f'Paddle Inference cannot load TensorRT ({first}): install the TensorRT its paddlepaddle-gpu wheel was '
            "built with (libnvinfer.so on the library path; Paddle's install page names the version), or run "
            'without tensorrt')


def open_problem(exc: Exception, first: str) -> Optional[str]:
    """What failed when Paddle Inference could not open a model on TensorRT, and what to do (``loading``'s
    ``explain``); None for another failure."""
    if 'load tensorrt' in str(exc).lower():
        return tensorrt_missing(first)
    if 'dynamic shape info' in str(exc):
        return (f"Paddle Inference's TensorRT found a subgraph input without a shape range ({first}; subgraphs of "
                f'at least {TENSORRT_MIN_SUBGRAPH} ops go to TensorRT, its min_subgraph_size): run without tensorrt, '
                'or through onnxruntime (backend onnx with tensorrt)')
    return None


def tensorrt_runtime(paddle_infer) -> str:
    """TensorRT's version as Paddle Inference loads it ('10.5.0'; '0.0.0' on a build without TensorRT), asked
    only where TensorRT runs: a GPU wheel without TensorRT's libraries raises, here one BackendError."""
    try:
        return '.'.join(map(str, paddle_infer.get_trt_runtime_version()))
    except Exception as exc:  # Paddle's dynload raises RuntimeError: (Unavailable) Load tensorrt api ... failed
        raise BackendError(tensorrt_missing(first_line(exc))) from exc


def parse_program(model_file: Path) -> None:
    """A .pdmodel program parsed in Python first (protobuf: no code runs), its damage one
    ``loading`` BackendError: Paddle 2.6's Inference crashes the process on one that does not parse."""
    if model_file.suffix == '.pdmodel':
        from paddle.base.proto import framework_pb2
        with loading(str(model_file)):
            framework_pb2.ProgramDesc().ParseFromString(model_file.read_bytes())


def place_inference(config, device: str, tensorrt: bool, size_range, precision_type,
                    engines: Optional[str] = None) -> None:
    """Put a Paddle Inference ``config`` on ``device``: the CPU, or GPU N with ``tensorrt`` float16
    subgraphs over ``size_range`` (min, max side) and batches of 1 to ``TENSORRT_MAX_BATCH``, engines
    kept in ``engines`` (None: built at each start). ``precision_type``: ``paddle.inference.PrecisionType``."""
    if not on_gpu(device):
        if tensorrt:
            raise BackendError('TensorRT needs a GPU device')
        config.disable_gpu()
        return
    config.enable_use_gpu(GPU_MEMORY_POOL_MB, gpu_number(device))
    if tensorrt:
        config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=TENSORRT_MAX_BATCH,
                                      min_subgraph_size=TENSORRT_MIN_SUBGRAPH, precision_mode=precision_type.Half,
                                      use_static=bool(engines), use_calib_mode=False)
        if engines:
            config.set_optim_cache_dir(engines)
        low, high = size_range
        config.set_trt_dynamic_shape_info({INPUT_NAME: [1, 3, low, low]},
                                          {INPUT_NAME: [TENSORRT_MAX_BATCH, 3, high, high]},
                                          {INPUT_NAME: [1, 3, high, high]})


class InferenceBackend(ExportedBackend):
    """Paddle Inference on the CPU with ``threads`` math threads (0 = every core; oneDNN when ``mkldnn``) or on a GPU
    (``tensorrt``: engines in an entry of the ``engine_cache`` folder, ``tensorrt_engines``;
    ``place_inference``). One run at a time (a lock: its predictor holds one run's tensors); built and run
    inside ``paddle_on``, which puts back the process's math threads that Paddle Inference sets. With oneDNN a
    Paddle 3 (PIR) model runs without the oneDNN placement pass: its bilinear/nearest interpolate fails there
    ("ConvertPirAttribute2 RuntimeAttribute not support ArrayAttribute<DoubleAttribute>"); without the pass only
    the fused oneDNN kernels (convolutions) are used."""
    name = 'inference'

    def __init__(self, model_dir: str, threads: int = 0, mkldnn: bool = False,
                 overrides: Sequence[str] = (), device: str = 'cpu', tensorrt: bool = False,
                 engine_cache: Optional[str] = None, pinned: bool = False):
        super().__init__(model_dir, overrides, device, tensorrt, engine_cache, pinned)
        import paddle.inference as paddle_infer
        files = self.model_files('paddle')
        model_file, params_file = self.model_file(files, 'model'), self.model_file(files, 'params')
        parse_program(model_file)
        if model_file.suffix == '.json' and paddle_major() < 3:
            raise BackendError(f'{model_file} was written by Paddle >= 3 (PIR); Paddle '
                               f'{paddle.__version__} reads only .pdmodel: export again with it')
        if tensorrt and model_file.suffix == '.json':     # Config's TensorRT engine reads .pdmodel programs only
            raise BackendError(f"{model_file} is a Paddle 3 (PIR) model, which TensorRT through Paddle Inference's "
                               'Config does not take: run it without tensorrt, or export with Paddle 2.6 (.pdmodel)')
        version = tensorrt_runtime(paddle_infer) if tensorrt and engine_cache else ''
        with self.tensorrt_engines([model_file, params_file], 'paddle-inference', version, ENGINE_FILES) as engines:
            config = paddle_infer.Config(str(model_file), str(params_file))
            place_inference(config, device, tensorrt, self.size_range, paddle_infer.PrecisionType, engines)
            self.threads = cpu_threads(threads)
            config.set_cpu_math_library_num_threads(self.threads)
            if mkldnn:
                config.enable_mkldnn()
                if model_file.suffix == '.json':
                    config.delete_pass('onednn_placement_pass')
            else:
                config.disable_mkldnn()
            config.disable_glog_info()
            with loading(f'{model_file} + {params_file.name}', open_problem), paddle_on('cpu', self.threads):
                self.predictor = paddle_infer.create_predictor(config)
                self.inputs = {name: self.predictor.get_input_handle(name) for name in self.predictor.get_input_names()}
                self.outputs = [self.predictor.get_output_handle(n) for n in self.predictor.get_output_names()]
        if len(self.outputs) != len(OUTPUT_NAMES):
            raise BackendError(f'{model_file} has {len(self.outputs)} outputs, expected {len(OUTPUT_NAMES)}')
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None) -> List[np.ndarray]:
        feed = network_feed(self.inputs, batch)
        with paddle_on('cpu', self.threads), self.lock:
            for name, array in feed.items():
                self.inputs[name].reshape(list(array.shape))
                self.inputs[name].copy_from_cpu(array)
            self.predictor.run()
            return [handle.copy_to_cpu() for handle in self.outputs]
