"""data.files: the one atomic-write mechanism, for one file, several files together and a
folder built aside: complete or absent, the old content intact on failure, nothing left behind."""
import os
from pathlib import Path

import pytest

from solov2.data.files import atomic_write, build_folder, previous_folder, write_together


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


def test_build_folder_refuses_an_existing_folder_and_cleans_up(tmp_path):
    out = tmp_path / 'model'
    build_folder(out, lambda tmp: (tmp / 'x').write_text('1'))
    assert (out / 'x').read_text() == '1'
    with pytest.raises(FileExistsError):
        build_folder(out, lambda tmp: (tmp / 'x').write_text('2'))
    assert (out / 'x').read_text() == '1' and not hidden(tmp_path)


def test_build_folder_replace_keeps_the_old_folder_on_failure(tmp_path):
    out = tmp_path / 'last'
    build_folder(out, lambda tmp: (tmp / 'x').write_text('1'), replace=True)

    def crash(tmp):
        (tmp / 'x').write_text('half')
        raise OSError('disk full')
    with pytest.raises(OSError, match='disk full'):
        build_folder(out, crash, replace=True)
    assert (out / 'x').read_text() == '1' and not hidden(tmp_path)
    build_folder(out, lambda tmp: (tmp / 'x').write_text('2'), replace=True)
    assert (out / 'x').read_text() == '2' and not previous_folder(out).exists()
    assert sorted(os.listdir(tmp_path)) == ['last']


def test_build_folder_keeps_the_folder_another_builder_renamed_there_meanwhile(tmp_path, monkeypatch):
    """Another builder renames its complete folder into place just after this one looked: that
    folder stays as it is and this build ends in an OSError, leaving no temporary and no
    ``.old`` copy. Before, a second look saw the folder, moved it to ``.old`` (left there) and
    put this build in its place."""
    out, theirs = tmp_path / 'entry', tmp_path / 'theirs'
    theirs.mkdir()
    (theirs / 'x').write_text('theirs')
    real_exists = Path.exists

    def looked_then_they_won(path, *args, **kwargs):
        if path == out and theirs.exists():
            theirs.rename(out)           # right after this builder's look
            return False
        return real_exists(path, *args, **kwargs)
    monkeypatch.setattr(Path, 'exists', looked_then_they_won)
    with pytest.raises(OSError):
        build_folder(out, lambda tmp: (tmp / 'x').write_text('mine'))
    monkeypatch.undo()
    assert (out / 'x').read_text() == 'theirs' and sorted(os.listdir(tmp_path)) == ['entry']
