"""``PictureReader``: the one way a model's pictures are read, whatever brings them (the API's paths,
bytes, file objects, arrays and PIL images; a folder's files for the demo, evaluation and
quantization; the service's request bodies; a training run's picture), built from the model's
description: its pixel limit (checked from the header, before decoding), whether a JPEG much larger
than the network's input may be decoded at its scale (``fast_decode``), and one colour rule (grey
and alpha read as RGB, with a warning). It also says what reading a picture will hold, before it is
read (``cost``), for the read-ahead that keeps pictures in flight within a budget.
"""
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from solov2.core.errors import InputError
from solov2.data.transforms import check_pixels, decode_image, header_size, pil_to_array, read_image, to_rgb
from solov2.model.inference.memory import decode_cost, prepared_bytes

Image = Any     # a path (str or os.PathLike), encoded bytes or a binary file object, a numpy array or a PIL image
ENCODED = (bytes, bytearray, memoryview)
HEADER_BYTES = 2 ** 16      # what is read of a file for its size before it is read (``cost``)
CHANNELS = ('bgr', 'rgb')


def check_channels(channels: str) -> str:
    """``channels`` when it is 'bgr' or 'rgb', else InputError."""
    if channels not in CHANNELS:
        raise InputError(f"channels must be 'bgr' (OpenCV's order, the default) or 'rgb', not {channels!r}")
    return channels


def is_pil_image(image: Any) -> bool:
    """Whether ``image`` is a PIL image (without importing PIL when nothing has)."""
    module = sys.modules.get('PIL.Image')
    return module is not None and isinstance(image, module.Image)


def is_encoded(image: Any) -> bool:
    """Whether ``image`` is an encoded picture as it arrives: bytes (``ENCODED``) or anything with ``read``."""
    return isinstance(image, ENCODED) or (callable(getattr(image, 'read', None)) and not is_pil_image(image))


def read_encoded(image: Any, what: str) -> Union[bytes, bytearray, memoryview]:
    """The bytes of ``image`` (``is_encoded``): itself, or its ``read()``; InputError when that is no bytes."""
    if isinstance(image, ENCODED):
        return image
    try:
        data = image.read()
    except (OSError, ValueError) as exc:          # a closed or unreadable file
        raise InputError(f'cannot read {what}: {exc}') from None
    if not isinstance(data, ENCODED):
        raise InputError(f'cannot read {what}: its read() gave {type(data).__name__}, not bytes — open it in binary '
                         "mode ('rb')")
    return data


def describe(source: Image) -> str:
    """How a message names an input: its path, 'bytes', 'a file object', 'an array' or 'a PIL image'."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if is_encoded(source):
        return 'bytes' if isinstance(source, ENCODED) else 'a file object'
    return 'a PIL image' if is_pil_image(source) else 'an array'


@dataclass(frozen=True)
class PictureReader:
    """Reads a model's pictures (module docstring): ``max_pixels`` (0: no limit), the network's test
    size ``short`` / ``max_size`` (what ``cost`` prepares for, and the scale a JPEG may be decoded at
    with ``fast_decode``)."""
    max_pixels: int = 0
    short: int = 0
    max_size: int = 0
    fast_decode: bool = False

    def read(self, image: Image, channels: str = 'bgr', max_pixels: Optional[int] = None,
             what: Optional[str] = None) -> np.ndarray:
        """[H, W, 3] uint8 RGB of ``image`` (a PIL image: RGB whatever ``channels`` says; an array in
        ``channels`` order); InputError over ``max_pixels`` (default the reader's; checked before decoding)
        or unreadable, naming it as ``what`` (default: by its kind)."""
        check_channels(channels)
        limit = self.max_pixels if max_pixels is None else max_pixels
        fit = (self.short, self.max_size) if self.fast_decode else None     # a JPEG's reduced decoding (decode_image)
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, limit, warn_colour=True, fit=fit)
        if is_encoded(image):
            what = what or f'the picture in the {"bytes" if isinstance(image, ENCODED) else "file object"} given'
            return decode_image(read_encoded(image, what), limit, warn_colour=True, what=what, fit=fit)
        if is_pil_image(image):
            width, height = image.size
            check_pixels(what or 'the PIL image given', width, height, limit)
            try:
                pixels = pil_to_array(image)
            except (OSError, SyntaxError, EOFError) as exc:    # Pillow decodes on first use: a broken file
                raise InputError(f'cannot read the PIL image given: {exc} — check the file it was opened '
                                 'from') from None
            return to_rgb(pixels, 'rgb', 'a PIL image', warn=True)
        shape = np.shape(image)
        if len(shape) in (2, 3):
            check_pixels(what or 'the array given', shape[1], shape[0], limit)
        return to_rgb(image, channels, 'an array', warn=True)

    def cost(self, image: Image) -> Optional[int]:
        """Bytes reading and preparing ``image`` holds at its peak, known before it is read (from a regular
        file's or bytes' header, an array's or PIL image's size); None when unknown. A path that is no regular
        file (a FIFO, a device) is not opened: reading its header would wait for a writer and take its bytes."""
        if isinstance(image, (str, os.PathLike)):
            try:
                if not stat.S_ISREG(os.stat(image).st_mode):
                    return None
                with open(image, 'rb') as file:
                    image = file.read(HEADER_BYTES)
            except OSError:
                return None
        if isinstance(image, ENCODED):
            size = header_size(image)
            return None if size is None else decode_cost(image, *size, self.short, self.max_size)
        if isinstance(image, np.ndarray) and image.ndim in (2, 3):
            return prepared_bytes(image.shape[1], image.shape[0], self.short, self.max_size)
        if is_pil_image(image):
            width, height = getattr(image, 'size')        # a PIL image's (width, height)
            return prepared_bytes(width, height, self.short, self.max_size)
        return None
