"""INT8 post-training quantization of an exported model with NNCF (``tools/quantize.py``,
docs/deployment.md#int8). NNCF needs a static shape: the images are preprocessed and zero-padded
to the largest, each with its own size as ``regions``; the model is quantized at that shape and
saved reshaped to any size as an OpenVINO IR. The convolutions nearest the outputs and everything
that reads ``regions`` stay f32. With COCO annotations, ``nncf.quantize_with_accuracy_control``
puts back in f32 the layers that cost the most mask AP (``coco_validation``) until within
``max_drop`` points, telling ``progress`` each NNCF message and validation pass (``Pass``).
"""
import json
import logging
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union, cast

import numpy as np
from pycocotools.coco import COCO

from solov2.core.cache import compiled_cache
from solov2.core.errors import InputError, param
from solov2.core.paths import build_folder
from solov2.data.coco import CocoDataset, check_picture_sizes
from solov2.data.results import instances_to_coco
from solov2.data.scoring import coco_stats, run_cocoeval
from solov2.data.transforms import pad_to, preprocess
from solov2.model.inference.backend import Backend
from solov2.model.inference.export_network import INPUT_NAME, REGIONS_NAME, network_feed
from solov2.model.inference.exported_folder import INT8_FILES
from solov2.model.inference.openvino_backend import MOST_COMPILES, OpenVinoBackend
from solov2.model.inference.pipeline import Predictor, Prepared
from solov2.model.inference.spec import ModelSpec, exported_backend

INT8_XML = 'model_int8.xml'
INT8_PAYS = 1.1            # INT8 pays when its network runs at least this many times as fast as f32's
SPEED_BUDGET_S = 20.0      # int8_speed's time for both engines (a slow model: fewer pictures, one at least)
_CONVOLUTIONS = ('Convolution', 'GroupConvolution', 'DeformableConvolution')
_TOTAL = re.compile(r'Total number of quantized operations in the model: (\d+)')
_RANKING = ('ranking quantizer groups (<= 1 per quantized op)', 'groups')
STEPS = {'Validation of initial model': ('f32 reference', 'one'),
         'Validation of quantized model': ('initial INT8', 'one'),
         'Collecting values for each data item using the initial': ('f32 per image', 'images'),
         'Collecting values for each data item using the quantized': ('INT8 per image', 'images'),
         'Number of parallel workers to rank': _RANKING, 'Re-calculating ranking scores': _RANKING,
         'Reverted': ('INT8 after reverting a group', 'one')}


def _nncf():
    """NNCF, imported without the warnings filters torch (under it) adds to the process's on import."""
    with warnings.catch_warnings():
        import nncf
    return nncf


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


def region_operations(model) -> List[str]:
    """Names of the operations of an ``openvino.Model`` that read its ``regions`` input, or what is
    computed from it and sizes only (``model.region.Region``'s bookkeeping and its uses): quantized,
    a region larger than the calibration's would be cut at that range."""
    region_made, valued, names = set(), set(), []
    for node in model.get_ordered_ops():            # topological order
        name = node.get_friendly_name()
        sources = {value.get_node().get_friendly_name() for value in node.input_values()}
        if node.get_type_name() == 'Parameter':
            (region_made if REGIONS_NAME in node.output(0).get_names() else valued).add(name)
            continue
        if sources & region_made:
            names.append(name)
        if sources & valued and node.get_type_name() != 'ShapeOf':     # a ShapeOf's output is sizes
            valued.add(name)
        elif sources & region_made:
            region_made.add(name)
    return names


def prepare_images(predictor: Predictor, paths: Sequence[Path], progress: Callable[[], None]) -> List[Prepared]:
    """Each image read and preprocessed as for inference (the engine not told: it compiles nothing for them)."""
    prepared, cfg, least = [], predictor.cfg, (predictor.engine.size_range or (0,))[0]
    for path in paths:
        image = predictor.read(str(path))
        prepared.append(Prepared(image, *preprocess(image, cfg.test_short, cfg.test_max, min_side=least)))
        progress()
    return prepared


class AnnotatedImages(NamedTuple):
    """COCO-annotated pictures to measure mask AP on: the loaded annotations, the image ids
    (ascending), their files, and the COCO category id of each model label (as eval.py maps them)."""
    coco: COCO
    image_ids: List[int]
    paths: List[Path]
    label_to_category_id: List[int]


