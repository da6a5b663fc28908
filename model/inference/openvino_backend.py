"""The ``openvino`` backend: OpenVINO on the CPU, on a folder from ``tools/export_model.py``
(``model.onnx``; ``model_regions.onnx`` with size buckets) or, for int8, from ``tools/quantize.py``
(docs/deployment.md#openvino). Compiles use the LATENCY hint, unpinned threads (pinned ones stall
behind our workers on a shared core). INT8, and f32 padded to size buckets (``openvino_buckets``,
``data.transforms.bucket_sizes``; ``regions`` keeps each picture's own result), compile a static
model per input size (INT8 drifts on dynamic sizes); bf16 (it would round the regions graph's sizes)
and f32 otherwise one dynamic-shape model. Safe from many threads (``RequestPool``; one compile at a time).
"""
import locale
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from solov2.config.engines import PRECISIONS
from solov2.core.errors import param
from solov2.data.transforms import bucket_for, bucket_sizes
from solov2.model.cpu_math import cpu_name
from solov2.model.inference.backend import BackendError
from solov2.model.inference.export_network import INPUT_NAME, MIN_SIZE, OUTPUT_NAMES, REGIONS_NAME, network_feed
from solov2.model.inference.exported_folder import INT8_FILES, ExportedBackend, loading
from solov2.model.inference.openvino_graph import pad_deformable_sampling, rewrite_deform_conv
from solov2.model.runtime import cpu_threads

BUCKET_SETTINGS = ('int8', 'all', 'none')    # openvino_buckets: sizes padded to buckets for int8, for all, for none
MOST_COMPILES = 4     # at once in compile_ahead: a compile holds up to a few hundred MB (config 1 INT8: 180)
LOG = logging.getLogger(__name__)


