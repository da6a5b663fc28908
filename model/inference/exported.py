"""Backends that run a model folder written by ``model.inference.export``
(``tools/export_model.py``): Paddle Inference and onnxruntime, on the CPU or a GPU
(``place_inference``, ``onnx_providers``).

They read ``infer_cfg.json`` from the folder for the config, class names, test sizes and
thresholds.
"""
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import List, Sequence

import numpy as np
import paddle

from solov2.config import get_config, with_overrides
from solov2.config.device import gpu_number, on_gpu
from solov2.config.sidecar import MODEL_SETTINGS
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.exportable import INPUT_NAME, OUTPUT_NAMES, REGIONS_NAME, full_regions
from solov2.model.inference.onnx_regions import without_region_masks
from solov2.model.inference.postprocess import InferenceParams
from solov2.model.layers import paddle_major
from solov2.model.runtime import paddle_on

INFER_CFG = 'infer_cfg.json'
PADDLE_PREFIX = 'model'
ONNX_FILE = 'model.onnx'


def read_infer_cfg(model_dir: str) -> dict:
    """The folder's infer_cfg.json as a dict (BackendError if missing/unreadable)."""
    path = Path(model_dir) / INFER_CFG
    if not path.is_file():
        raise BackendError(f'{path} not found (export a model with tools/export_model.py)')
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f'cannot read {path}: {exc} — export the model again')
    missing = [key for key in ('config', 'num_classes', 'class_names', 'test_short', 'test_max', 'postprocess',
                               'input') if not isinstance(info, dict) or key not in info]
    if missing:
        raise BackendError(f"{path} lacks {', '.join(missing)} — export the model again with tools/export_model.py")
    return info


