"""Model versions the service can serve, kept in a folder the operator names (``versions``; docs/label_studio.md).

A version is a folder ``<versions>/<name>/`` (names ``v1``, ``v2``, ... in the order they were added) holding
``model.pdparams`` with its sidecar ``model.json`` (config, classes), ``version.json`` (``VersionRecord``: where
it came from, the data it was trained on, its measured held-out mask AP and its parent's on the same split, the
weights' SHA-256) and, when it was trained here, ``data/`` (the COCO annotations it was trained and evaluated on).
``serving.json`` names the version serving and those served before it (what a rollback goes back to); it is
written atomically each time the service switches. A version is added whole or not at all: its folder is made
under a temporary name and renamed into place.
"""
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from solov2.config.sidecar import sidecar_path
from solov2.core.errors import InputError

WEIGHTS, RECORD, SERVING, DATA = 'model.pdparams', 'version.json', 'serving.json', 'data'
NAME = re.compile(r'v([1-9][0-9]*)')


@dataclasses.dataclass(frozen=True)
class VersionRecord:
    """What ``version.json`` says of a version."""
    name: str
    created: float                      # Unix time it was added
    source: str                         # where it came from: a training job, or the weights the service started with
    sha256: str                         # of its model.pdparams
    parent: Optional[str] = None        # the version it was fine-tuned from
    data: Dict[str, Any] = dataclasses.field(default_factory=dict)   # what it was trained on (tasks, images, split)
    held_out_ap: Optional[float] = None          # its mask AP (percent, 0-100) on the held-out split
    parent_held_out_ap: Optional[float] = None   # the parent's on the same split, measured in the same job


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(2**20), b''):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomically(path: Path, content: Any) -> None:
    """Write ``content`` as JSON to ``path`` through a temporary file renamed over it (no reader sees half)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    with os.fdopen(handle, 'w', encoding='utf-8') as stream:
        json.dump(content, stream, indent=1)
    os.replace(temporary, path)


class VersionStore:
    """The versions folder ``root`` (module docstring), made when missing; InputError when it is a file."""

    def __init__(self, root: str):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f'the versions folder {root} is a file: name a folder')
        self.root.mkdir(parents=True, exist_ok=True)

    def names(self) -> List[str]:
        """The versions held, oldest first."""
        found = [path.name for path in self.root.iterdir() if NAME.fullmatch(path.name) and (path / RECORD).is_file()]
        return sorted(found, key=lambda name: int(name[1:]))

    def record(self, name: str) -> VersionRecord:
        """``version.json`` of the version ``name``; InputError when there is none."""
        path = self.root / name / RECORD
        if not NAME.fullmatch(name) or not path.is_file():
            raise InputError(f'no version {name!r} in {self.root} (versions: {", ".join(self.names()) or "none"})')
        return VersionRecord(**json.loads(path.read_text(encoding='utf-8')))

    def weights(self, name: str) -> str:
        """The path of the version ``name``'s checkpoint (InputError when there is no such version)."""
        self.record(name)
        return str(self.root / name / WEIGHTS)

    def add(self, weights: str, source: str, data_folder: Optional[str] = None, **facts: Any) -> VersionRecord:
        """A new version (the next name) of the checkpoint ``weights`` and its sidecar (copied), ``data_folder``
        copied as its ``data/``, ``facts`` the rest of its ``VersionRecord``; made whole under a temporary name,
        then renamed into place."""
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix='.adding-'))
        try:
            shutil.copyfile(weights, staging / WEIGHTS)
            shutil.copyfile(sidecar_path(weights), sidecar_path(str(staging / WEIGHTS)))
            if data_folder is not None:
                shutil.copytree(data_folder, staging / DATA)
            taken = self.names()
            name = f'v{int(taken[-1][1:]) + 1 if taken else 1}'
            record = VersionRecord(name, time.time(), source, file_sha256(staging / WEIGHTS), **facts)
            (staging / RECORD).write_text(json.dumps(dataclasses.asdict(record), indent=1), encoding='utf-8')
            os.rename(staging, self.root / name)        # one writer: the service's, one switch or job at a time
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def of_weights(self, weights: str, source: str) -> VersionRecord:
        """The version whose checkpoint is ``weights`` (by SHA-256), added (``add``) when none is."""
        digest = file_sha256(Path(weights))
        for name in self.names():
            record = self.record(name)
            if record.sha256 == digest:
                return record
        return self.add(weights, source)

    def serving(self) -> Dict[str, Any]:
        """``serving.json``: ``{"serving": name or None, "before": [names served before, oldest first]}``."""
        path = self.root / SERVING
        if not path.is_file():
            return {'serving': None, 'before': []}
        return json.loads(path.read_text(encoding='utf-8'))

    def served(self, name: str, rollback: bool = False) -> None:
        """Record that ``name`` now serves: the one serving before it goes on the list a rollback goes back
        through, or, for a ``rollback``, ``name`` (that list's last) leaves it."""
        state = self.serving()
        before = state['before'][:-1] if rollback else state['before'] + [state['serving']] * bool(state['serving'])
        write_json_atomically(self.root / SERVING, {'serving': name, 'before': before})

    def previous(self) -> str:
        """The version a rollback goes back to; InputError when none was served before."""
        before = self.serving()['before']
        if not before:
            raise InputError(f'no version served before this one in {self.root}: nothing to roll back to')
        return before[-1]