def load_annotated(ann_file: str, image_dir: str, class_names: Sequence[str], limit: int = 0) -> AnnotatedImages:
    """The first ``limit`` (0: all) images, by id, of a COCO annotation file, found in
    ``image_dir``. InputError in one line: file missing or unreadable, categories not the
    model's classes, no annotated object, no image listed, a listed image not in the folder or not of the size
    the file gives it (``check_picture_sizes``)."""
    dataset = CocoDataset(ann_file, image_dir, class_names=list(class_names))
    coco = dataset.coco
    if not any(not ann.get('iscrowd', 0) for ann in coco.dataset['annotations']):
        raise InputError(f'{ann_file} has no annotated object — mask AP needs ground truth')
    image_ids = sorted(coco.getImgIds())[:limit if limit > 0 else None]
    if not image_ids:
        raise InputError(f'{ann_file} lists no images — give an annotation file with images')
    paths = [Path(image_dir) / coco.imgs[i]['file_name'] for i in image_ids]
    missing = [path for path in paths if not path.is_file()]
    if len(missing) == len(paths):
        raise InputError(f'no annotated images found: none of the {len(paths)} images of {ann_file} is in '
                         f'{image_dir} (e.g. {missing[0].name}) — pass the folder they are in')
    if missing:
        raise InputError(f'{len(missing)} of the {len(paths)} annotated images are not in {image_dir}, '
                         f'e.g. {missing[0].name}')
    check_picture_sizes(coco, image_dir, ann_file, image_ids)
    return AnnotatedImages(coco, image_ids, paths, dataset.label_to_category_id)


def coco_validation(spec: ModelSpec, annotated: AnnotatedImages, images: Sequence[np.ndarray]) -> Callable:
    """NNCF's ``validation_fn``: (a compiled model for [1, 3, H, W], indices into ``annotated``) -> (mask AP
    in points 0-100 on those of ``images`` [H, W, 3] uint8 RGB, None), run through the predictor and scored as in
    eval.py (pycocotools 'segm'; 0 without records or without ground truth), on ``spec``'s folder opened to run the
    compiled model (``OpenVinoBackend``'s ``compiled_model``)."""
    def validate(compiled, indices):
        ids = {index: annotated.image_ids[index] for index in indices}
        engine = exported_backend(spec, compiled_model=compiled)
        with Predictor(engine) as predictor:
            records = [record for _, found in predictor.run_pictures(ids, images.__getitem__, lambda index, _, found: (
                instances_to_coco(ids[index], found.masks, found.labels, found.scores, annotated.label_to_category_id)))
                for record in found]
        stats = coco_stats(run_cocoeval(annotated.coco, records, 'segm', list(ids.values()))) if records else {'AP': 0}
        return max(100.0 * stats['AP'], 0.0), None
    return validate


def reverted_operations(messages: Sequence[str]) -> Tuple[Optional[int], List[str]]:
    """(how many quantized operations NNCF's accuracy control put back in f32, their names), read
    from its log ``messages``: its report 'N out of M were reverted ...'; all M (names unknown)
    when it gave up after reverting every group; none when it reverted nothing; (None, []) when
    it started reverting and left no report this function knows."""
    total, started = None, False
    for message in messages:
        found = _TOTAL.match(message)
        total = int(found.group(1)) if found else total
        started = started or message.startswith('Changing the scope of quantizer nodes')
        found = re.match(r'(\d+) out of \d+ were reverted back to the floating-point precision:(.*)', message, re.S)
        if found:
            return int(found.group(1)), [line.strip() for line in found.group(2).splitlines() if line.strip()]
        if message.startswith('All layers have been checked'):
            return total, []
    return (None, []) if started else (0, [])


class Pass(NamedTuple):
    """A validation pass of accuracy control, as ``progress`` hears it: what it is for, its number in that
    step and the step's most, the images scored, their mask AP (points), its seconds. ``STEPS``: NNCF's
    message that starts a step of accuracy control -> (what its validation passes are for, how many it
    takes at most: one, one per annotated image, or one per group of quantizers, fewer than the
    quantized operations it counts)."""
    purpose: str
    step: int
    steps: int
    images: int
    ap: float
    seconds: float


class _Reporting(logging.Handler):
    """Attached to NNCF's logger: the INFO ``messages`` of its accuracy control (not its
    quantization's notes nor its timers), each handed on to ``progress``, which also hears a
    ``Pass`` for each call of ``validate``, ``validation_fn`` timed."""

    def __init__(self, validation_fn: Callable, progress: Callable[[Union[str, Pass]], None], images: int):
        super().__init__(logging.INFO)
        self.validation_fn, self.progress, self.most = validation_fn, progress, {'one': 1, 'images': images}
        self.messages: List[str] = []
        self.begin('f32 reference')

    def begin(self, purpose: str, most: str = 'one') -> None:
        """The passes from now on are for ``purpose``, ``most`` of them at most (a ``STEPS`` kind)."""
        self.purpose, self.step, self.steps = purpose, 0, self.most.get(most, 1)

    def emit(self, record: logging.LogRecord) -> None:
        if 'accuracy_control' not in record.pathname and record.funcName != 'quantize_with_accuracy_control_impl':
            return
        message = record.getMessage()
        self.messages.append(message)
        found = _TOTAL.match(message)
        if found:
            self.most['groups'] = int(found.group(1))
        step = next((step for start, step in STEPS.items() if message.startswith(start)), None)
        if step:
            self.begin(*step)
        self.progress(message)

    def validate(self, compiled, indices) -> Tuple[float, None]:
        indices, start = list(indices), time.perf_counter()
        ap, values = self.validation_fn(compiled, indices)
        self.step += 1
        self.progress(Pass(self.purpose, self.step, self.steps, len(indices), ap, time.perf_counter() - start))
        return ap, values


