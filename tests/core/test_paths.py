"""core.paths.build_folder: a folder built aside, complete or absent, the old one intact on failure,
nothing left behind."""
import os
from pathlib import Path

import pytest

from solov2.core.paths import build_folder, previous_folder


def hidden(folder):
    """What the temporaries of build_folder would be: hidden entries."""
    return [p.name for p in Path(folder).iterdir() if p.name.startswith('.')]


def build(folder, text, replace=False):
    """``folder`` built holding a file ``x`` with ``text``."""
    with build_folder(folder, replace=replace) as tmp:
        (tmp / 'x').write_text(text)


def test_build_folder_refuses_an_existing_folder_and_cleans_up(tmp_path):
    out = tmp_path / 'model'
    build(out, '1')
    assert (out / 'x').read_text() == '1'
    with pytest.raises(FileExistsError):
        build(out, '2')
    assert (out / 'x').read_text() == '1' and not hidden(tmp_path)


def test_build_folder_replace_keeps_the_old_folder_on_failure(tmp_path):
    out = tmp_path / 'last'
    build(out, '1', replace=True)
    with pytest.raises(OSError, match='disk full'), build_folder(out, replace=True) as tmp:
        (tmp / 'x').write_text('half')
        raise OSError('disk full')
    assert (out / 'x').read_text() == '1' and not hidden(tmp_path)
    build(out, '2', replace=True)
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
        build(out, 'mine')
    monkeypatch.undo()
    assert (out / 'x').read_text() == 'theirs' and sorted(os.listdir(tmp_path)) == ['entry']
