"""``Segmenter``: SOLOv2 from Python, on any backend, for one picture, many, or a video."""
import contextlib
import dataclasses
import functools
import logging
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Dict, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from solov2.api.instances import Instances
from solov2.convert.zoo import checked_config, resolve_weights
from solov2.core.errors import InputError
from solov2.data.results import SHOWN_MIN_SCORE
from solov2.model.distributed import SINGLE, Processes
from solov2.model.inference.backend_factory import open_backend
from solov2.model.inference.media import frame_reader, list_images, open_capture, read_frames
from solov2.model.inference.pipeline import PipelineOptions, Predictor, at_least_one
from solov2.model.inference.postprocess import InferenceParams
from solov2.model.inference.reading import Image, check_channels, describe, is_encoded, is_pil_image
from solov2.model.inference.spec import ModelSpec, Progress

LOG = logging.getLogger(__name__)


def per_call_params(params: InferenceParams, score_threshold: Optional[float] = None,
                    max_instances: Optional[int] = None) -> InferenceParams:
    """``params`` with one call's config ``score_threshold`` and ``max_per_image`` (``max_instances``)."""
    changes: Dict[str, Any] = {}
    if score_threshold is not None:
        changes['score_threshold'] = a_score('score_threshold', score_threshold)
    if max_instances is not None:
        changes['max_per_image'] = at_least_one('max_instances', max_instances)
    return dataclasses.replace(params, **changes)