def accuracy_controlled(model, calibration: Sequence[dict], count: int, validate: Callable,
                        kept: Sequence[str], max_drop: float,
                        progress: Callable[[Union[str, Pass]], None] = lambda event: None) -> Tuple[object, dict]:
    """``nncf.quantize_with_accuracy_control`` of a static-shape ``model`` ([1, 3, H, W], the
    shape of every ``calibration`` input) from the ignored scope ``kept``; ``validate`` is
    ``coco_validation`` of ``count`` annotated images, ``max_drop`` in AP points, absolute.
    Returns (quantized model, {'metric', 'max_drop', 'annotated_images', 'f32_ap', 'int8_ap',
    'reverted', 'reverted_f32'}): the APs measured again here, the operations put back in f32 beyond
    ``kept`` (``reverted_operations``). ``progress`` hears NNCF's INFO messages and each ``Pass``."""
    nncf = _nncf()
    import openvino as ov
    if max_drop < 0:
        raise InputError(f'max_drop must be >= 0 AP points, got {max_drop}')
    steps = _Reporting(validate, progress, count)
    progress(f'calibrating on {len(calibration)} images, then scoring models on {count} annotated images')
    logging.getLogger('nncf').addHandler(steps)
    try:
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(list(calibration)), nncf.Dataset(list(range(count))),
            steps.validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=list(kept)) if kept else None)
    finally:
        logging.getLogger('nncf').removeHandler(steps)
    aps = []
    for purpose, measured in (('f32 measured again', model), ('INT8 result', quantized)):
        steps.begin(purpose)
        aps.append(steps.validate(ov.Core().compile_model(measured, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'}),
                                  range(count))[0])
    f32_ap, int8_ap = aps
    reverted, names = reverted_operations(steps.messages)
    return quantized, {'metric': 'mask AP, points (0-100)', 'max_drop': max_drop, 'annotated_images': count,
                       'f32_ap': round(f32_ap, 4), 'int8_ap': round(int8_ap, 4),
                       'reverted': reverted, 'reverted_f32': names}


def quantize_model(spec: ModelSpec, paths: Sequence[Path], out_dir: Path, keep_depth: int = 2,
                   progress: Callable[..., None] = lambda event=None: None, annotated: Optional[AnnotatedImages] = None,
                   max_drop: float = 1.0) -> dict:
    """Quantize the model_regions.onnx of ``spec``'s exported folder (``backend`` 'openvino', f32, its
    ``threads``: ``ModelSpec``, checked) on the images ``paths`` into ``out_dir``; with
    ``annotated``, under accuracy control (``max_drop`` mask AP points on those images).
    ``progress()`` is called once per image read (calibration, then annotated), then under accuracy
    control ``progress(message)`` and ``progress(Pass)`` as ``accuracy_controlled`` says.
    The calibration images are each zero-padded (bottom, right) to the largest size of all the images,
    its own size the ``regions`` input. Returns {'input_shape', 'kept_f32', 'images'} plus
    'accuracy_control' with ``annotated``."""
    nncf = _nncf()
    import openvino as ov
    spec.check()
    if spec.backend != 'openvino' or spec.precision not in (None, 'f32'):
        raise InputError(param('backend', spec.backend), ' and ', param('precision', spec.precision),
                         ": quantization reads an exported folder's f32 model with backend='openvino'")
    backend = cast(OpenVinoBackend, exported_backend(spec, buckets=True))     # the region masks kept
    predictor = Predictor(backend)
    inputs = [p.chw for p in prepare_images(predictor, paths, progress)]
    checked = prepare_images(predictor, annotated.paths, progress) if annotated else []
    size = [max(chw.shape[axis] for chw in inputs + [p.chw for p in checked]) for axis in (1, 2)]
    batches = [network_feed(backend.input_names, pad_to(chw, *size)[None], chw.shape[1:]) for chw in inputs]
    shape = list(batches[0][INPUT_NAME].shape)
    model = backend.model.clone()
    model.reshape(backend.input_shapes(shape))
    kept = output_convolutions(model, keep_depth) if keep_depth > 0 else []
    ignored = kept + region_operations(model)
    summary = {'input_shape': shape, 'kept_f32': kept, 'images': len(batches)}
    if annotated:
        validate = coco_validation(spec, annotated, [p.image for p in checked])
        quantized, summary['accuracy_control'] = accuracy_controlled(model, batches, len(checked), validate, ignored,
                                                                     max_drop, progress)
    else:
        quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                                  ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None)
    quantized.reshape(backend.input_shapes([-1, 3, -1, -1]))      # -1: any size
    files = {'model': INT8_XML, 'weights': Path(INT8_XML).with_suffix('.bin').name, 'nncf': nncf.__version__,
             'openvino': ov.__version__, 'calibration_images': len(batches), 'kept_f32': kept}
    if annotated:
        files['accuracy_control'] = summary['accuracy_control']
    save_int8(quantized, dict(backend.info, files={INT8_FILES: files}), out_dir)
    return summary


