"""core.cache's entries that a runtime builds while it opens a model (TensorRT's engines, ``built_once``): one
builder of an entry at a time, also after a failed build; stale by the model's bytes, not its time; made only
from a whole build (onnxruntime's engines each with its profile)."""
import json
import os
import threading
import time
from pathlib import Path

import pytest

from solov2.core import cache
from solov2.core.cache import EngineFiles, built_once, cache_entries, file_record, lock_file
from solov2.model.inference.onnxruntime_backend import ENGINE_FILES

pytestmark = pytest.mark.skipif(os.name != 'posix', reason='the entry lock is flock, POSIX only')
ENGINE = EngineFiles('*.engine')


def _fd_count(path: Path) -> int:
    """How many descriptors of this process have ``path`` open (Linux's /proc/self/fd)."""
    count = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            count += os.readlink(f'/proc/self/fd/{fd}') in (str(path), f'{path} (deleted)')
        except OSError:
            pass
    return count


def test_a_waiter_and_a_newcomer_never_build_one_entry_at_once_after_a_failed_build(tmp_path):
    """A builds and fails while B waits on the entry's lock; the failed build unlinks the lock file, B gets the
    file it opened, and C, who comes after, makes a new one: before the fix B and C were both inside (the probe:
    two builders inside one entry). Now B locks the file at the lock's path once it holds one, so C waits."""
    entry, inside, most = tmp_path / 'tensorrt-x', [], []
    count_lock, a_in, a_fail, b_in = threading.Lock(), threading.Event(), threading.Event(), threading.Event()

    def builder(name, until=None):
        try:
            with built_once(entry, {}, 'engines', ENGINE) as folder:
                with count_lock:
                    inside.append(name)
                    most.append(len(inside))
                if name == 'A':
                    a_in.set()
                    assert a_fail.wait(30)
                    with count_lock:
                        inside.remove(name)
                    raise RuntimeError('the build failed')
                if name == 'B':
                    b_in.set()
                if until is not None:
                    until.wait(3)              # C inside meanwhile is two builders at once
                (folder / f'{name}.engine').write_bytes(b'1')
                with count_lock:
                    inside.remove(name)
        except RuntimeError:
            pass
    c_in = threading.Event()
    a = threading.Thread(target=builder, args=('A',))
    a.start()
    assert a_in.wait(30)
    b = threading.Thread(target=builder, args=('B', c_in))
    b.start()
    deadline = time.monotonic() + 30
    while _fd_count(lock_file(entry)) < 2 and time.monotonic() < deadline:    # B opened the lock file and waits
        time.sleep(0.01)
    a_fail.set()
    a.join(30)
    assert b_in.wait(30)
    c = threading.Thread(target=lambda: (builder('C'), c_in.set()))
    c.start()
    b.join(30)
    c.join(30)
    assert max(most) == 1, f'{max(most)} builders inside one entry at once'
    assert [entry.state for entry in cache_entries(str(tmp_path))] == ['current']


def test_an_entry_is_stale_when_its_models_bytes_change_not_when_it_is_written_again(tmp_path):
    """A model exported again with the same bytes (a new time) keeps its engines current: pruning deleted
    engines in use when staleness was its size and time. Other bytes of the same size are stale."""
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'graph 1')
    entry = tmp_path / 'cache' / 'tensorrt-x'
    with built_once(entry, {'files': {str(model): file_record(model)}}, 'engines', ENGINE) as folder:
        (folder / 'a.engine').write_bytes(b'1')
    model.write_bytes(b'graph 1')
    os.utime(model, ns=(10**18, 10**18))
    assert [one.state for one in cache_entries(str(tmp_path / 'cache'))] == ['current']
    model.write_bytes(b'graph 2')
    assert [one.state for one in cache_entries(str(tmp_path / 'cache'))] == ['stale']
    model.unlink()
    assert [one.state for one in cache_entries(str(tmp_path / 'cache'))] == ['stale']


def test_an_entry_of_an_earlier_version_is_judged_by_its_stamp(tmp_path):
    """A manifest of before (a file's [size, time]) stays current while the file keeps them."""
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'graph 1')
    entry = tmp_path / 'cache' / 'tensorrt-x'
    entry.mkdir(parents=True)
    (entry / 'cache.json').write_text(json.dumps({'key': {'files': {str(model): cache.file_stamp(model)}},
                                                  'what': 'engines'}))
    assert [one.state for one in cache_entries(str(tmp_path / 'cache'))] == ['current']
    os.utime(model, ns=(10**18, 10**18))
    assert [one.state for one in cache_entries(str(tmp_path / 'cache'))] == ['stale']


@pytest.mark.parametrize('written, made', [(['a.engine'], False), (['a.profile'], False),
                                           (['a.engine', 'a.profile'], True),
                                           (['a.engine', 'a.profile', 'b.engine'], False)])
def test_an_onnxruntime_entry_is_made_only_with_each_engine_and_its_profile(tmp_path, written, made):
    """onnxruntime's TensorRT provider builds the engine again, into the entry's final folder, when its
    ``.profile`` is missing: an entry committed on the ``.engine`` alone would be written after the open."""
    entry = tmp_path / 'tensorrt-x'
    with built_once(entry, {}, 'engines', ENGINE_FILES) as folder:
        for name in written:
            (folder / name).write_bytes(b'1')
    assert entry.is_dir() is made and (sorted(p.name for p in entry.iterdir()) == sorted(written + ['cache.json'])
                                       if made else not lock_file(entry).exists())
    assert str(ENGINE_FILES) == '*.engine with its .profile'
