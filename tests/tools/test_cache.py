"""tools/cache.py over core.cache, the one listing of the cache: the exports of 'auto', OpenVINO's
compiled models and the converted published checkpoints, each current, stale or unfinished;
prune deletes all but the current ones, clear everything; neither an entry being built; bake exports
and records auto's engine, or pins one for every CPU type and thread count."""
import json
import os
import subprocess
import sys

import pytest

from solov2.config import get_config
from solov2.core.cache import MANIFEST, cache_entries, compiled_cache, entry_folder
from solov2.core.paths import CACHE_ENV
from solov2.data.files import temporary_beside
from solov2.model.inference import auto_backend
from solov2.model.inference.auto_backend import cache_key, installed_engines
from solov2.model.inference.spec import ModelSpec
from solov2.model.runtime import cpu_threads
from solov2.tools import cache
from tests.helpers import REPO_DIR

WEIGHTS = str(REPO_DIR / 'weights' / 'shapes_r18.pdparams')
DEAD = 4194305       # above Linux's largest pid: the process that left these temporaries has ended


def _entry(root, key, payload=b'x' * 2048):
    folder = entry_folder(key, root)
    folder.mkdir(parents=True)
    (folder / 'model.onnx').write_bytes(payload)
    choice = {'engine': 'onnx', 'timings_ms': {'openvino': 30.0, 'onnx': 20.0}, 'timing_input': [1, 3, 320, 448]}
    (folder / MANIFEST).write_text(json.dumps({'key': key, 'files': {}, 'choices': {'avx2, 2 threads, f32': choice}}))
    return folder


def _checkpoint(root, place, name):
    """A converted checkpoint at ``weights/<place>.pdparams`` whose sidecar records ``name``."""
    path = root / 'weights' / f'{place}.pdparams'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'x' * 100)
    if name:
        path.with_suffix('.json').write_text(json.dumps({'config': 9, 'published': {'name': name}}))
    return path


def test_list_prune_and_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    current = cache_key(WEIGHTS, 9, [])
    kept = _entry(tmp_path, current)
    old_code = _entry(tmp_path, dict(current, source_sha256='0' * 64))
    old_library = _entry(tmp_path, dict(current, versions=dict(current['versions'], onnxruntime='0.0.1')))
    (tmp_path / 'broken').mkdir()
    (tmp_path / f'.config9-auto-1.{DEAD}.abcd.tmp').mkdir()               # what a stopped export leaves
    compiled = compiled_cache(tmp_path)                                # the folder OpenVINO compiles into
    converted = _checkpoint(tmp_path, 'ppdet/tiny', 'ppdet/tiny')
    _checkpoint(tmp_path, 'ppdet/old', 'ppdet/other')                  # not at its name's place
    (tmp_path / 'weights' / 'ppdet' / f'.tiny.pdparams.{DEAD}.abcd.tmp').write_bytes(b'x')     # a stopped download
    building = temporary_beside(tmp_path / 'config9-auto-2')          # this process's export, under way
    building.mkdir()
    assert cache.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f'{kept.name}  config 9 onnx  0.0 MB' in '\n'.join(lines) and lines[-1].startswith('10 entries')
    states = {line.split()[0]: line.split()[-1] for line in lines[:-1]}
    assert states == {kept.name: 'current', old_code.name: 'stale', old_library.name: 'stale', 'broken': 'stale',
                      f'.config9-auto-1.{DEAD}.abcd.tmp': 'unfinished', 'openvino-compiled': 'current',
                      'weights/ppdet/tiny.pdparams': 'current', 'weights/ppdet/old.pdparams': 'stale',
                      f'weights/ppdet/.tiny.pdparams.{DEAD}.abcd.tmp': 'unfinished', building.name: 'building'}
    assert 'weights/ppdet/tiny.pdparams  ppdet/tiny  0.0 MB' in '\n'.join(lines)
    assert cache.main(['prune']) == 0
    assert 'deleted 6 of 10 entries' in capsys.readouterr().out     # never one being built
    assert sorted(e.path for e in cache_entries()) == sorted([kept, tmp_path / 'openvino-compiled', converted,
                                                              building])
    assert compiled == str(tmp_path / 'openvino-compiled') and converted.with_suffix('.json').is_file()
    assert cache.main(['clear']) == 0
    assert 'deleted 3 of 4 entries' in capsys.readouterr().out
    assert [e.path for e in cache_entries()] == [building] and not list((tmp_path / 'weights' / 'ppdet').iterdir())


def test_no_cache_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'none'))
    assert cache.main(['list']) == 0
    assert capsys.readouterr().out.startswith('0 entries, 0.0 MB')