def compile_here(int8_dir: Path, cache_dir: Optional[str] = None, threads: int = 0,
                 progress: Callable[[int, int], None] = lambda done, total: None) -> Tuple[OpenVinoBackend, float]:
    """Compile the INT8 folder's bucket models for this CPU (batches of one, ``threads`` as a later run
    takes them, ``MOST_COMPILES`` at once) into the cache's compiled models (``core.cache.compiled_cache``),
    so that a later run here loads them instead of compiling one per new size on its first pictures;
    ``progress(done, total)`` after each. (The engine, its ``compiled`` models ready; seconds.)"""
    spec = ModelSpec(backend='openvino', model_dir=str(int8_dir), precision='int8', threads=threads)
    engine = cast(OpenVinoBackend, exported_backend(spec, compiled_cache(cache_dir)))
    keys = [engine.compile_key((1, 3, *hw)) for hw in engine.buckets]
    began = time.perf_counter()
    with ThreadPoolExecutor(max(1, min(engine.properties['INFERENCE_NUM_THREADS'], MOST_COMPILES))) as workers:
        for done, _ in enumerate(workers.map(lambda key: engine.pools([key]), keys), start=1):
            progress(done, len(keys))
    return engine, time.perf_counter() - began


class Int8Speed(NamedTuple):
    """The network's mean milliseconds a picture in f32 and in INT8 on the same ``pictures``."""
    f32_ms: float
    int8_ms: float
    pictures: int

    @property
    def speedup(self) -> float:
        """INT8's speed as a multiple of f32's (below 1: slower)."""
        return self.f32_ms / self.int8_ms

    @property
    def pays(self) -> bool:
        """Whether INT8 is at least ``INT8_PAYS`` times as fast as f32: worth what it costs in accuracy."""
        return self.speedup >= INT8_PAYS


def int8_speed(f32: Backend, int8: Backend, inputs: Sequence[np.ndarray], budget_s: float = SPEED_BUDGET_S,
               progress: Callable[[int, int], None] = lambda done, total: None) -> Int8Speed:
    """The network time of the engines ``f32`` and ``int8`` (one model's) on the prepared pictures ``inputs``
    ([3, H, W] each): each picture run by both in turn, the first of them alternating, once untimed on a size
    new to them (its compile, first-call allocations), then timed; on as many pictures as the first says fit in
    ``budget_s`` (one at least). ``progress(done, total)`` after each picture."""
    spent, seen, total = {f32: 0.0, int8: 0.0}, set(), len(inputs)
    began = time.perf_counter()
    for index, chw in enumerate(inputs):
        batch, engines = chw[None], (f32, int8) if index % 2 == 0 else (int8, f32)
        for engine in engines if chw.shape not in seen else ():
            engine.run_numpy(batch)
        seen.add(chw.shape)
        for engine in engines:
            start = time.perf_counter()
            engine.run_numpy(batch)
            spent[engine] += time.perf_counter() - start
        if index == 0:
            total = max(1, min(len(inputs), int(budget_s / (time.perf_counter() - began))))
        progress(index + 1, total)
        if index + 1 == total:
            break
    return Int8Speed(1000 * spent[f32] / total, 1000 * spent[int8] / total, total)


def save_int8(quantized, info: dict, out_dir: Path) -> None:
    """Write the quantized ``openvino.Model`` as ``INT8_XML`` (+ .bin) and ``info`` as
    infer_cfg.json into the new folder ``out_dir``: complete or absent (``core.paths.build_folder``)."""
    import openvino as ov

    with build_folder(out_dir) as tmp:
        ov.save_model(quantized, str(tmp / INT8_XML), compress_to_fp16=False)
        (tmp / 'infer_cfg.json').write_text(json.dumps(info, indent=2) + '\n')