def a_score(name: str, value: float) -> float:
    """``value`` as a float; InputError naming ``name`` unless it is a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise InputError(f'{name} must be a number from 0 to 1, not {value!r}')
    return float(value)


class Segmenter:
    """SOLOv2 instance segmentation from Python: the same backends, pre- and post-processing
    as demo.py and eval.py.

    Args:
        weights: a project checkpoint (.pdparams), or a published name such as 'mmdet/solov2_r50_fpn_1x_coco'
            (downloaded, converted and cached on first use: docs/checkpoints.md); its config comes from the
            sidecar unless ``config`` is given. Or the whole model as one ``ModelSpec``, whose fields are
            the keywords below: ``Segmenter(ModelSpec(weights, backend='onnx', ...))``.
        config: config number (``python demo.py --list-configs``).
        backend: 'auto' (default: exported once into a cache, OpenVINO or onnxruntime, whichever
            was faster when timed on this CPU; dygraph on a GPU), 'dygraph', or
            'inference' | 'onnx' | 'openvino' with ``model_dir``.
        model_dir: a folder from tools/export_model.py (or tools/quantize.py for int8).
        precision: 'f32', 'bf16' or 'int8' (openvino); None (default): f32, and for 'auto' bf16
            too where the CPU has it natively and it keeps f32's instances ('f32': f32 only).
        device: 'cpu' or 'gpu' (default: gpu when there is one); threads: CPU math threads
            (0: every core).
        overrides: config changes, ``{'score_threshold': 0.2}`` or ``['score_threshold=0.2']``.
        mkldnn, tensorrt: Paddle Inference ('inference') with oneDNN; on a GPU, 'inference' or 'onnx' through TensorRT.
        fast_decode: a JPEG path or bytes much larger than the network's input decoded at 1/2, 1/4 or 1/8
            of its size (``data.transforms.decode_image``'s ``fit``), answered on its whole grid; off by default.
        processes: under ``paddle.distributed.launch``, ``model.distributed.start_processes(device)``:
            threads 0 is then this process's share of the cores, and 'auto' exports once per node.
        cache_dir: the cache of the exports of 'auto' and of the converted published checkpoints; default
            ``$SOLOV2_CACHE``, else ``~/.cache/solov2-paddle``.
        progress: ``progress(stage, fraction)``, called while 'auto' exports a checkpoint the first
            time (stages 'load', 'export', 'verify', 'time', 'done'; fraction 0 to 1).
        mirror: a folder or an http(s) base URL with the publishers' file names that stands in for
            their hosts (default ``$SOLOV2_MIRROR``).
        pipeline: how pictures move (``PipelineOptions``: batching of callers' pictures, reading and
            finishing threads, bytes in flight); the one predictor every call and thread goes through.
    ``close()`` (or leaving a ``with`` block) releases the model and stops its threads (a stream still
    running finishes first); later calls raise InputError.
    Errors: ``core.errors.InputError`` (a ValueError) with a one-line message.
    """

    def __init__(self, weights: Union[None, str, os.PathLike, ModelSpec] = None, *, processes: Processes = SINGLE,
                 cache_dir: Optional[str] = None, progress: Optional[Progress] = None, mirror: Optional[str] = None,
                 pipeline: Optional[PipelineOptions] = None, **model: Any):
        self._predictor = None
        if isinstance(weights, ModelSpec) and model:
            raise InputError(f'give the model as a ModelSpec or as keywords, not both ({", ".join(model)} beside '
                             'a ModelSpec): dataclasses.replace(spec, name=value) changes a field of it')
        spec = weights if isinstance(weights, ModelSpec) else ModelSpec(weights, **model)
        if spec.weights is None and spec.model_dir is None:
            raise InputError('give weights= (a .pdparams checkpoint) or model_dir= (an exported folder)')
        if progress is not None and not callable(progress):
            raise InputError(f'progress takes a function progress(stage, fraction), not {progress!r}')
        if pipeline is not None and not isinstance(pipeline, PipelineOptions):
            raise InputError(f'pipeline takes a PipelineOptions(...), not {pipeline!r}')
        spec.check(checked_config)       # before a published name is fetched
        spec = dataclasses.replace(spec, weights=resolve_weights(spec.weights, cache_dir, mirror))
        self.number, engine = open_backend(spec, processes=processes, cache_dir=cache_dir, progress=progress,
                                           checked=True)
        self._predictor = Predictor(engine, fast_decode=spec.fast_decode, pipeline=pipeline or PipelineOptions())

    def set_pipeline(self, pipeline: PipelineOptions) -> None:
        """Move pictures as ``pipeline`` says from now on: a new predictor around the same engine, the old one
        closed (its streams still running finish first)."""
        old = self.predictor
        self._predictor = Predictor(old.engine, old.on_device, old.reader.fast_decode, pipeline)
        old.close()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (nothing then serves its calls)."""
        return self._predictor is None

    @property
    def predictor(self) -> Predictor:
        """The predictor around the engine (``model.inference.pipeline.Predictor``); InputError once closed."""
        if self._predictor is None:
            raise InputError('this Segmenter is closed — make a new Segmenter(...) to segment more pictures')
        return self._predictor

    @property
    def backend(self):
        """The engine (``model.inference.backend.Backend``); InputError once closed."""
        return self.predictor.engine

    @property
    def cfg(self):
        """The resolved config class (every setting as an attribute)."""
        return self.backend.cfg

    @property
    def class_names(self) -> Tuple[str, ...]:
        return tuple(self.backend.class_names)

    def __repr__(self) -> str:
        if self._predictor is None:
            return f'Segmenter(config={self.number}, closed)'
        return f'Segmenter(config={self.number} {self.cfg.__name__}, backend={self.backend.label})'

    def close(self) -> None:
        """Release the model and stop its predictor's threads (a stream still running keeps them until it
        ends); later calls raise InputError."""
        if self._predictor is not None:
            self._predictor.close()
        self._predictor = None

    def __enter__(self) -> 'Segmenter':
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def rgb(self, image: Image, channels: str = 'bgr') -> np.ndarray:
        """[H, W, 3] uint8 RGB of an ``Image`` given in ``channels`` order (``Predictor.read``)."""
        return self.predictor.read(image, channels)

    def __call__(self, images: Union[Image, Sequence[Image]], channels: str = 'bgr', batch_size: int = 1,
                 score_threshold: Optional[float] = None, max_instances: Optional[int] = None,
                 min_score: float = SHOWN_MIN_SCORE) -> Union[Instances, List[Instances]]:
        """The ``Instances`` of one picture: a path, encoded bytes or a binary file object (an upload as
        it arrives), a numpy array ([H, W, 3] BGR unless ``channels='rgb'``; [H, W] grey and [H, W, 4]
        with alpha too; uint8 or uint16) or a PIL image, at most the config's ``max_image_pixels``
        (``Predictor.read``); for a list (or tuple) of them, a list in the same order, ``batch_size``
        pictures to a network run; a picture that cannot be read raises InputError naming it.
        ``score_threshold`` and ``max_instances``: this call's config ``score_threshold`` and
        ``max_per_image``; ``min_score``: the least final score an instance answered has (default
        ``SHOWN_MIN_SCORE``, 0.3: what a person would call an object; 0 gives every instance)."""
        alone, results = not isinstance(images, (list, tuple)), []
        reading = self._pictures([images] if alone else images, channels, batch_size, score_threshold,
                                 max_instances, min_score)
        with contextlib.closing(reading) as done:
            for index, (source, result) in enumerate(done):
                if isinstance(result, ValueError) and not alone:
                    raise InputError(f'picture {index} of the list ({describe(source)}): {result}') from result
                if isinstance(result, Exception):
                    raise result
                results.append(result)
        return results[0] if alone else results

    def stream(self, images: Union[str, os.PathLike, Iterable[Image]], channels: str = 'bgr', batch_size: int = 1,
               score_threshold: Optional[float] = None, max_instances: Optional[int] = None,
               min_score: float = SHOWN_MIN_SCORE) -> Iterator[Tuple[Any, Instances]]:
        """``(source, instances)`` for each picture of a folder (or one ``Image``), or of an iterable of
        them, in order (the arguments as ``__call__``'s); one that cannot be read is skipped with a warning."""
        if isinstance(images, (str, os.PathLike)):
            images = list_images(str(images))
        elif is_encoded(images) or is_pil_image(images) or isinstance(images, np.ndarray):
            images = [images]
        for source, result in self._pictures(images, channels, batch_size, score_threshold, max_instances, min_score):
            if isinstance(result, Exception):
                LOG.warning(f'skipped {describe(source)}: {result}')
            else:
                yield source, result

    def stream_video(self, source: Union[str, int], max_frames: int = 0, score_threshold: Optional[float] = None,
                     max_instances: Optional[int] = None, batch_size: int = 1, min_score: float = SHOWN_MIN_SCORE
                     ) -> Iterator[Tuple[int, np.ndarray, Instances]]:
        """``(frame index, BGR frame, instances)`` for each frame of a video file or camera (an int ID) until
        it ends or ``max_frames`` (0: all), in order (the other arguments as ``__call__``'s)."""
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
            raise InputError(f'video not found: {source} — check the path')
        capture, first = open_capture(source if isinstance(source, int) else str(source))
        try:
            for (index, frame), result in self._run(read_frames(capture, first, max_frames),
                                                    frame_reader(self.predictor.read), batch_size,
                                                    score_threshold, max_instances, min_score):
                if isinstance(result, Exception):
                    raise result
                yield index, frame, result
        finally:
            capture.release()

    def _pictures(self, images: Iterable[Image], channels: str, *args):
        """``_run`` over pictures in ``channels`` order, read ahead within what their ``PictureReader.cost`` says."""
        predictor = self.predictor
        read = functools.partial(predictor.read, channels=check_channels(channels))
        return self._run(images, read, *args, cost=predictor.reader.cost)

    def _run(self, images: Iterable[Any], read: Callable[[Any], np.ndarray], batch_size: int,
             score_threshold: Optional[float], max_instances: Optional[int], min_score: float,
             cost: Callable[[Any], Optional[int]] = lambda item: None
             ) -> Generator[Tuple[Any, Union[Instances, Exception]], None, None]:
        """``(source, Instances or the exception that stopped the picture)`` for each of ``images`` in
        order (``Predictor.run_pictures``), those scoring under ``min_score`` left out."""
        params = per_call_params(self.predictor.params, score_threshold, max_instances)
        names, min_score = self.class_names, a_score('min_score', min_score)
        return self.predictor.run_pictures(images, read, lambda _, __, found: instances_of(names, found, min_score),
                                           params, batch_size, cost=cost)


def instances_of(class_names: Sequence[str], detections, min_score: float = 0.0) -> Instances:
    """A picture's pasted ``Detections`` (``Predictor.finish``) as Instances of ``class_names``, those scoring under
    ``min_score`` left out."""
    found = Instances(detections.masks, detections.labels, detections.scores, tuple(class_names))
    return found.filter(min_score) if min_score else found