def test_leftovers_are_old_temporaries_of_gone_processes_and_this_process_own(tmp_path):
    """What an export removes before it builds (``leftovers``) and an interrupted command on its
    way out (``mine``): never a young temporary (a process of another container that shares the
    cache may be building it) nor one of another running process."""
    import os

    from solov2.core.cache import STALE_BUILD_S, leftovers
    old, young = (tmp_path / f'.config9-auto-{n}.{DEAD}.abcd.tmp' for n in (1, 2))
    mine, running = (temporary_beside(tmp_path / f'config9-auto-{n}') for n in (3, 4))
    running = running.with_name(running.name.replace(f'.{os.getpid()}.', f'.{os.getppid()}.'))
    for folder in (old, young, mine, running):
        folder.mkdir()
    os.utime(old, (os.path.getatime(old), os.path.getmtime(old) - STALE_BUILD_S - 60))
    assert [entry.path for entry in leftovers(tmp_path)] == [old]
    assert sorted(entry.path for entry in leftovers(tmp_path, mine=True)) == sorted([old, mine])


@pytest.mark.deploy
@pytest.mark.skipif(len(installed_engines()) < 2, reason='deploy test: bake times openvino and onnxruntime '
                                                        '(requirements-deploy.txt)')
def test_bake_exports_and_records_then_pin_holds_on_any_cpu_type_and_thread_count(tmp_path, monkeypatch, capsys):
    """bake --workers 2: the export and this CPU's choice in the cache, one line, under the key of the threads each
    worker runs (a worker opens it without timing again); --pin: the engine later runs open on
    another thread count (another key) without timing; a pin that is no candidate ends in one line."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    threads = cpu_threads(0, 2)         # what each of tools/serve.py --workers 2's processes runs
    assert cache.main(['bake', '--workers', '2']) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f'baked into {tmp_path}: ')
    [folder] = [path for path in tmp_path.iterdir() if path.name.startswith('config9-auto')]
    worker = ModelSpec(WEIGHTS, backend='auto', threads=threads)
    assert list(json.loads((folder / MANIFEST).read_text())['choices']) == [auto_backend.machine_key(worker)[1]]
    with monkeypatch.context() as timing:
        timing.setattr(auto_backend, 'time_engines', lambda *args: pytest.fail('a baked choice is not timed again'))
        kind, backend = auto_backend.cached_backend(worker, 9, get_config(9), lambda line: None)
    assert not backend.pinned
    assert cache.main(['bake', '--threads', '1', '--pin', 'onnx']) == 0
    said = capsys.readouterr().out.splitlines()[-1]
    assert said == f'baked {folder}: onnx pinned for every CPU type and thread count'
    assert json.loads((folder / MANIFEST).read_text())['pinned'] == 'onnx'
    monkeypatch.setattr(auto_backend, 'time_engines', lambda *args: pytest.fail('a pinned choice is not timed'))
    logged = []
    kind, backend = auto_backend.cached_backend(ModelSpec(WEIGHTS, backend='auto', threads=2), 9, get_config(9),
                                                logged.append)
    assert kind == 'onnx' and logged == [f'auto: using onnx f32 (pinned) from cache {folder}'] and backend.pinned
    monkeypatch.setattr(auto_backend, 'native_bf16', lambda: False)
    assert cache.main(['bake', '--threads', '1', '--pin', 'openvino-bf16']) == 2
    assert capsys.readouterr().err == "error: cannot pin openvino bf16: auto's candidates here are openvino, onnx\n"


@pytest.mark.deploy
@pytest.mark.skipif('openvino' not in installed_engines(), reason='deploy test: needs OpenVINO')
def test_two_bakes_at_once_on_an_empty_cache_export_once_and_both_end_pinned(tmp_path):
    """What the systemd unit does when both its instances start together: two ``bake --pin openvino`` at once on
    an empty cache. One exports; the other waits on the entry's lock, then reads it (both exported before, and
    one died of a KeyError where the other had pinned meanwhile). Both compile the polygon tracer's loops into
    numba's cache, where ``NUMBA_CACHE_DIR`` says (as the Dockerfile sets it)."""
    command = [sys.executable, str(REPO_DIR / 'tools' / 'cache.py'), 'bake', '--threads', '1', '--pin', 'openvino']
    environment = {**os.environ, CACHE_ENV: str(tmp_path / 'cache'), 'NUMBA_CACHE_DIR': str(tmp_path / 'numba')}
    bakes = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    said = [bake.communicate(timeout=600) for bake in bakes]
    assert [bake.returncode for bake in bakes] == [0, 0], said
    [folder] = [path for path in (tmp_path / 'cache').iterdir() if path.name.startswith('config9-auto')]
    assert json.loads((folder / MANIFEST).read_text())['pinned'] == 'openvino'
    assert sum('auto: exporting' in out for out, _ in said) == 1, said
    assert {path.name.split('.')[1].split('-')[0] for path in (tmp_path / 'numba').rglob('*.nbi')} >= {
        'walked_corners', 'sorted_crossings'}
    assert all(out.splitlines()[-1] == f'baked {folder}: openvino pinned for every CPU type and thread count'
               for out, _ in said), said
