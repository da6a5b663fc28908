"""What every backend of an exported folder (``model.inference.export``, ``tools/export_model.py``)
shares: ``infer_cfg.json`` read and checked (config, class names, test sizes, thresholds), a
runtime's load errors as one ``BackendError``, and the ``ExportedBackend`` base.
"""
import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from solov2.config import get_config, with_overrides
from solov2.config.device import gpu_number, on_gpu
from solov2.config.install import TENSORRT_WHEELS, cuda_device, installed_wheels
from solov2.config.sidecar import MODEL_SETTINGS
from solov2.core.cache import EngineFiles, built_once, file_record, package_version
from solov2.core.errors import param
from solov2.data.transforms import padded_size
from solov2.model.inference.backend import Backend, BackendError
from solov2.model.inference.export_network import SIZE_DIVISOR, TENSORRT_MAX_BATCH
from solov2.model.inference.postprocess import InferenceParams

INFER_CFG = 'infer_cfg.json'
PADDLE_PREFIX = 'model'
ONNX_FILE = 'model.onnx'
REGIONS_ONNX_FILE = 'model_regions.onnx'      # the graph with the ``regions`` input (size buckets)
INT8_FILES = 'openvino_int8'      # infer_cfg.json's ``files`` key of tools/quantize.py's model
MODEL_NAMES = {'paddle': 'Paddle Inference', 'onnx': 'ONNX', INT8_FILES: 'INT8 OpenVINO'}     # by ``files`` key


def read_infer_cfg(model_dir: str) -> dict:
    """The folder's infer_cfg.json as a dict (BackendError if missing/unreadable)."""
    path = Path(model_dir) / INFER_CFG
    if not path.is_file():
        raise BackendError(f'{path} not found (export a model with solov2 export / tools/export_model.py)')
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f'cannot read {path}: {exc} — export the model again')
    missing = [key for key in ('config', 'num_classes', 'class_names', 'test_short', 'test_max', 'postprocess',
                               'input') if not isinstance(info, dict) or key not in info]
    if missing:
        raise BackendError(f"{path} lacks {', '.join(missing)} — export the model again with solov2 export / "
                           'tools/export_model.py')
    return info


def first_line(exc: BaseException) -> str:
    """A runtime's exception in one line of at most 300 chars: Paddle's summary line ('UnavailableError: ...',
    after its rules and traceback) where it has one, else its first line with words (else its type's name)."""
    lines = [line.strip() for line in str(exc).splitlines() if any(char.isalnum() for char in line)]
    summary = next((line for line in lines if re.match(r'\w+Error: ', line)), None)
    return (summary or next(iter(lines), type(exc).__name__))[:300]


