"""tools/cache.py: list the export cache, prune the entries no run can use again, clear it."""
import json

from solov2.model.inference.auto_backend import CACHE_ENV, MANIFEST, cache_key, entry_name
from solov2.tools import cache
from tests.helpers import REPO_DIR

WEIGHTS = str(REPO_DIR / 'weights' / 'shapes_r18.pdparams')


def _entry(root, key, payload=b'x' * 2048):
    folder = root / entry_name(key)
    folder.mkdir(parents=True)
    (folder / 'model.onnx').write_bytes(payload)
    choice = {'engine': 'onnx', 'timings_ms': {'openvino': 30.0, 'onnx': 20.0}, 'timing_input': [1, 3, 320, 448]}
    (folder / MANIFEST).write_text(json.dumps({'key': key, 'files': {}, **choice}))
    return folder


def test_list_prune_and_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    current = cache_key(WEIGHTS, 9, [])
    kept = _entry(tmp_path, current)
    old_code = _entry(tmp_path, dict(current, source_sha256='0' * 64))
    old_library = _entry(tmp_path, dict(current, versions=dict(current['versions'], onnxruntime='0.0.1')))
    (tmp_path / 'broken').mkdir()
    assert cache.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f'{kept.name}  config 9 onnx  0.0 MB' in '\n'.join(lines) and lines[-1].startswith('4 entries')
    states = {line.split()[0]: line.split()[-1] for line in lines[:-1]}
    assert states == {kept.name: 'current', old_code.name: 'stale', old_library.name: 'stale', 'broken': 'stale'}
    assert cache.main(['prune']) == 0
    assert 'deleted 3 of 4 entries' in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]
    assert cache.main(['clear']) == 0
    assert 'deleted 1 of 1 entries' in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_no_cache_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'none'))
    assert cache.main(['list']) == 0
    assert capsys.readouterr().out.startswith('0 entries, 0.0 MB')
