"""Safe file output: atomic writes (a temp file in the target folder, then ``os.replace``,
so Ctrl-C or a full disk never leaves a half-written file) and checks that an output path
is usable and never one of the user's inputs."""

from __future__ import annotations

import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np


def atomic_write(path: str | PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder; OSError (with the
    path) when the folder cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=Path(path).suffix)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def write_image(path: str | PathLike[str], bgr: np.ndarray) -> None:
    """Encode ``[H, W, 3] uint8 BGR`` by the suffix of ``path`` and write it atomically;
    OSError when encoding or writing fails (``cv2.imwrite`` only returns False)."""
    ok, encoded = cv2.imencode(Path(path).suffix or '.jpg', bgr)
    if not ok:
        raise OSError(f'cannot encode a picture for {path}')
    atomic_write(path, encoded.tobytes())


def same_file(a: str | PathLike[str], b: str | PathLike[str]) -> bool:
    """Whether two paths name the same file (resolved; also through hard links)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output_file(path: str | PathLike[str], inputs: Iterable[str | PathLike[str]] = (),
                      option: str = 'output') -> Path:
    """``path`` as a file to write: ValueError when it is a folder, one of ``inputs``, or its
    folder cannot be made or written (nothing is created)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f'{option} {path} is a folder — give a file name, e.g. {path / "results.json"}')
    for source in inputs:
        if same_file(path, source):
            raise ValueError(f'{option} {path} is an input file and would be overwritten — '
                             'pick another output path')
    check_folder(path.parent, option)
    return path


def check_folder(folder: str | PathLike[str], option: str = 'output') -> Path:
    """ValueError when ``folder`` is a file, or it (or the nearest existing folder it would
    be made in) cannot be written; nothing is created."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = '' if existing == folder else f' (in {folder})'
        raise ValueError(f'{option} {existing} is a file, not a folder{where} — pick a folder path')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f'{option} folder {existing} is not writable — pick another path')
    return folder


def make_folder(folder: str | PathLike[str], option: str = 'output') -> Path:
    """``check_folder``, then create ``folder`` (and parents); ValueError when that fails."""
    try:
        check_folder(folder, option).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f'cannot create {option} folder {folder}: {err.strerror} — pick another path') from err
    return Path(folder)
