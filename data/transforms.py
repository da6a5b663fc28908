"""Deterministic numpy preprocessing shared by demo, evaluation, training and export."""

from __future__ import annotations

import functools
import io
import logging
import threading
from dataclasses import dataclass
from os import PathLike
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin

from solov2.core.errors import InputError, LimitError, param

LOG = logging.getLogger(__name__)
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
DEFAULT_MAX_PIXELS = 100_000_000
SIZED_FORMATS = ('JPEG', 'PNG', 'BMP', 'WEBP', 'TIFF', 'GIF', 'JPEG2000', 'PPM', 'SUN', 'AVIF')   # OpenCV's formats
REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}     # OpenCV's flags for a JPEG decoded at 1/k (others: whole)
EXIF_ORIENTATION = 0x0112     # its values 5 to 8 turn the picture a quarter: height and width swap
HEADER_READS = (1 << 12, 1 << 16, 1 << 20, None)   # a header within 4 KiB, 64 KiB with a phone's EXIF, ..., the file
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_ALPHA_TYPES = (4, 6)     # IHDR colour types with an alpha channel: grey + alpha, RGBA
SWAP_ROWS = 32    # rows a band: its copy stays in the cache
BUCKET_RATIOS = (1.0, 4 / 3, 16 / 9)      # long side / short side of the common picture formats
_said: set[str] = set()     # the kinds of picture `warn_colour_of` has warned of (`_say_once`)
_said_lock = threading.Lock()


@dataclass(frozen=True)
class ImageMeta:
    """Sizes an image went through in `preprocess`, each as (height, width)."""
    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]


def header_size(data) -> tuple[int, int] | None:
    """`(width, height)` from the header of an encoded picture (bytes-like) by Pillow's reader of
    its format (`SIZED_FORMATS`; a WebP's `webp_size`), None when none reads it. Not `Image.open`,
    which checks Pillow's process-wide `MAX_IMAGE_PIXELS` (warning or error), as JPEG's MPO does."""
    Image.init()                # Pillow's readers, registered once
    with io.BytesIO(data) as file:
        prefix = file.read(30)
        for name in SIZED_FORMATS:
            reader, accept = Image.OPEN.get(name, (None, None))
            if reader is None or accept(prefix[:16]) is not True:     # a str: its library is missing
                continue
            if name == 'WEBP':
                return webp_size(prefix)
            file.seek(0)
            try:
                return (JpegImagePlugin.JpegImageFile if name == 'JPEG' else reader)(file).size
            except Exception:       # a reader fails on a damaged header in many ways (AVIF's: RuntimeError)
                return None
    return None


def webp_size(head: bytes) -> tuple[int, int] | None:
    """`(width, height)` of a WebP from its first 30 bytes (its first chunk's header: VP8, VP8L
    or VP8X), as Pillow's reader reads it; not through that reader, whose decoder allocates the
    whole canvas twice and, where malloc keeps freed memory (`model.tuning`), fills it (800 MB
    and 0.4 s at 100 MP, holding the GIL). None when the chunk gives no size."""
    chunk, number = head[12:16], functools.partial(int.from_bytes, byteorder='little')
    if chunk == b'VP8 ' and len(head) >= 30 and head[23:26] == b'\x9d\x01\x2a':
        return number(head[26:28]) & 0x3FFF, number(head[28:30]) & 0x3FFF
    if chunk == b'VP8X' and len(head) >= 30:
        return number(head[24:27]) + 1, number(head[27:30]) + 1
    if chunk == b'VP8L' and len(head) >= 25 and head[20] == 0x2F:
        bits = number(head[21:25])
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    return None


def check_pixels(what, width: int, height: int, max_pixels: int) -> None:
    """`LimitError` naming `what` ('image PATH', ...) when a `width` x `height` image exceeds
    `max_pixels` (0 = no limit)."""
    if max_pixels and width * height > max_pixels:
        raise LimitError(
            f'{what} is {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of {max_pixels / 1e6:g} MP',
            ' — shrink it or raise max_image_pixels (', param('overrides', ['max_image_pixels=N']), ')'
        )


