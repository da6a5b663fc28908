"""A request's limits and the HTTP errors they give (400, 408, 413, 415). Each message says what the
client can change, never a setting of the service's own nor how to lift a limit."""
import asyncio
import time
from typing import Optional

from starlette.requests import ClientDisconnect

from solov2.core.errors import InputError, LimitError

PICTURE_TYPES = ('image/', 'application/octet-stream')
MULTIPART = 'multipart/form-data'
UPLOAD_GRACE_S = 2.0            # a body may come slower than the least rate for its first seconds


class HttpError(Exception):
    """A request the service refuses: ``status``, a one-line ``message`` for the JSON body
    ``{"error": message}``, extra response ``headers`` (Retry-After for 503) and, for a refusal of
    work the service had no room for, the ``reason`` ``/metrics`` counts it under."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None, reason: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.headers, self.reason = status, message, headers or {}, reason


def check_content_type(content_type: Optional[str]) -> str:
    """The body's kind from its Content-Type, 'picture' or 'multipart'; 415 for another type (none counts as
    a picture)."""
    kind = (content_type or '').split(';')[0].strip().lower()
    if kind == MULTIPART:
        return 'multipart'
    if not kind or kind.startswith(PICTURE_TYPES):
        return 'picture'
    raise HttpError(415, f'Content-Type {kind} is not a picture: send the file as the body (image/jpeg, image/png, '
                         f'..., application/octet-stream) or as the field "file" of {MULTIPART}')


def check_declared_length(length: Optional[str], max_bytes: int) -> None:
    """413 when the Content-Length header says more than ``max_bytes``; 400 when it is not a number (none: the
    body's size is counted as it comes, ``read_body``)."""
    if length is None:
        return
    if not length.strip().isdigit():
        raise HttpError(400, f'Content-Length {length!r} is not a number of bytes')
    if int(length) > max_bytes:
        raise too_large(int(length), max_bytes)


def too_large(size: int, max_bytes: int) -> HttpError:
    """The 413 of a body of ``size`` bytes (or more) over ``max_bytes``."""
    return HttpError(413, f'the body is {size / 2**20:.1f} MB or more, over the limit of {max_bytes / 2**20:g} MB: '
                          'send a smaller file')


async def read_body(stream, max_bytes: int, idle_s: float, min_rate: float = 0.0) -> bytes:
    """The body from an ASGI request's ``stream()``; 413 past ``max_bytes``; 408 when nothing comes for
    ``idle_s`` or under ``min_rate`` bytes a second after ``UPLOAD_GRACE_S`` (0: any rate); 400 when the client goes."""
    parts, size, chunks, began = [], 0, stream.__aiter__(), time.monotonic()
    while True:
        due = UPLOAD_GRACE_S + size / min_rate - (time.monotonic() - began) if min_rate else idle_s
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), max(0.0, min(idle_s, due)))
        except StopAsyncIteration:
            return b''.join(parts)
        except asyncio.TimeoutError:
            if due < idle_s:
                raise HttpError(408, f'the body came too slowly: {size / 1024:.0f} KB in '
                                     f'{time.monotonic() - began:.1f} s, under the {min_rate / 1024:g} KB/s this '
                                     'service takes; send it faster') from None
            raise HttpError(408, f'the body stopped coming: nothing of it for {idle_s:g} s; send it without '
                                 'pausing') from None
        except ClientDisconnect:
            raise HttpError(400, 'the client closed its connection before the whole body came') from None
        size += len(chunk)
        if size > max_bytes:
            raise too_large(size, max_bytes)
        parts.append(chunk)


def client_error(exc: InputError) -> HttpError:
    """The library's refusal as a client sees it: its first piece, what is wrong (the rest may
    name the library's own parameters, no business of a client); a LimitError 413."""
    if isinstance(exc, LimitError):
        return HttpError(413, f'{exc.args[0]}: send a smaller picture')
    return HttpError(400, str(exc.args[0]))
