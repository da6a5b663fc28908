"""Where pictures come from: the image files of a folder, the frames of a video file or a
camera (what ``pipeline.Predictor.run_pictures`` reads, through the model's reader)."""
from pathlib import Path
from typing import Callable, Tuple, Union

import cv2
import numpy as np

from solov2.core.errors import InputError
from solov2.data.files import IMAGE_SUFFIXES

VIDEO_SUFFIXES = {'.mp4', '.avi', '.mov', '.mkv'}


def list_images(path: str, what: str = 'an image file or a folder of images') -> list:
    """Image files under ``path`` (an image file or a folder), sorted; InputError asking for
    ``what`` when there are none or the file is not named as an image."""
    root = Path(path)
    if root.is_file() and root.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f'{path} is not an image (expected {" ".join(sorted(IMAGE_SUFFIXES))}) — give {what}')
    found = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                                                 ) if root.is_dir() else []
    if not found:
        raise InputError(f'no images found at {path} — give {what}')
    return found


def read_frames(capture, first, max_frames: int):
    """(index, BGR frame) from ``first`` on until the stream ends or ``max_frames`` (0: all)."""
    index, frame = 0, first
    while frame is not None:
        yield index, frame
        index += 1
        ok, frame = capture.read() if not max_frames or index < max_frames else (False, None)
        frame = frame if ok else None


def open_capture(source: Union[str, int]):
    """(capture, first BGR frame) of a video file or camera ID; InputError when it cannot be
    opened or has no frame."""
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise InputError(f'cannot open {"camera " if isinstance(source, int) else "video "}{source}'
                         + (' — check the ID (0 is the first camera) and that no other program holds it'
                            if isinstance(source, int) else ' — is it a video file OpenCV can read?'))
    ok, first = capture.read()
    if not ok:
        capture.release()
        raise InputError(f'no frames in {source}')
    return capture, first


def frame_reader(read: Callable[..., np.ndarray]) -> Callable[[Tuple[int, np.ndarray]], np.ndarray]:
    """How a model reads the (index, BGR frame) items of ``read_frames``: through its reader (``read``:
    ``Predictor.read``, with its pixel limit and colour rule), a frame named by its index in a message."""
    return lambda item: read(item[1], 'bgr', what=f'frame {item[0]}')
