"""One published file from the first of its locations (an http(s) URL, or a file in a local mirror
folder) that gives it whole and verified. Not ``paddle.utils.download``, which waits forever on a
stalled server, starts over after a drop and checks only an md5: here httpx (a dependency of Paddle)
resumes with a Range request after a drop, a stall or a server error (``Retry``), reports
``progress(bytes so far, total or None)``, and the file must not be an HTML page, must start like a
checkpoint and its SHA-256 begin with the published digest. When no location gives it, one
``DownloadError`` line says what each answered. Nothing is unpickled or kept here.
"""
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import httpx

from solov2.core.cache import HINT
from solov2.core.errors import RunError
from solov2.data.files import file_sha256

LOG = logging.getLogger(__name__)
ProgressCallback = Callable[[int, Optional[int]], None]    # (bytes so far, total bytes or None)
CHUNK = 1 << 20
HEAD = 64                                                  # bytes read to tell what a file is


class DownloadError(RunError):
    """No location gave the file whole and verified, or it could not be written."""


@dataclass(frozen=True)
class Retry:
    """How hard one URL is tried: ``tries`` in all (each after the first resumes where the last
    stopped), ``timeout_s`` the longest wait to connect or for the next bytes, ``backoff_s``
    the wait before the second try, doubled before each next one."""
    tries: int = 4
    timeout_s: float = 30.0
    backoff_s: float = 1.0


@dataclass(frozen=True)
class Fetched:
    """A verified file: where it is (``scratch`` or the mirror's copy), its SHA-256 and the
    location that gave it."""
    path: Path
    sha256: str
    source: str


class _Unusable(Exception):
    """This location cannot give the file; the reason is the message."""


class _Transient(Exception):
    """A failure worth another try of the same URL (a server error)."""


def is_url(location: str) -> bool:
    return location.startswith(('http://', 'https://'))


def verify(path: Path, file: str, sha256: Optional[str]) -> str:
    """The SHA-256 of ``path`` once it starts like the checkpoint ``file`` (a pickle: ``.pdparams``,
    a legacy ``.pth``; or a zip: a ``.pth`` of torch >= 1.6) and its digest begins with ``sha256``
    (the whole digest or its published leading characters; None: nothing to compare); _Unusable
    otherwise."""
    with open(path, 'rb') as handle:
        head = handle.read(HEAD)
    if head.lstrip()[:1] == b'<':
        raise _Unusable('an HTML page, not a checkpoint (the server sent an error or sign-in page)')
    if not (head[:1] == b'\x80' or (file.endswith('.pth') and head[:4] == b'PK\x03\x04')):
        raise _Unusable(f'not a checkpoint (it starts with {head[:8]!r})' if head else 'an empty file')
    digest = file_sha256(path)
    if sha256 and not digest.startswith(sha256.lower()):
        raise _Unusable(f'its SHA-256 is {digest[:16]}..., not the published {sha256[:16]}...: a damaged or '
                        'different file, deleted')
    return digest


def fetch(file: str, locations: Sequence[str], scratch: Path, sha256: Optional[str] = None,
          progress: Optional[ProgressCallback] = None, retry: Retry = Retry(), hint: str = '') -> Fetched:
    """``file`` from the first of ``locations`` (URLs, downloaded into ``scratch``, or mirror paths)
    that gives it verified; DownloadError, one line ending in ``hint``, when none does."""
    reasons = []
    for location in locations:
        try:
            if is_url(location):
                _download(location, scratch, progress, retry)
                path = scratch
            else:
                path = Path(location)
                if not path.is_file():
                    raise _Unusable('not there')
            return Fetched(path, verify(path, file, sha256), location)
        except _Unusable as exc:
            LOG.info(f'{file} from {location}: {exc}')
            reasons.append(f'{location}: {exc}')
    raise DownloadError(f'cannot get {file}: ' + '; '.join(reasons) + (f' — {hint}' if hint else ''))


def _download(url: str, scratch: Path, progress: Optional[ProgressCallback], retry: Retry) -> None:
    """``url`` into ``scratch``, resumed with a Range request after each dropped connection,
    stall or server error, up to ``retry.tries`` tries; _Unusable when it never completes."""
    headers = {'Accept-Encoding': 'identity'}       # byte offsets of the file itself, for Range
    try:
        handle = open(scratch, 'wb')
    except OSError as exc:
        raise DownloadError(f'cannot write {scratch.parent}: {exc.strerror or exc} — {HINT}') from None
    with handle, httpx.Client(timeout=retry.timeout_s, follow_redirects=True, headers=headers) as client:
        for attempt in range(1, retry.tries + 1):
            try:
                total = _get(client, url, handle, progress)
                if total is None or handle.tell() >= total:
                    return
                reason = f'the connection ended at byte {handle.tell()} of {total}'
            except httpx.TimeoutException:
                reason = f'no answer for {retry.timeout_s:g} s'
            except (httpx.TransportError, _Transient) as exc:
                if unresolved(exc):
                    raise _Unusable(f'its host name does not resolve ({unresolved(exc)}): offline, or a '
                                    'misspelt host') from None
                reason = f'{type(exc).__name__}: {exc}' if isinstance(exc, httpx.TransportError) else str(exc)
            if attempt == retry.tries:
                raise _Unusable(f'{reason} ({retry.tries} tries)')
            wait = retry.backoff_s * 2 ** (attempt - 1)
            done = handle.tell()
            LOG.info(f'{url}: {reason}; trying again in {wait:g} s' + (f' from byte {done}' if done else ''))
            time.sleep(wait)


def unresolved(exc: BaseException) -> Optional[str]:
    """The resolver's message when ``exc`` (an httpx error) comes from a host name that does not
    resolve (a ``socket.gaierror`` in its chain), else None."""
    while exc is not None:
        if isinstance(exc, socket.gaierror):
            return exc.strerror or str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def _get(client: httpx.Client, url: str, handle, progress: Optional[ProgressCallback]) -> Optional[int]:
    """One request for the bytes of ``url`` after those already in ``handle``, appended to it;
    the file's total size, or None when the server does not say."""
    done = handle.tell()
    with client.stream('GET', url, headers={'Range': f'bytes={done}-'} if done else {}) as response:
        if response.status_code >= 500:
            raise _Transient(f'HTTP {response.status_code}')
        if response.status_code >= 400:
            raise _Unusable(f'HTTP {response.status_code}')
        if done and response.status_code != 206:        # the server ignored the Range: from the start
            handle.seek(0)
            handle.truncate()
            done = 0
        length = response.headers.get('content-length')
        total = done + int(length) if length is not None else None
        for chunk in response.iter_bytes(CHUNK):
            try:
                handle.write(chunk)
                handle.flush()      # a full disk shows here, not at close
            except OSError as exc:
                raise DownloadError(f'cannot write the download in {Path(handle.name).parent}: '
                                    f'{exc.strerror or exc} — free space there or {HINT}') from None
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return total
