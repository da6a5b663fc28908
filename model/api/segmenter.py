"""``Segmenter``: SOLOv2 from Python, on any backend, for one picture, many, or a video."""
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from solov2.config.errors import InputError
from solov2.data.transforms import read_image
from solov2.model.api.instances import Instances, check_channels
from solov2.model.distributed import SINGLE, Processes
from solov2.model.inference.backends import open_backend
from solov2.model.inference.media import list_images, open_capture, read_frames, video_stages
from solov2.model.inference.pipeline import PipelineStats, stream_pipeline

LOG = logging.getLogger(__name__)
Image = Union[str, os.PathLike, np.ndarray]


def override_list(overrides: Union[None, Mapping[str, Any], Sequence[str]]) -> list:
    """``{'score_threshold': 0.2}`` or ``['score_threshold=0.2']`` -> ``['score_threshold=0.2']``."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f'{name}={value!r}' for name, value in overrides.items()]
    if isinstance(overrides, str):
        raise InputError(f"overrides takes a dict or a list of 'name=value' strings, not the string {overrides!r}")
    return list(overrides)


class Segmenter:
    """SOLOv2 instance segmentation from Python: the same backends, pre- and post-processing
    as demo.py and eval.py.

    Args:
        weights: a project checkpoint (.pdparams from convert/*2paddle.py or train.py); its
            config comes from the sidecar beside it unless ``config`` is given.
        config: config number (``python demo.py --list-configs``).
        backend: 'auto' (default: exported once into a cache, OpenVINO f32 unless onnxruntime
            is 10% faster for this thread count and CPU; dygraph on a GPU), 'dygraph', or
            'inference' | 'onnx' | 'openvino' with ``model_dir``.
        model_dir: a folder from tools/export_model.py (or tools/quantize.py for int8).
        precision: 'f32', 'bf16' or 'int8' (openvino only).
        device: 'cpu' or 'gpu' (default: gpu when there is one); threads: CPU math threads
            (0: every core).
        overrides: config changes, ``{'score_threshold': 0.2}`` or ``['score_threshold=0.2']``.
        processes: under ``paddle.distributed.launch``, ``model.distributed.start_processes(device)``:
            threads 0 is then this process's share of the cores, and 'auto' exports once per node.
    Errors: ``config.errors.InputError`` (a ValueError) with a one-line message.
    """

    def __init__(self, weights: Optional[str] = None, config: Optional[int] = None, backend: str = 'auto',
                 model_dir: Optional[str] = None, precision: str = 'f32', device: Optional[str] = None,
                 threads: int = 0, overrides: Union[None, Mapping[str, Any], Sequence[str]] = None,
                 mkldnn: bool = False, processes: Processes = SINGLE):
        if weights is None and model_dir is None:
            raise InputError('give weights= (a .pdparams checkpoint) or model_dir= (an exported folder)')
        self.number, self.backend = open_backend(weights, config, backend, model_dir, precision, device, threads,
                                                 override_list(overrides), mkldnn, processes=processes)

    @property
    def cfg(self):
        """The resolved config class (every setting as an attribute)."""
        return self.backend.cfg

    @property
    def class_names(self) -> Tuple[str, ...]:
        return tuple(self.backend.class_names)

    def __repr__(self) -> str:
        return f'Segmenter(config={self.number} {self.cfg.__name__}, backend={self.backend.name})'

    def rgb(self, image: Image, channels: str = 'bgr') -> np.ndarray:
        """[H, W, 3] uint8 RGB of an image path or an array in ``channels`` order."""
        check_channels(channels)
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, self.cfg.max_image_pixels, warn_colour=True)
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise InputError(f'an image array must be [H, W, 3] uint8, got {list(array.shape)} {array.dtype}')
        return array if channels == 'rgb' else cv2.cvtColor(array, cv2.COLOR_BGR2RGB)

    def __call__(self, image: Image, channels: str = 'bgr') -> Instances:
        """The instances of one picture: a path, or an [H, W, 3] uint8 array (BGR unless
        ``channels='rgb'``)."""
        return Instances.from_detections(self.backend(self.rgb(image, channels)), self.class_names)

    def stream(self, images: Union[str, os.PathLike, Iterable[Image]], channels: str = 'bgr'
               ) -> Iterator[Tuple[Any, Instances]]:
        """``(source, instances)`` for each picture of a folder (or one image path), or of an
        iterable of paths and arrays, in order. Reading and post-processing run in worker
        threads while the network runs (``model.inference.pipeline``); a picture that cannot
        be read is skipped with a warning on this module's logger."""
        if isinstance(images, (str, os.PathLike)):
            found = list_images(str(images))
            if not found:
                raise InputError(f'no images found at {images} — give an image file or a folder of images')
            images = found
        backend, stats = self.backend, PipelineStats()

        def load(item):
            return backend.prepare(self.rgb(item, channels))

        def finish(item, loaded, outputs):
            return Instances.from_detections(backend.finish_outputs(outputs, loaded[1]), self.class_names)

        yield from self._reporting(stream_pipeline(images, load, lambda loaded: backend.forward([loaded[0]]),
                                                   finish, stats), stats)

    def stream_video(self, source: Union[str, int], max_frames: int = 0
                     ) -> Iterator[Tuple[int, np.ndarray, Instances]]:
        """``(frame index, BGR frame, instances)`` for each frame of a video file or camera
        (an int ID) until it ends or ``max_frames`` (0: all), in order."""
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
            raise InputError(f'video not found: {source} — check the path')
        capture, first = open_capture(source if isinstance(source, int) else str(source))
        load, model = video_stages(self.backend, None)

        def finish(item, loaded, outputs):
            return Instances.from_detections(self.backend.finish_outputs(outputs, loaded[1][1]), self.class_names)

        try:
            for (index, frame), result in stream_pipeline(read_frames(capture, first, max_frames), load, model,
                                                          finish):
                yield index, frame, result
        finally:
            capture.release()

    @staticmethod
    def _reporting(results, stats: PipelineStats):
        """``results`` passed through, warning once about each picture the pipeline skipped."""
        reported = 0

        def report() -> None:
            nonlocal reported
            for source, message in stats.failed[reported:]:
                LOG.warning(f'skipped {"an array" if isinstance(source, np.ndarray) else source}: {message}')
            reported = len(stats.failed)

        for item in results:
            report()
            yield item
        report()
