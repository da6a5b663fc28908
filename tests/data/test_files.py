"""data.files: the one atomic-write mechanism, for one file and several files together: complete
or absent, the old content intact on failure, nothing left behind (a folder's: tests/core/test_paths.py)."""
import os
from pathlib import Path

import pytest

from solov2.data.files import atomic_write, write_together


def hidden(folder):
    """What the temporaries of data.files would be: hidden entries."""
    return [p.name for p in Path(folder).iterdir() if p.name.startswith('.')]


def test_atomic_write_replaces_with_a_0644_file(tmp_path):
    path = tmp_path / 'a.txt'
    atomic_write(path, b'one')
    atomic_write(path, b'two')
    assert path.read_bytes() == b'two' and path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ['a.txt']


def test_write_together_replaces_nothing_when_one_write_fails(tmp_path):
    first, second = tmp_path / 'a.bin', tmp_path / 'a.json'
    first.write_text('old a')
    second.write_text('old json')

    def fail(path):
        Path(path).write_text('half')
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_together([(first, lambda p: Path(p).write_text('new a')), (second, fail)])
    assert first.read_text() == 'old a' and second.read_text() == 'old json'
    assert not hidden(tmp_path)
    write_together([(first, lambda p: Path(p).write_text('new a')), (second, lambda p: Path(p).write_text('new'))])
    assert first.read_text() == 'new a' and second.read_text() == 'new' and not hidden(tmp_path)