def read_image(path: str | PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS,
               warn_colour: bool = False, fit: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as `[H, W, 3] uint8 RGB` (grey and RGBA converted): `decode_image` of its
    bytes (so non-ASCII paths work), the other parameters as there; InputError when it is missing."""
    try:
        buffer = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError(f'cannot read image {path}') from err
    return decode_image(buffer, max_pixels, warn_colour, f'image {path}', path, fit)


def decode_image(data, max_pixels: int = DEFAULT_MAX_PIXELS, warn_colour: bool = False,
                 what: str = 'the picture in the bytes given', source=None,
                 fit: tuple[int, int] | None = None) -> np.ndarray:
    """An encoded picture (bytes-like or `[n] uint8`) as `[H, W, 3] uint8 RGB`, decoded by OpenCV.
    With `max_pixels` (> 0) its header's size (`header_size`) is checked first: over it a `LimitError`
    naming `what`, no size an `InputError`, and neither is decoded; InputError when OpenCV does not
    decode it. `warn_colour`: log a transparent or greyscale picture (the commands that segment a
    user's pictures ask for it), named `source` (default `what`). `fit`: the network input's `(short,
    max_size)`: a JPEG twice that on both axes is decoded at 1/2, 1/4 or 1/8 (`jpeg_reduction`), a
    `ReducedImage` that `preprocess` answers on the full grid."""
    size = header_size(data) if max_pixels or fit else None
    if max_pixels:
        if size is None:
            raise InputError(f'cannot read {what}: not a JPEG, PNG, WebP, TIFF, GIF, ... whose header gives its size',
                             '; with no pixel limit (', param('overrides', ['max_image_pixels=0']), ') OpenCV tries it')
        check_pixels(what, *size, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    full_hw, factor = reduced_size(buffer, size, fit)
    try:
        bgr = cv2.imdecode(buffer, REDUCED_FLAGS[factor]) if buffer.size else None
    except cv2.error:
        bgr = None
    if bgr is None:
        raise InputError(f'cannot read {what}: not a picture OpenCV decodes (JPEG, PNG, BMP, WebP, TIFF, ...)')
    if factor > 1 and bgr.shape[:2] != tuple(-(-side // factor) for side in full_hw):
        LOG.debug(f'{what}: its reduced decoding is {bgr.shape[:2]}, not 1/{factor} of {full_hw}: decoded whole')
        return decode_image(buffer, 0, warn_colour, what, source)
    if warn_colour:       # a PNG's alpha, which the decoding dropped, is read from its bytes
        png_alpha = bytes(buffer[:8]) == PNG_SIGNATURE and buffer.size > 25 and buffer[25] in PNG_ALPHA_TYPES
        unsaid = png_alpha and 'transparent' not in _said      # once warned of, not decoded again
        alpha = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)[..., -1] if unsaid else None
        warn_colour_of(what if source is None else source, bgr, alpha)
    rgb = swap_red_blue(bgr)      # decoded as 3-channel uint8 BGR, ours to reuse
    return rgb if factor == 1 else ReducedImage.of(rgb, full_hw)


class ReducedImage(np.ndarray):
    """`[h, w, 3] uint8 RGB` decoded at a fraction of a picture of `full_hw` (height, width),
    as `decode_image` with `fit` gives it: `preprocess` resizes it as that picture and answers
    on that picture's grid. Pixels derived from it (slices, results) are plain arrays to it."""
    full_hw: tuple[int, int]

    @classmethod
    def of(cls, image: np.ndarray, full_hw: tuple[int, int]) -> ReducedImage:
        view = image.view(cls)
        view.full_hw = full_hw
        return view


def jpeg_reduction(height: int, width: int, short: int, max_size: int) -> int:
    """The largest of 8, 4, 2 by which a JPEG codec may shrink a `height` x `width` picture
    (DCT scaling: each side to ceil(side / k)) that still leaves it at least as large on both
    axes as the network's input (`resized_hw` for `short`, `max_size`); 1 when none does."""
    (new_h, new_w), _ = resized_hw(height, width, short, max_size)
    return next((k for k in (8, 4, 2) if -(-height // k) >= new_h and -(-width // k) >= new_w), 1)


def reduced_size(buffer: np.ndarray, size: tuple[int, int] | None,
                 fit: tuple[int, int] | None) -> tuple[tuple[int, int] | None, int]:
    """(the full `(height, width)` as OpenCV decodes it, EXIF orientation applied, and the
    `jpeg_reduction` to decode it at) of an encoded picture of header `size` (width, height)
    for the network input `fit`; (None, 1) for no `fit`, no size or not a JPEG."""
    if fit is None or size is None or bytes(buffer[:3]) != b'\xff\xd8\xff':
        return None, 1
    full_hw = decoded_hw(buffer, size)
    return full_hw, jpeg_reduction(*full_hw, *fit)


def decoded_hw(data, size: tuple[int, int]) -> tuple[int, int]:
    """`(height, width)` as OpenCV decodes an encoded picture (bytes-like) of header `size` (width, height): a
    JPEG's EXIF orientation 5 to 8 (a quarter turn) swaps them, as OpenCV applies it."""
    width, height = size
    if bytes(data[:3]) != b'\xff\xd8\xff':
        return height, width
    with io.BytesIO(data) as file:
        try:
            turned = JpegImagePlugin.JpegImageFile(file).getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)
        except Exception:        # a damaged EXIF block: OpenCV's own reading decides, checked after decoding
            turned = False
    return (width, height) if turned else (height, width)


def picture_size(path: str | PathLike[str]) -> tuple[int, int] | None:
    """`(height, width)` of the picture file `path` as `read_image` decodes it (EXIF orientation applied, as
    training and inference read it), from its header and EXIF block alone: its first `HEADER_READS` bytes, more
    only where its header lies further; None when it is unreadable or its header gives no size."""
    try:
        with open(path, 'rb') as file:
            head = b''
            for limit in HEADER_READS:
                head += file.read(None if limit is None else limit - len(head))
                size = header_size(head)
                if size is not None or limit is None or len(head) < limit:      # found, or the file read whole
                    break
    except OSError:
        return None
    return None if size is None else decoded_hw(head, size)


def warn_colour_of(source, image: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Warn, once per kind and process (naming ``source``, the first met), of a picture unlike the
    models' training pictures: transparent pixels in ``alpha`` ([H, W] uint8 or uint16) or a
    greyscale ``image`` ([H, W, 3], either channel order)."""
    if alpha is not None and 'transparent' not in _said \
            and (alpha.min() < alpha.max() or alpha.max() < np.iinfo(alpha.dtype).max):
        _say_once('transparent', f'{source} has transparent pixels: they are segmented as the colours stored '
                                 'under them (flatten the picture onto a background first if that matters; '
                                 'other such pictures are not named)')
    if 'greyscale' not in _said and _grey(image[::8, ::8]) and _grey(image):
        _say_once('greyscale', f'{source} is greyscale: the models were trained on colour pictures and may find '
                               'fewer instances (other greyscale pictures are not named)')


def swap_red_blue(image: np.ndarray) -> np.ndarray:
    """`[H, W, 3] uint8` RGB to BGR (or back) in place, a band of rows at a time, and return it:
    no second picture, and faster than OpenCV's `cvtColor` in place."""
    for top in range(0, image.shape[0], SWAP_ROWS):
        band = image[top:top + SWAP_ROWS]
        band[...] = cv2.cvtColor(band, cv2.COLOR_RGB2BGR)
    return image


def to_rgb(image: np.ndarray, channels: str = 'rgb', source: str = 'an array', warn: bool = False) -> np.ndarray:
    """An image array as `[H, W, 3] uint8 RGB`, converted as `read_image` converts files: `[H, W]`
    or `[H, W, 1]` grey repeated, `[H, W, 4]`'s alpha (last) dropped, 16-bit values `>> 8`; `channels`
    'rgb' or 'bgr' (BGRA for 4). `warn`: `warn_colour_of`, naming `source`. InputError for another
    shape or dtype, ValueError for other `channels`; it may share memory with `image` when that is RGB uint8
    already."""
    if channels not in ('rgb', 'bgr'):
        raise ValueError(f"unknown channels {channels!r} (expected 'rgb' or 'bgr')")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if (array.dtype.kind != 'u' or array.dtype.itemsize > 2 or array.ndim not in (2, 3)
            or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape):
        hint = ' (several pictures: pass a list)' if array.ndim == 4 else ''
        raise InputError(f'an image array must be [H, W] grey, [H, W, 3] or [H, W, 4] (alpha last), uint8 '
                         f'or uint16, got {list(array.shape)} {array.dtype}{hint}')
    if array.dtype.itemsize == 2:
        array = (array >> 8).astype(np.uint8)
    if array.ndim == 2:
        rgb = cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    elif array.shape[2] == 4:
        rgb = cv2.cvtColor(array, cv2.COLOR_BGRA2RGB if channels == 'bgr' else cv2.COLOR_RGBA2RGB)
    else:
        rgb = cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if channels == 'bgr' else array
    if warn:
        warn_colour_of(source, rgb, array[..., 3] if array.ndim == 3 and array.shape[2] == 4 else None)
    return rgb


def pil_to_array(image) -> np.ndarray:
    """The pixels of a PIL image for `to_rgb` (channels 'rgb'): modes L, RGB, RGBA and
    I;16* as they are, I (32-bit integers, how Pillow may open a 16-bit PNG) as uint16 when
    its values fit; the rest (P, 1, LA, PA, CMYK, YCbCr, ...) converted by Pillow to RGBA when
    they carry transparency, else to RGB. InputError for floating-point or larger values."""
    mode = image.mode
    if mode in ('L', 'RGB', 'RGBA') or mode.startswith('I;16'):
        return np.asarray(image).astype(np.uint16 if mode.startswith('I;16') else np.uint8, copy=False)
    if mode in ('I', 'F'):
        array = np.asarray(image)
        if mode == 'I' and array.size and 0 <= array.min() and array.max() <= 0xFFFF:
            return array.astype(np.uint16)
        raise InputError(f'a PIL image of mode {mode} must hold integers 0-65535 — convert it to 8 bits '
                         "first (image.convert('RGB') after scaling to 0-255)")
    transparent = any(band in ('A', 'a') for band in image.getbands()) or 'transparency' in image.info
    return np.asarray(image.convert('RGBA' if transparent else 'RGB'))


def _say_once(kind: str, message: str) -> None:
    with _said_lock:
        if kind in _said:
            return
        _said.add(kind)
    LOG.warning(message)


def _grey(bgr: np.ndarray) -> bool:
    return bool(np.array_equal(bgr[..., 0], bgr[..., 1]) and np.array_equal(bgr[..., 1], bgr[..., 2]))


def resized_hw(height: int, width: int, short: int, max_size: int) -> tuple[tuple[int, int], float]:
    """Target `(new_h, new_w)` and `scale` of a keep-ratio resize: the short side to `short`
    unless the long side would pass `max_size`; sides rounded half up, at least 1."""
    scale = min(short / min(height, width), max_size / max(height, width))
    return (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))), scale


def normalize(image: np.ndarray) -> np.ndarray:
    """Map `[H, W, 3] uint8 RGB` to `[3, H, W] float32` as (pixel - mean) / std, ImageNet's. Its
    callers' pictures come through `decode_image` or `to_rgb`, which check the shape."""
    mean, std = np.asarray(IMAGENET_MEAN_RGB, np.float32), np.asarray(IMAGENET_STD_RGB, np.float32)
    return np.ascontiguousarray(((image.astype(np.float32) - mean) * (1.0 / std)).transpose(2, 0, 1))


def padded_size(size: int, divisor: int) -> int:
    """Smallest multiple of `divisor` that is >= `size`."""
    return -(-size // divisor) * divisor


def pad_to(chw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero-pad `[C, h, w]` at the bottom/right to `[C, height, width]`, same dtype."""
    out = np.zeros((len(chw), height, width), dtype=chw.dtype)
    out[:, :chw.shape[1], :chw.shape[2]] = chw
    return out


def pad_to_multiple(chw: np.ndarray, divisor: int = 32, min_side: int = 0) -> np.ndarray:
    """`pad_to` `[C, Hp, Wp]`, Hp and Wp the multiples of `divisor` from H and W up, at least `min_side`."""
    return pad_to(chw, *(max(padded_size(side, divisor), min_side) for side in chw.shape[1:]))


def preprocess(image: np.ndarray, short: int, max_size: int, divisor: int = 32,
               min_side: int = 0) -> tuple[np.ndarray, ImageMeta]:
    """Resize, normalise and pad `[H, W, 3] uint8 RGB` into `[3, Hp, Wp] float32` plus its `ImageMeta`
    (a `ReducedImage`: resized to its full picture's network size, `orig_hw` that picture's); a side
    under `min_side` (an exported model's least input, a multiple of `divisor`) padded up to it."""
    orig_hw = tuple(getattr(image, 'full_hw', image.shape[:2]))
    (height, width), _ = resized_hw(*orig_hw, short, max_size)
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    chw = pad_to_multiple(normalize(resized), divisor, min_side)
    return chw, ImageMeta(orig_hw=orig_hw, resized_hw=resized.shape[:2], padded_hw=chw.shape[1:])


def bucket_sizes(short: int, max_size: int, divisor: int = 32) -> list[tuple[int, int]]:
    """A few padded input sizes `(H, W)` that every picture fits after `preprocess` at
    `short` / `max_size`: the padded sizes of the `BUCKET_RATIOS` formats, landscape and
    portrait, and the largest each way (`(short, max_size)` padded), smallest area first."""
    largest = (padded_size(min(short, max_size), divisor), padded_size(max_size, divisor))
    sizes = {largest, largest[::-1]}
    for ratio in BUCKET_RATIOS:
        (height, width), _ = resized_hw(1000, int(1000 * ratio + 0.5), short, max_size)
        padded = (padded_size(height, divisor), padded_size(width, divisor))
        sizes.update({padded, padded[::-1]})
    return sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))


def bucket_for(height: int, width: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The first of `sizes` (smallest first, as `bucket_sizes` gives them) that holds an
    `height` x `width` input, else None."""
    return next(((h, w) for h, w in sizes if h >= height and w >= width), None)


def batch_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack `[3, H_i, W_i]` arrays into `[B, 3, Hmax, Wmax]`, zero-padding bottom/right."""
    if not images:
        raise ValueError('batch_images needs at least one image')
    height = max(chw.shape[1] for chw in images)
    width = max(chw.shape[2] for chw in images)
    batch = np.zeros((len(images), images[0].shape[0], height, width), dtype=images[0].dtype)
    for index, chw in enumerate(images):
        batch[index, :, : chw.shape[1], : chw.shape[2]] = chw
    return batch
