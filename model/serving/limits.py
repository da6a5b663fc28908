"""A request's limits and the HTTP errors they give: body size (413, before the body is
read when it declares its length), a body that stops coming (408), pixels (413, from the
header before decoding), content type (415), a picture that does not decode or whose header
gives no size (400)."""
import asyncio
from typing import Optional, Tuple

import numpy as np
from starlette.requests import ClientDisconnect

from solov2.core.errors import InputError, LimitError
from solov2.data.transforms import decode_image

PICTURE_TYPES = ('image/', 'application/octet-stream')
MULTIPART = 'multipart/form-data'


class HttpError(Exception):
    """A request the service refuses: ``status``, a one-line ``message`` for the JSON body
    ``{"error": message}``, and extra response ``headers`` (Retry-After for 503)."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def check_content_type(content_type: Optional[str]) -> str:
    """The body's kind, 'picture' or 'multipart'; 415 for another type (none counts as a picture)."""
    kind = (content_type or '').split(';')[0].strip().lower()
    if kind == MULTIPART:
        return 'multipart'
    if not kind or kind.startswith(PICTURE_TYPES):
        return 'picture'
    raise HttpError(415, f'Content-Type {kind} is not a picture: send the file as the body (image/jpeg, image/png, '
                         f'..., application/octet-stream) or as the field "file" of {MULTIPART}')


def check_declared_length(length: Optional[str], max_bytes: int) -> None:
    """413 when the Content-Length header says more than ``max_bytes``; 400 when it is not a number."""
    if length is None:
        return
    if not length.strip().isdigit():
        raise HttpError(400, f'Content-Length {length!r} is not a number of bytes')
    if int(length) > max_bytes:
        raise too_large(int(length), max_bytes)


def too_large(size: int, max_bytes: int) -> HttpError:
    """The 413 of a body of ``size`` bytes (or more) over ``max_bytes``."""
    return HttpError(413, f'the body is {size / 2**20:.1f} MB or more, over the limit of {max_bytes / 2**20:g} MB '
                          "(the service's --max-body-mb)")


async def read_body(stream, max_bytes: int, idle_s: float) -> bytes:
    """The body from an ASGI request's ``stream()``; 413 as soon as it passes ``max_bytes``, 408
    (closing the connection) when nothing of it comes for ``idle_s`` seconds, 400 when the client goes."""
    parts, size, chunks = [], 0, stream.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), idle_s)
        except StopAsyncIteration:
            return b''.join(parts)
        except asyncio.TimeoutError:
            raise HttpError(408, f"the body stopped coming: nothing of it for {idle_s:g} s (the service's "
                                 '--body-timeout-s); send it without pausing', {'Connection': 'close'}) from None
        except ClientDisconnect:
            raise HttpError(400, 'the client closed its connection before the whole body came') from None
        size += len(chunk)
        if size > max_bytes:
            raise too_large(size, max_bytes)
        parts.append(chunk)


def decode_picture(data: bytes, max_pixels: int, fit: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """[H, W, 3] uint8 RGB of an encoded picture, read as ``Segmenter`` reads bytes; 413 over
    ``max_pixels`` (0: no limit), read from its header before decoding; 400 naming the
    problem when it is empty, its header gives no size or it does not decode; ``fit`` as ``decode_image``'s."""
    if not data:
        raise HttpError(400, 'the body is empty: send the picture file as the body, or as the field "file" of '
                             f'{MULTIPART}')
    try:
        return decode_image(data, max_pixels, warn_colour=True, what='the picture', fit=fit)
    except LimitError as exc:
        raise HttpError(413, f"{exc.args[0]} (--max-pixels, else the config's max_image_pixels)") from None
    except InputError as exc:
        raise HttpError(400, str(exc)) from None
