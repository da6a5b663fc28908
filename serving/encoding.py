"""An answer's bytes, made in a finishing worker so that the event loop only moves them: its JSON made in pieces,
gzipped from ``GZIP_BYTES`` when the client takes it.

Why in pieces: ``json.dumps`` runs in C and holds the interpreter's lock (the GIL) for the whole of one call, so
no other thread of the process runs Python meanwhile: a 12 MP picture's 100 polygon instances (1.2 MB of JSON)
held it 35 ms at once (AMD EPYC Zen 4), in which the event loop answered nothing (``/healthz`` included) and the
dygraph network's thread, which takes the lock back after each layer, stood still. Made item by item the lock is
given up between items, as the interpreter does every ``sys.getswitchinterval()`` (5 ms) in Python code.
"""
import gzip
import json
from typing import Any, Callable, Dict, List, Tuple

GZIP_BYTES, GZIP_LEVEL = 4096, 1      # answers from this size are gzipped when the client accepts it
PIECE_DEPTH = 2       # objects and lists this deep are made item by item: an answer's instances, regions, shapes


def answer_bytes(content: Any, gzipped: bool) -> Tuple[bytes, Dict[str, str]]:
    """``content``'s JSON (``json_bytes``) and its headers: gzipped (level ``GZIP_LEVEL``, which zlib does without
    the GIL) from ``GZIP_BYTES`` when ``gzipped`` says the client takes it. ValueError for a NaN or an infinity."""
    body = json_bytes(content)
    if not gzipped or len(body) < GZIP_BYTES:
        return body, {}
    return gzip.compress(body, GZIP_LEVEL), {'Content-Encoding': 'gzip', 'Vary': 'Accept-Encoding'}


def json_bytes(value: Any, depth: int = PIECE_DEPTH) -> bytes:
    """The bytes of ``json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(',', ':'))`` in UTF-8,
    the same bytes, made one item at a time in objects (with string keys) and lists down to ``depth`` levels, each
    item below that in one call. ValueError for a NaN or an infinity, TypeError for what JSON cannot hold."""
    pieces: List[str] = []
    _encode(value, depth, pieces.append)
    return ''.join(pieces).encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(',', ':'))


def _encode(value: Any, depth: int, put: Callable[[str], None]) -> None:
    if depth and isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
        for index, (key, item) in enumerate(value.items()):
            put(('{' if index == 0 else ',') + _dumps(key) + ':')
            _encode(item, depth - 1, put)
        put('}')
    elif depth and isinstance(value, (list, tuple)) and value:
        for index, item in enumerate(value):
            put('[' if index == 0 else ',')
            _encode(item, depth - 1, put)
        put(']')
    else:
        put(_dumps(value))
