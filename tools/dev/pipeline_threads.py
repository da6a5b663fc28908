"""The threads a ``Segmenter`` and the service start, by name (numbers folded), on the shipped model:

    python tools/dev/pipeline_threads.py

A ``Segmenter`` answers one picture, a list of four (two a run), a folder stream and eight threads
at once; then the service (in this process, uvicorn on 127.0.0.1) answers a picture. Prints the
names of the threads started during each step (the threads alive after it, in brackets).
"""
import collections
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2 import ModelSpec, Segmenter  # noqa: E402
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS  # noqa: E402

STARTED: list = []           # names of the threads started, in order (``threading.Thread.start`` wrapped)
_start = threading.Thread.start


def _recorded_start(thread: threading.Thread) -> None:
    STARTED.append(thread.name)
    _start(thread)


def names(before: set) -> str:
    """The threads started since the last call and those alive not in ``before``, by name (numbers folded to N),
    the host's own (``host_N``, ``uvicorn``) left out."""
    def fold(found):
        counted = collections.Counter(re.sub(r'(?<=[_-])\d+', 'N', name) for name in found
                                      if not name.startswith(('host', 'uvicorn')))
        return ', '.join(f'{name} x{count}' for name, count in sorted(counted.items()))
    started = fold(STARTED)
    STARTED.clear()
    return f'{started or "none"} [alive: {fold(t.name for t in threading.enumerate() if t not in before) or "none"}]'


def service_threads(picture: str, seconds: float = 300) -> str:
    """``names`` of the threads the service (uvicorn in this process, on a socket bound here so no other process
    can take its port between choosing and binding it) starts to be ready and answer ``picture``; RuntimeError
    when it is not ready within ``seconds`` or its server ends first."""
    import httpx
    import uvicorn

    from solov2.serving.app import ServeSettings, create_app
    before, sock = set(threading.enumerate()), socket.socket()
    sock.bind(('127.0.0.1', 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ServeSettings(ModelSpec(str(SHIPPED_WEIGHTS), backend='dygraph',
                                                                                threads=1))), log_level='warning'))
    thread = threading.Thread(target=server.run, kwargs={'sockets': [sock]}, name='uvicorn (this script)', daemon=True)
    thread.start()
    STARTED.clear()
    deadline = time.monotonic() + seconds
    try:
        with httpx.Client(base_url=f'http://127.0.0.1:{sock.getsockname()[1]}', timeout=60) as client:
            while not ready(client):
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f'the service was not ready within {seconds:.0f} s')
                time.sleep(0.1)
            client.post('/v1/segment', content=Path(picture).read_bytes(), headers={'Content-Type': 'image/jpeg'})
            return names(before)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def ready(client) -> bool:
    """Whether ``/readyz`` answers 200 (False while nothing listens yet)."""
    import httpx
    try:
        return client.get('/readyz').status_code == 200
    except httpx.TransportError:
        return False


def main() -> int:
    threading.Thread.start = _recorded_start     # type: ignore[method-assign]
    before = set(threading.enumerate())
    pictures = sorted(str(path) for path in Path(SAMPLE_IMAGES).glob('*.jpg'))[:4]
    segmenter = Segmenter(ModelSpec(str(SHIPPED_WEIGHTS), backend='dygraph', threads=1))
    segmenter(pictures[0])
    print('Segmenter, one picture:', names(before))
    segmenter(pictures, batch_size=2)
    list(segmenter.stream(pictures))
    host = ThreadPoolExecutor(8, 'host')
    list(host.map(segmenter, pictures * 2))
    print('Segmenter, a list (2 a run), a stream, 8 host threads:', names(before))
    pools = [t for t in threading.enumerate() if t.name.startswith('solov2-') and t not in before]   # its own
    segmenter.close()
    for thread in pools:
        thread.join(10)             # the pools stop once idle (close does not wait)
    print('Segmenter closed:', names(before))
    print('service, ready and one answer:', service_threads(pictures[0]))
    host.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