@contextlib.contextmanager
def loading(what: str, explain: Callable[[Exception, str], Optional[str]] = lambda exc, first: None):
    """Any exception of a runtime while loading ``what`` becomes one BackendError: ``explain``'s line for it
    (the exception and ``first_line``; what failed and what to do, e.g. a provider that did not start), or
    where that gives None, a damaged export."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:  # the runtimes raise their own types (pybind, RuntimeError, ...)
        first = first_line(exc)
        raise BackendError(explain(exc, first) or f'cannot load {what}: {first} — the file is damaged or not an '
                           'exported model; export it again with solov2 export / tools/export_model.py') from exc


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
    """Common part of the backends of an exported folder, on ``device`` ('cpu', 'gpu', 'gpu:N'); their
    outputs are host arrays, post-processed on the CPU. ``tensorrt``: TensorRT's profile and float16, batches
    of up to ``TENSORRT_MAX_BATCH`` (``max_batch``), ``precision`` fp16, and BackendError naming ``test_max``
    when the config's resize reaches past the export's largest side; its engines in an entry of
    ``engine_cache`` (``tensorrt_engines``; None without tensorrt); ``pinned``: as ``Backend.pinned``."""

    def __init__(self, model_dir: str, overrides: Sequence[str] = (), device: str = 'cpu', tensorrt: bool = False,
                 engine_cache: Optional[str] = None, pinned: bool = False):
        self.model_dir, self.device, self.network_on_gpu = Path(model_dir), device, on_gpu(device)
        self.pinned = pinned
        self.info = read_infer_cfg(model_dir)
        try:
            size_range = (int(self.info['input']['min_size']), int(self.info['input']['max_size']))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f'{INFER_CFG} in {model_dir} has no input size range ({exc}) — export the model '
                               'again') from exc
        super().__init__(config_from_infer_cfg(self.info, overrides), size_range)
        self.tensorrt, self.engine_cache = tensorrt, engine_cache if tensorrt else None
        if not tensorrt:
            return
        self.max_batch, self.precision = TENSORRT_MAX_BATCH, 'fp16'
        largest = padded_size(self.cfg.test_max, SIZE_DIVISOR)
        if largest > self.size_range[1]:
            raise BackendError(f'test_max={self.cfg.test_max} gives inputs up to {largest} px, above the '
                               f"{self.size_range[1]} of the TensorRT profile (the export's max size): pass ",
                               param('overrides', f'test_max={self.size_range[1]}'), ' or less, or export again '
                               'with a larger max size')

    def model_files(self, kind: str) -> dict:
        """infer_cfg.json's ``files`` of ``kind`` (a key of ``MODEL_NAMES``); BackendError saying how to make
        them where the folder has none, or for tools/quantize.py's folder how to open it."""
        files = self.info.get('files') if isinstance(self.info.get('files'), dict) else {}
        if isinstance(files.get(kind), dict) and files[kind]:
            return files[kind]
        if INT8_FILES in files and kind != INT8_FILES:
            raise BackendError(f"{self.model_dir} holds tools/quantize.py's INT8 model, not an f32 export: run it "
                               'with ', param('backend', 'openvino'), ' and ', param('precision', 'int8'))
        raise BackendError(f'{self.model_dir} has no {MODEL_NAMES[kind]} model (' + (
            'quantize it with solov2 quantize / tools/quantize.py' if kind == INT8_FILES else
            f'export it with solov2 export / tools/export_model.py --format {kind} or both') + ')')

    def model_file(self, files: dict, key: str) -> Path:
        """The file ``model_files``' ``files`` names under ``key``, in this folder; BackendError where the name
        is missing, not a plain file name (a path elsewhere) or the file absent."""
        name = files.get(key)
        if not isinstance(name, str) or name in ('', '..') or Path(name).name != name:
            raise BackendError(f'{INFER_CFG} in {self.model_dir} names no file of its own folder as {key} '
                               f'({name!r}): export (or quantize) the model again')
        if not (self.model_dir / name).is_file():
            raise BackendError(f'{self.model_dir / name} not found')
        return self.model_dir / name

    @contextlib.contextmanager
    def tensorrt_engines(self, files: Sequence[Path], runtime: str, tensorrt: str,
                         engines: EngineFiles) -> Iterator[Optional[str]]:
        """For the block, the folder where ``runtime`` ('onnxruntime' or 'paddle-inference') finds TensorRT's
        engines of the model in ``files`` or builds them while it opens it (None, built at each start, without
        ``engine_cache``): an entry of the ``engine_cache`` folder (``core.cache.built_once``: one builder of
        it at a time, moved into place whole and only once it holds the runtime's whole build, ``engines``;
        pruned with the others). Its name hashes all an engine depends on: the files' bytes (the runtimes name
        engines after the graph, not its weights), the profile (``size_range``, batches up to
        ``TENSORRT_MAX_BATCH``, float16), the runtime's and TensorRT's wheels, ``tensorrt`` (the version the
        runtime loads, however installed) and the GPU: an engine runs only where built. Its manifest makes it
        stale when a wheel or a model file's bytes change (``core.cache._stale``)."""
        if not self.engine_cache:
            yield None
            return
        package = 'onnxruntime-gpu' if runtime == 'onnxruntime' else 'paddlepaddle-gpu'
        versions = {name: package_version(name) for name in (package, *installed_wheels(TENSORRT_WHEELS))}
        gpu = cuda_device(gpu_number(self.device)) or 'an unknown GPU'
        settings = [runtime, self.size_range, TENSORRT_MAX_BATCH, 'float16', versions, tensorrt, gpu]
        records = {str(path.resolve()): file_record(path) for path in files}
        digest = hashlib.sha256(repr([*settings, *(record['sha256'] for record in records.values())]).encode())
        key = {'versions': versions, 'tensorrt': tensorrt, 'gpu': gpu, 'files': records}
        with built_once(Path(self.engine_cache) / f'tensorrt-{digest.hexdigest()[:20]}', key,
                        f'TensorRT {tensorrt} engines of {runtime} on {gpu}', engines) as folder:
            yield str(folder)
