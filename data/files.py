"""Safe file output: writes that are complete or absent (a hidden temporary beside the
target, then a rename, so Ctrl-C or a full disk never leaves a half-written file; a folder's:
``core.paths.build_folder``) and checks that an output path is usable and never one of the
user's inputs; the SHA-256 of a file (the export cache's key, the published checkpoints' check; its home is
``core.paths``, where the cache judges TensorRT's engines by it too); the suffixes a picture file is known by
(``IMAGE_SUFFIXES``)."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from solov2.core.errors import InputError
from solov2.core.paths import file_sha256, temporary_beside  # noqa: F401  (file_sha256: this module's name for it)

# the picture files the commands look for in a folder (what OpenCV decodes), lower case
IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
FILE_MODE = 0o644


def write_together(writes: Sequence[tuple[str | PathLike[str], Callable[[str], None]]]) -> None:
    """Call each ``write(temporary path)``, then rename every temporary (mode 0644) onto its
    target: no target is replaced before all are written, and on any failure (Ctrl-C too)
    the temporaries are removed and the old files are intact."""
    temps = []
    try:
        for path, write in writes:
            temps.append(temporary_beside(path))
            write(str(temps[-1]))
            os.chmod(temps[-1], FILE_MODE)
        for tmp, (path, _) in zip(temps, writes):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)   # gone already once renamed


def atomic_write(path: str | PathLike[str], data: bytes | memoryview) -> None:
    """Write ``data`` (bytes or any buffer) to ``path`` through a temporary in the same folder (``write_together``);
    OSError (with the path) when the folder cannot be written."""
    def write(tmp: str) -> None:
        with open(tmp, 'xb') as handle:
            handle.write(data)
    write_together([(path, write)])


def write_image(path: str | PathLike[str], bgr: np.ndarray, params: Sequence[int] = ()) -> None:
    """Encode ``[H, W, 3] uint8 BGR`` by the suffix of ``path`` (OpenCV's ``params``, e.g. a JPEG
    quality) and write it atomically; OSError when encoding or writing fails (``cv2.imwrite`` only
    returns False)."""
    ok, encoded = cv2.imencode(Path(path).suffix or '.jpg', bgr, list(params))
    if not ok:
        raise OSError(f'cannot encode a picture for {path}')
    atomic_write(path, encoded.data)


def looked_up(path: str | PathLike[str]) -> str:
    """How a message shows a path that is not there as a file: as given, for a relative one the folder
    it was looked up from (the current folder: ``x.pdparams (from /home/me)``), and a folder says so."""
    shown = str(path) if Path(path).is_absolute() else f'{path} (from {os.getcwd()})'
    return shown + (' (a folder, not a file)' if Path(path).is_dir() else '')


def same_file(a: str | PathLike[str], b: str | PathLike[str]) -> bool:
    """Whether two paths name the same file (resolved; also through hard links)."""
    a, b = Path(a), Path(b)
    return os.path.samefile(a, b) if a.exists() and b.exists() else a.resolve() == b.resolve()


def check_output_file(path: str | PathLike[str], inputs: Iterable[str | PathLike[str]] = (),
                      option: str = 'output', role: str = 'an input file',
                      example: str = 'results.json') -> Path:
    """``path`` as a file to write: InputError when it is a folder (the message suggests
    ``path/example`` unless ``example`` is ''), one of ``inputs`` (the message calls it ``role``),
    or its folder cannot be made or written (nothing is created). ``option`` names the path in
    the messages (a label, a flag)."""
    path = Path(path)
    if path.is_dir():
        hint = f', e.g. {path / example}' if example else ''
        raise InputError(f'{option} {path} is a folder — give a file name{hint}')
    for source in inputs:
        if same_file(path, source):
            raise InputError(f'{option} {path} is {role} and would be overwritten — pick another output path')
    check_folder(path.parent, option)
    return path


def check_folder(folder: str | PathLike[str], option: str = 'output', new: bool = False) -> Path:
    """InputError when ``folder`` is a file, exists already though ``new`` is asked for, or it
    (or the nearest existing folder it would be made in) cannot be written; nothing is created.
    ``option`` names the folder as in ``check_output_file``."""
    folder = Path(folder)
    if new and folder.exists():
        raise InputError(f'{option} {folder} already exists — pick a new folder')
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    inside = '' if existing == folder else f': {existing}'
    if not existing.is_dir():
        raise InputError(f'{option} {folder}{inside} is a file, not a folder — pick a folder path')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f'{option} {folder}{inside or ": the folder"} is not writable — pick another path')
    return folder


def make_folder(folder: str | PathLike[str], option: str = 'output') -> Path:
    """``check_folder``, then create ``folder`` (and parents); InputError when that fails."""
    try:
        check_folder(folder, option).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f'cannot create {option} {folder}: {err.strerror} — pick another path') from err
    return Path(folder)