@contextlib.contextmanager
def loading(what: str):
    """Any exception of a runtime while loading ``what`` becomes one BackendError."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:  # the runtimes raise their own types (pybind, RuntimeError, ...)
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise BackendError(f'cannot load {what}: {first[:300]} — the file is damaged or not an exported '
                           'model; export it again with tools/export_model.py') from exc


def config_from_infer_cfg(info: dict, overrides: Sequence[str] = ()):
    """The config class an export was made with (class list, test sizes and thresholds
    as stored), with ``--opt`` style overrides on top; BackendError when they contradict
    a stored model setting (``num_classes``, ``num_grids``, ``segm_strides``)."""
    try:
        base = get_config(info['config'])
        changes = {'num_classes': info['num_classes'], 'class_names': tuple(info['class_names']),
                   'test_short': info['test_short'], 'test_max': info['test_max']}
        params = InferenceParams.from_json(info['postprocess'])
        changes.update({name: getattr(params, name) for name in info['postprocess']})
        cfg = with_overrides(type(base.__name__, (base,), changes), overrides)
    except (KeyError, TypeError, AttributeError) as exc:
        raise BackendError(f'{INFER_CFG} holds a bad value ({exc}) — export the model again') from exc
    for name in MODEL_SETTINGS:
        if name in changes and getattr(cfg, name) != changes[name]:
            raise BackendError(f'the model was exported with {name}={changes[name]!r}, '
                               f'the config asks for {getattr(cfg, name)!r}')
    return cfg


class ExportedBackend(Backend):
    """Common part of the backends that read an exported folder."""

    def __init__(self, model_dir: str, overrides: Sequence[str] = ()):
        self.model_dir = Path(model_dir)
        self.info = read_infer_cfg(model_dir)
        self.number = self.info['config']
        try:
            size_range = (int(self.info['input']['min_size']), int(self.info['input']['max_size']))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f'{INFER_CFG} in {model_dir} has no input size range ({exc}) — export the model '
                               'again') from exc
        super().__init__(config_from_infer_cfg(self.info, overrides), size_range)


def thread_count(threads: int) -> int:
    """``threads``, or every core when 0."""
    return threads or os.cpu_count() or 1


GPU_MEMORY_POOL_MB = 256     # Paddle Inference's first GPU memory pool; it grows as needed


def place_inference(config, device: str, tensorrt: bool, size_range, precision_type) -> None:
    """Put a Paddle Inference ``config`` on ``device``: the CPU (GPU disabled), or GPU N
    (``enable_use_gpu``), with ``tensorrt`` TensorRT subgraphs in float16 over the input sizes
    ``size_range`` (min, max side; ``set_trt_dynamic_shape_info``). ``precision_type``:
    ``paddle.inference.PrecisionType``."""
    if not on_gpu(device):
        if tensorrt:
            raise BackendError('TensorRT needs a GPU device')
        config.disable_gpu()
        return
    config.enable_use_gpu(GPU_MEMORY_POOL_MB, gpu_number(device))
    if tensorrt:
        config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=3,
                                      precision_mode=precision_type.Half, use_static=False, use_calib_mode=False)
        low, high = size_range
        config.set_trt_dynamic_shape_info({INPUT_NAME: [1, 3, low, low], REGIONS_NAME: [1, 2]},
                                          {INPUT_NAME: [1, 3, high, high], REGIONS_NAME: [1, 2]},
                                          {INPUT_NAME: [1, 3, high, high], REGIONS_NAME: [1, 2]})


class InferenceBackend(ExportedBackend):
    """Paddle Inference (``paddle.inference``) on the CPU with ``threads`` math threads
    (0 = every core), oneDNN when ``mkldnn``, or on a GPU (``device`` 'gpu' or 'gpu:N';
    ``tensorrt``: TensorRT float16 subgraphs; ``place_inference``). Its predictor holds the
    input and outputs of one run, so calls from several threads run the network one at a time (a lock).
    Paddle Inference sets Paddle's process-wide CPU math threads to its own when the predictor is
    built and at each run: both happen inside ``paddle_on``, which puts the process's back."""
    name = 'inference'

    def __init__(self, model_dir: str, threads: int = 0, mkldnn: bool = False,
                 overrides: Sequence[str] = (), device: str = 'cpu', tensorrt: bool = False):
        super().__init__(model_dir, overrides)
        import paddle.inference as paddle_infer
        files = self.info.get('files', {}).get('paddle')
        if not files:
            raise BackendError(f'{model_dir} has no Paddle Inference model '
                               '(export it with tools/export_model.py --format paddle or both)')
        model_file, params_file = self.model_dir / files['model'], self.model_dir / files['params']
        for path in (model_file, params_file):
            if not path.is_file():
                raise BackendError(f'{path} not found')
        if model_file.suffix == '.json' and paddle_major() < 3:
            raise BackendError(f'{model_file} was written by Paddle >= 3 (PIR); Paddle '
                               f'{paddle.__version__} reads only .pdmodel: export again with it')
        if tensorrt and model_file.suffix == '.json':     # Config's TensorRT engine reads .pdmodel programs only
            raise BackendError(f"{model_file} is a Paddle 3 (PIR) model, which TensorRT through Paddle Inference's "
                               'Config does not take: run it without tensorrt, or export with Paddle 2.6 (.pdmodel)')
        config = paddle_infer.Config(str(model_file), str(params_file))
        place_inference(config, device, tensorrt, self.size_range, paddle_infer.PrecisionType)
        self.threads = thread_count(threads)
        config.set_cpu_math_library_num_threads(self.threads)
        if mkldnn:
            config.enable_mkldnn()
            if model_file.suffix == '.json':
                # Paddle 3 PIR: oneDNN bilinear/nearest interpolate fails ("ConvertPirAttribute2
                # RuntimeAttribute not support ArrayAttribute<DoubleAttribute>"); without the
                # placement pass only the fused oneDNN kernels (convolutions) are used
                config.delete_pass('onednn_placement_pass')
        else:
            config.disable_mkldnn()
        if hasattr(config, 'disable_glog_info'):
            config.disable_glog_info()
        with loading(f'{model_file} + {params_file.name}'), paddle_on('cpu', self.threads):
            self.predictor = paddle_infer.create_predictor(config)
            names = self.predictor.get_input_names()
            self.input = self.predictor.get_input_handle(names[0])
            # exports before the regions input (images only) still run
            self.regions = self.predictor.get_input_handle(REGIONS_NAME) if REGIONS_NAME in names else None
            self.outputs = [self.predictor.get_output_handle(n) for n in self.predictor.get_output_names()]
        if len(self.outputs) != len(OUTPUT_NAMES):
            raise BackendError(f'{model_file} has {len(self.outputs)} outputs, expected {len(OUTPUT_NAMES)}')
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with paddle_on('cpu', self.threads), self.lock:
            self.input.reshape(list(batch.shape))
            self.input.copy_from_cpu(batch)
            if self.regions is not None:
                regions = full_regions(batch)
                self.regions.reshape(list(regions.shape))
                self.regions.copy_from_cpu(regions)
            self.predictor.run()
            return [handle.copy_to_cpu() for handle in self.outputs]


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
        options.intra_op_num_threads = thread_count(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = onnx_providers(device, ort.get_available_providers())
        with loading(str(path)):
            import onnx
            graph = onnx.load(str(path))
            without_region_masks(graph.graph, REGIONS_NAME, INPUT_NAME)    # never padded beyond the batch here
            self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=providers)
            names = [value.name for value in self.session.get_inputs()]
        self.input_name = names[0]
        self.takes_regions = REGIONS_NAME in names     # False: an export before the regions input
        self.output_names = list(OUTPUT_NAMES)

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        if self.takes_regions:
            feed[REGIONS_NAME] = full_regions(batch)
        return self.session.run(self.output_names, feed)