def import_openvino():
    """The ``openvino`` module, or BackendError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise BackendError('the openvino backend needs OpenVINO: pip install -r requirements-deploy.txt')
    return openvino


def has_bf16(core) -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (BF16 among its capabilities)."""
    return 'BF16' in [str(c) for c in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')]


def output_order(outputs, source: str) -> List[int]:
    """Positions of ``OUTPUT_NAMES`` among an ``openvino.Model``'s or ``CompiledModel``'s ``outputs``,
    by tensor name; BackendError naming ``source`` when one is missing."""
    names = [set(output.get_names()) for output in outputs]
    try:
        return [next(i for i, n in enumerate(names) if name in n) for name in OUTPUT_NAMES]
    except StopIteration:
        raise BackendError(f'{source} model outputs {names} lack one of {OUTPUT_NAMES}')


class RequestPool:
    """The infer requests of one compiled model (its ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``), shared
    by the threads that call it: a call takes an idle one, waiting while all are busy."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.size = max(1, int(compiled.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS')))
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.size):
            self.idle.put(compiled.create_infer_request())

    def __call__(self, inputs):
        """The model's inputs (an array, or a dict by input name) -> its outputs (copies)."""
        request = self.idle.get()
        try:
            return request.infer(inputs)
        finally:
            self.idle.put(request)


def bucketed(setting: str, precision: str) -> bool:
    """Whether ``openvino_buckets`` (``setting``, one of ``BUCKET_SETTINGS``) pads a ``precision`` model's inputs to
    size buckets; BackendError for another setting."""
    if setting not in BUCKET_SETTINGS:
        raise BackendError(f"openvino_buckets is one of {', '.join(BUCKET_SETTINGS)}, not {setting!r}")
    return setting == 'all' or setting == precision == 'int8'


class KeptLocale:
    """A block after which the process's locale is what it was before the first of the blocks running
    at once (from any thread) began. Why: OpenVINO's compile with a model cache (``CACHE_DIR``) sets the
    whole process's locale to "C" (OpenVINO 2026.4: C.UTF-8 became C, so the host's text files turned
    ASCII); its compiles run in parallel (``compile_ahead``), so only the last to end puts it back."""

    def __init__(self):
        self.lock, self.running, self.saved = threading.Lock(), 0, ''

    def __enter__(self):
        with self.lock:
            if not self.running:
                self.saved = locale.setlocale(locale.LC_ALL)
            self.running += 1

    def __exit__(self, *exc):
        with self.lock:
            self.running -= 1
            if not self.running and locale.setlocale(locale.LC_ALL) != self.saved:
                locale.setlocale(locale.LC_ALL, self.saved)


KEPT_LOCALE = KeptLocale()


class OpenVinoBackend(ExportedBackend):
    """OpenVINO on CPU: ``precision`` f32 | bf16 | int8 (BackendError for another), ``threads``
    (0 = every core), ``buckets``: pad inputs to a few sizes (None: the config's ``openvino_buckets``),
    ``compiled_cache``: OpenVINO's ``CACHE_DIR``; ``compiled_model``: a model compiled for [1, 3, H, W] to run
    instead of the folder's, each picture padded to (H, W) (quantization's validation: the folder gives the config).
    ``compiled``: {input shape, None for the dynamic one: its requests}; ``compile_seconds``: each static
    shape's compile (or cache load) time."""
    name = 'openvino'

    def __init__(self, model_dir: str, threads: int = 0, precision: str = 'f32',
                 overrides: Sequence[str] = (), buckets: Optional[bool] = None,
                 compiled_cache: Optional[str] = None, compiled_model=None, pinned: bool = False):
        super().__init__(model_dir, overrides, pinned=pinned)
        self.core = import_openvino().Core()
        if compiled_cache:
            self.core.set_property({'CACHE_DIR': compiled_cache})
        if precision not in PRECISIONS:
            raise BackendError(f"unknown precision '{precision}' (expected one of {', '.join(PRECISIONS)})")
        if precision == 'bf16' and not has_bf16(self.core):
            raise BackendError(f'this CPU ({cpu_name()}) has no bf16 support in OpenVINO (neither AMX nor avx512_bf16)'
                               ': use ', param('precision', 'f32'), ' (or int8 with a folder from solov2 quantize / '
                               'tools/quantize.py)')
        self.precision = precision
        use_buckets = bucketed(self.cfg.openvino_buckets, precision) if buckets is None else buckets
        if use_buckets and precision == 'bf16':      # bf16 would round the regions graph's sizes and resize weights
            LOG.info('openvino bf16: no size buckets (the regions graph runs in f32 only): one dynamic-shape model')
            use_buckets = False
        self.model = self._read_model(regions=use_buckets) if compiled_model is None else compiled_model
        if compiled_model is None:
            pad_deformable_sampling(self.model)
        self.properties = {'INFERENCE_PRECISION_HINT': 'bf16' if precision == 'bf16' else 'f32',
                           'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_NUM_THREADS': cpu_threads(threads),
                           'ENABLE_CPU_PINNING': False}
        if self.cfg.openvino_streams > 1:
            self.properties['NUM_STREAMS'] = self.cfg.openvino_streams
        self.order = output_order(self.model.outputs, str(self.model_dir))
        self.compiled: Dict[Optional[tuple], RequestPool] = {}
        self.compiling: Dict[Optional[tuple], Future] = {}       # keys a thread compiles now: their pools to come
        self.ahead = ThreadPoolExecutor(min(cpu_threads(threads), MOST_COMPILES), 'solov2-compile')     # ``expect``
        self.lock = threading.Lock()
        self.input_names = [REGIONS_NAME if REGIONS_NAME in value.get_names() else value.get_any_name()
                            for value in self.model.inputs]      # a compiled model may name it otherwise too
        if use_buckets and REGIONS_NAME not in self.input_names:
            LOG.info(f'openvino: {model_dir} was exported before the regions input: no size buckets '
                     '(export or quantize it again to have them)')
            use_buckets = False
        self.buckets = ([tuple(compiled_model.input(INPUT_NAME).get_shape())[2:]] if compiled_model is not None
                        else bucket_sizes(self.cfg.test_short, self.cfg.test_max) if use_buckets else [])
        self.static = bool(self.buckets) or precision == 'int8'
        self.mixes_sizes = bool(self.buckets) and precision != 'int8'      # an older INT8 folder mixes inexactly
        self.compile_seconds: Dict[tuple, float] = {}
        if compiled_model is not None:
            self.compiled[self.compile_key((1, 3, *self.buckets[0]))] = RequestPool(compiled_model)

    def _read_model(self, regions: bool):
        """The INT8 IR for int8, else the ONNX graph (with the ``regions`` input for ``regions`` where
        the folder has it) with DeformConv rewritten."""
        int8 = self.precision == 'int8'
        files = self.model_files(INT8_FILES if int8 else 'onnx')
        path = self.model_file(files, 'regions_model' if regions and 'regions_model' in files else 'model')
        with loading(str(path)):
            if int8:
                return self.core.read_model(str(path), str(self.model_file(files, 'weights')))
            import onnx
            graph = onnx.load(str(path))
            rewrite_deform_conv(graph)
            return self.core.read_model(graph.SerializeToString())

    def compile_key(self, shape: Sequence[int]) -> Optional[tuple]:
        """Which compiled model runs a batch of ``shape`` [B, 3, H, W]: the dynamic one (None), the static
        one of its (H, W) (-1, 3, H, W), or for INT8 (dynamic dimensions drift) of the shape itself."""
        return None if not self.static else tuple(shape) if self.precision == 'int8' else (-1, *shape[1:])

    def compile_ahead(self, max_batch: int, mixed: bool = False) -> None:
        """Compile now each bucket's model (INT8: one per batch size up to ``max_batch``), ``MOST_COMPILES`` or the
        engine's threads at once, or the dynamic one; INT8 without buckets compiles each size at its first call.
        Run in a thread beside the first pictures, a picture whose model is compiled runs at once, and one whose
        model is being compiled waits for that one only (``pools``)."""
        counts = range(1, max_batch + 1) if self.precision == 'int8' else [1]
        shapes = [(n, 3, *hw) for hw in self.buckets for n in counts] if self.static else [(1, 3, MIN_SIZE, MIN_SIZE)]
        self.pools(list(map(self.compile_key, shapes)), min(self.properties['INFERENCE_NUM_THREADS'], MOST_COMPILES))

    def expect(self, padded_hw: Tuple[int, int]) -> None:
        """With a model per size (buckets, INT8): its compile for one picture of ``padded_hw`` begun in
        ``ahead`` unless done or under way (the first picture of each size then waits for its own compile
        only, no longer for each compile in turn on the network's path: the shipped model's INT8 on 30 pictures
        of random sizes, a first run, went from 2.82 to 3.32 pictures/s on a 2-core AMD EPYC)."""
        key = self.compile_key((1, 3, *self.run_size(padded_hw)))
        if self.static and key not in self.compiled and key not in self.compiling:
            self.ahead.submit(self.pools, [key])

    def pools(self, keys: Sequence[Optional[tuple]], at_once: int = 1) -> List[RequestPool]:
        """The request pools of ``keys`` (``compile_key``s): those no thread compiles yet compiled here,
        ``at_once`` at a time; those another thread compiles waited for (its error raised here too)."""
        with self.lock:
            others = {key: self.compiling[key] for key in keys if key in self.compiling}
            mine = {key: Future() for key in dict.fromkeys(keys) if key not in self.compiled and key not in others}
            self.compiling.update(mine)

        def make(key) -> None:
            try:
                self.compiled[key] = RequestPool(self._compile(key))
                mine[key].set_result(self.compiled[key])
            except BaseException as exc:       # the waiters' error too; a later call compiles again
                mine[key].set_exception(exc)
                raise
            finally:
                with self.lock:
                    del self.compiling[key]
        with ThreadPoolExecutor(max(1, min(at_once, len(mine)))) as workers:
            list(workers.map(make, mine))
        return [self.compiled.get(key) or others[key].result() for key in keys]

    def _compile(self, shape: Optional[tuple]):
        """The model compiled for inputs of ``shape`` [B, 3, H, W] (None: any size), its time logged."""
        model = self.model if shape is None else self.model.clone()
        if shape is not None:
            model.reshape(self.input_shapes(shape))
        began = time.perf_counter()
        with KEPT_LOCALE:
            compiled = self.core.compile_model(model, 'CPU', self.properties)
        seconds = time.perf_counter() - began
        if shape is not None:
            self.compile_seconds[shape] = seconds
        inputs = 'any input size' if shape is None else f'{shape[2]}x{shape[3]} inputs' + (
            f', {shape[0]} a batch' if shape[0] > 1 else '')
        (LOG.info if self.buckets else LOG.debug)(f'openvino {self.precision}: compiled for {inputs} in {seconds:.1f} '
                                                  f's (buckets: {len(self.buckets) or "off"})')
        return compiled

    def input_shapes(self, shape: Sequence[int]) -> dict:
        """The model's input shapes, by name, for images of ``shape`` [B, 3, H, W]."""
        return {INPUT_NAME: list(shape), **({REGIONS_NAME: [shape[0], 2]} if REGIONS_NAME in self.input_names else {})}

    def bucketed(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` [B, 3, H, W] zero-padded (bottom, right) to its bucket [B, 3, Hb, Wb], if any."""
        size = bucket_for(batch.shape[2], batch.shape[3], self.buckets)
        return batch if size is None or size == batch.shape[2:] else np.pad(
            batch, ((0, 0), (0, 0), (0, size[0] - batch.shape[2]), (0, size[1] - batch.shape[3])))

    def run_size(self, padded_hw: Tuple[int, int]) -> Tuple[int, int]:
        """The bucket a picture of ``padded_hw`` runs at (itself without buckets)."""
        return bucket_for(*padded_hw, self.buckets) or tuple(padded_hw)

    def run(self, batch: np.ndarray, regions: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """[B, 3, H, W] float32 (``regions``: each image's own size) -> (scores, kernels, mask_feat
        [B, E, H/4, W/4]) as numpy; with buckets the network sees the bucket and each picture's region."""
        own = batch.shape[2:] if regions is None else regions
        inputs = network_feed(self.input_names, self.bucketed(batch), own)
        key = self.compile_key(inputs[INPUT_NAME].shape)       # its model compiled on first use
        results = (self.compiled.get(key) or self.pools([key])[0])(inputs)
        return [np.asarray(results[index]) for index in self.order]
