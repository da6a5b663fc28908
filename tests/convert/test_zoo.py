"""Published checkpoints by name (convert/zoo.py, convert/download.py), without the internet.

A server on 127.0.0.1 plays the mirror that stands in for the publishers' hosts: it serves
checkpoints under the publishers' file names and can drop a connection, stall, or answer with
an HTML page. The files are written in each family's own format by the repository's
generators (convert/to_ppdet.py's ``to_ppdet``, tests/fixtures/mmdet_checkpoints.py, torch
for the original SOLO, the families' rename tables for the names). Most hold the shipped model
(config 9, 3.8 MB), so a row is used with config 9 and must convert back to exactly the shipped
model; one real-size model of a published config runs ``python demo.py`` with the table
as it is. Rows with a published checksum are given the served file's.
"""
import dataclasses
import errno
import functools
import hashlib
import http.server
import importlib
import json
import logging
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from solov2.api import Segmenter, TrainOptions, train
from solov2.config import CONFIGS, with_classes
from solov2.convert import download, zoo
from solov2.convert.common import model_shapes
from solov2.convert.download import DownloadError, Retry
from solov2.convert.families import CONVERTERS
from solov2.convert.published import FAMILIES, Published
from solov2.convert.to_ppdet import to_ppdet
from solov2.core.cache import published_path
from solov2.core.errors import InputError, RunError
from solov2.core.paths import CACHE_ENV, SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.model.checkpoint import load_paddle_params
from solov2.model.training.state import STATE_FILE
from solov2.tools import cache as cache_tool
from solov2.tools import demo, weights
from tests.fixtures.mmdet_checkpoints import write_mmdet_checkpoint
from tests.helpers import REPO_DIR, TINY_TRAINING, make_tiny_shapes

IMAGE = str(Path(SAMPLE_IMAGES) / 'shapes_000023.jpg')
FAST = Retry(tries=2, timeout_s=0.5, backoff_s=0.0)
TINY = Published('ppdet/tiny_shapes', 'ppdet', 'https://paddledet.bj.bcebos.com/models/tiny_shapes.pdparams', 9)
DEAD = 'http://127.0.0.1:9'                            # the discard port: nothing answers


# ---------------------------------------------------------------- the mirror server
class _Handler(http.server.BaseHTTPRequestHandler):
    """GET of a file in the server's folder, with byte ranges, and one fault per request
    taken from ``server.faults[name]`` (a list): 'drop' (half the body, then close),
    'stall' (no answer for 2 s), 'html' (an HTML page, Content-Type text/html)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.lstrip('/')
        self.server.requests.append((name, self.headers.get('Range')))
        faults = self.server.faults.get(name)
        fault = faults.pop(0) if faults else None
        if fault == 'stall':
            time.sleep(2)
            return
        if fault == 'html':
            return self._send(200, b'<html><body>Access denied</body></html>', 'text/html')
        path = self.server.root / name
        if not path.is_file():
            return self._send(404, b'not found', 'text/plain')
        size = path.stat().st_size
        start = int(self.headers['Range'][6:-1]) if self.headers.get('Range') else 0
        self.send_response(206 if start else 200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(size - start))
        if start:
            self.send_header('Content-Range', f'bytes {start}-{size - 1}/{size}')
        self.end_headers()
        with open(path, 'rb') as handle:
            handle.seek(start)
            if fault == 'drop':
                self.wfile.write(handle.read((size - start) // 2))
                return
            shutil.copyfileobj(handle, self.wfile)

    def _send(self, status, body, kind):
        self.send_response(status)
        self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """The mirror: ``.root`` (its folder), ``.url``, ``.faults`` and ``.requests``."""
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    httpd.root, httpd.faults, httpd.requests = tmp_path_factory.mktemp('mirror'), {}, []
    httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}/'
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def with_rows(monkeypatch, *rows) -> None:
    """The table with ``rows`` added or replacing those of the same name."""
    monkeypatch.setattr(zoo, 'ROWS', {**zoo.ROWS, **{row.name: row for row in rows}})


def one_line(exc) -> str:
    text = str(exc.value)
    assert '\n' not in text, text
    return text


def cache_files(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file()) if folder.is_dir() else []


# ---------------------------------------------------------------- generated checkpoints
SHIPPED_STATE = load_paddle_params(SHIPPED_WEIGHTS)          # config 9, 4 classes


def plain_state(cfg) -> dict:
    """This project's {name: array} for ``cfg``, quick to make: convs 0.01, neutral norms."""
    def value(key, shape):
        if key.endswith(('_variance', 'norm.weight')):
            return np.ones(shape, np.float32)
        return np.zeros(shape, np.float32) if key.endswith(('_mean', '.bias')) else np.full(shape, 0.01, np.float32)
    return {key: value(key, shape) for key, shape in model_shapes(cfg).items()}


def write_pickle(arrays: dict, path: Path) -> Path:
    with open(path, 'wb') as handle:
        pickle.dump(arrays, handle, protocol=4)
    return path


def write_family(family: str, state: dict, cfg, path: Path) -> Path:
    """Write this project's ``state`` of ``cfg`` as ``family`` publishes: PaddleDetection 2.x
    through convert/paddle2ppdet.py (duplicates included), 0.5 under its static names, the
    original SOLO as a torch ``{meta, state_dict}`` and mmdetection through
    tests/fixtures/mmdet_checkpoints.py (both .pth need PyTorch); the names come from the
    families' rename tables."""
    if family == 'ppdet':
        return write_pickle(to_ppdet(state, cfg), path)
    keys = frozenset(state)
    names = {CONVERTERS['solo' if family == 'mmdet' else family].rename(k, keys, cfg): v for k, v in state.items()}
    if family == 'ppdet-static':
        return write_pickle(names, path)
    torch = pytest.importorskip('torch', reason='writing a .pth needs PyTorch (requirements-test.txt)')
    tensors = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in names.items())
    if family == 'mmdet':
        return write_mmdet_checkpoint(tensors, path, version=2)
    torch.save({'meta': {'mmdet_version': '1.0.0', 'epoch': 36}, 'state_dict': tensors}, str(path))
    return path


def serve(row: Published, family: str, server, cfg=CONFIGS[9], state=lambda cfg: SHIPPED_STATE) -> Published:
    """``state(cfg)`` on the mirror under ``row``'s file name in ``family``'s format (once);
    ``row`` with the served file's checksum where the publisher gives one."""
    path = server.root / row.file
    if not path.is_file():
        write_family(family, state(cfg), cfg, path)
    return dataclasses.replace(row, sha256=sha256(path)[:len(row.sha256)]) if row.sha256 else row


@functools.lru_cache(maxsize=1)
def shipped_detections():
    return Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu')(IMAGE)


def assert_shipped(result) -> None:
    """``result`` is what the shipped model finds on IMAGE."""
    shipped = shipped_detections()
    assert len(shipped.scores) > 0
    np.testing.assert_allclose(result.scores, shipped.scores, rtol=1e-5)
    np.testing.assert_array_equal(result.labels, shipped.labels)


# each family's file holds the shipped model (config 9) under the family's names
SHIPPED_IN = {'solo': 'solo/solov2_light_448_r18_3x', 'mmdet': 'mmdet/solov2_light_r18_fpn_3x_coco',
              'ppdet': 'ppdet/solov2_r50_enhance_coco', 'ppdet-static': 'ppdet05/solov2_light_r50_vd_fpn_dcn_512_3x'}


@pytest.fixture(scope='module')
def family_cache(tmp_path_factory):
    """The $SOLOV2_CACHE of the tests by name (paddle.hub reuses the real-size download)."""
    return tmp_path_factory.mktemp('family_cache')


@pytest.mark.parametrize('family', list(SHIPPED_IN))
def test_demo_then_segmenter_by_name_for_every_family(family, server, family_cache, monkeypatch, tmp_path):
    """First use: ``demo.py --weights NAME`` downloads from the mirror, converts with the
    family's converter and caches; second use, with no source answering: ``Segmenter('NAME')``
    reads the cache and finds what the shipped model finds."""
    row = dataclasses.replace(serve(zoo.ROWS[SHIPPED_IN[family]], family, server), config=9)
    with_rows(monkeypatch, row)
    monkeypatch.setenv(CACHE_ENV, str(family_cache))
    monkeypatch.setenv(zoo.MIRROR_ENV, server.url)
    assert demo.main(['--weights', row.name, '--backend', 'dygraph', '--device', 'cpu', '--input', IMAGE,
                      '--output', str(tmp_path / 'out'), '--warmup', '0']) == 0
    assert (tmp_path / 'out' / 'shapes_000023.jpg').is_file()
    cached = published_path(row.name)
    meta = json.loads(cached.with_suffix('.json').read_text())
    assert meta['config'] == 9 and meta['source'] == row.url
    assert meta['published']['name'] == row.name and meta['published']['converter'] == FAMILIES[family]
    assert meta['published']['downloaded_sha256'] == sha256(server.root / row.file)

    requests = len(server.requests)
    monkeypatch.setenv(zoo.MIRROR_ENV, DEAD)
    began = time.perf_counter()
    assert zoo.resolve_weights(row.name) == str(cached)
    assert time.perf_counter() - began < 0.5
    assert_shipped(Segmenter(row.name, backend='dygraph', device='cpu')(IMAGE))
    assert len(server.requests) == requests


def test_demo_py_from_the_checkout_takes_a_real_size_published_name(server, family_cache, tmp_path):
    """``python demo.py --weights NAME`` as a user runs it, with the table as it is: a plain
    model of the published config (0, 187 MB) in PaddleDetection 2.x's format on the mirror."""
    row = zoo.ROWS['ppdet/solov2_r50_fpn_1x_coco']
    serve(row, 'ppdet', server, CONFIGS[0], plain_state)
    env = {**os.environ, CACHE_ENV: str(family_cache), zoo.MIRROR_ENV: server.url}
    done = subprocess.run([sys.executable, str(REPO_DIR / 'demo.py'), '--weights', row.name, '--backend', 'dygraph',
                           '--device', 'cpu', '--input', IMAGE, '--output', str(tmp_path / 'out'), '--warmup', '0',
                           '--opt', 'test_short=128', 'test_max=128'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'download [' in done.stderr and (tmp_path / 'out' / 'shapes_000023.jpg').is_file()
    assert f'{row.name}: cached as {published_path(row.name, family_cache)}' in done.stdout


# ---------------------------------------------------------------- one small row: mechanics and failures
@pytest.fixture(scope='module')
def tiny_file(server):
    """The shipped model in PaddleDetection 2.x names, on the mirror as TINY's file."""
    return write_family('ppdet', SHIPPED_STATE, CONFIGS[9], server.root / TINY.file)


@pytest.fixture
def tiny(server, tiny_file, monkeypatch):
    """TINY in the table with the served file's checksum; quick retries; no faults."""
    row = dataclasses.replace(TINY, sha256=sha256(tiny_file))
    with_rows(monkeypatch, row)
    monkeypatch.setattr(zoo, 'RETRY', FAST)
    server.faults.clear()
    return row


def assert_works(row, server, cache, mirror=None):
    """The row resolves to a converted copy of the shipped model, and the cache holds exactly that."""
    path = zoo.resolve_weights(row.name, cache_dir=cache, mirror=mirror or server.url)
    assert cache_files(cache) == ['weights/ppdet/tiny_shapes.json', 'weights/ppdet/tiny_shapes.pdparams']
    assert_shipped(Segmenter(path, backend='dygraph', device='cpu')(IMAGE))


def test_a_dropped_connection_resumes_and_a_stall_is_retried(tiny, server, monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, 'RETRY', dataclasses.replace(FAST, tries=3))
    server.faults[tiny.file] = ['drop', 'stall']
    began = len(server.requests)
    assert_works(tiny, server, tmp_path / 'cache')
    ranges = [r for name, r in server.requests[began:] if name == tiny.file]
    assert ranges[0] is None and ranges[1].startswith('bytes=') and ranges[1] == ranges[2] != 'bytes=0-'


def test_a_local_mirror_folder_from_the_environment(tiny, server, monkeypatch, tmp_path):
    folder = tmp_path / 'mirror'
    folder.mkdir()
    shutil.copy(server.root / tiny.file, folder)
    monkeypatch.setenv(zoo.MIRROR_ENV, str(folder))
    path = zoo.resolve_weights(tiny.name, cache_dir=tmp_path / 'cache')
    assert Path(path).is_file() and (folder / tiny.file).is_file()     # the mirror's copy stays


FAILURES = {
    'truncated file': ('half', 'not the published'),
    'checksum mismatch': ('other', 'not the published'),
    'HTML page under the name': ('html_body', 'an HTML page'),
    'HTML error answer': (['html', 'html'], 'an HTML page'),
    'stalled server': (['stall', 'stall'], 'no answer for 0.5 s (2 tries)'),
    'dropped connection': (['drop', 'drop'], '(2 tries)'),
    'missing file': ('missing', 'HTTP 404'),
}


@pytest.mark.parametrize('case', list(FAILURES))
def test_a_bad_download_is_refused_in_one_line_and_the_next_try_works(case, tiny, server, tiny_file, tmp_path):
    how, expected = FAILURES[case]
    good = tiny_file.read_bytes()
    if isinstance(how, list):
        server.faults[tiny.file] = list(how)
    elif how == 'missing':
        tiny_file.unlink()
    else:
        tiny_file.write_bytes({'half': good[:len(good) // 2], 'html_body': b'\n<!DOCTYPE html><html>Sign in</html>',
                               'other': good[:-4] + b'1234'}[how])
    cache = tmp_path / 'cache'
    try:
        with pytest.raises(DownloadError) as exc:
            zoo.resolve_weights(tiny.name, cache_dir=cache, mirror=server.url)
    finally:
        tiny_file.write_bytes(good)
    text = one_line(exc)
    assert expected in text and tiny.file in text and f'download {tiny.url} by hand' in text
    assert cache_files(cache) == []
    server.faults.clear()
    assert_works(tiny, server, cache)


def test_a_truncated_file_without_a_checksum_does_not_convert(tiny, server, tiny_file, monkeypatch, tmp_path):
    with_rows(monkeypatch, TINY)
    good = tiny_file.read_bytes()
    tiny_file.write_bytes(good[:len(good) // 2])
    try:
        with pytest.raises(RunError) as exc:
            zoo.resolve_weights(TINY.name, cache_dir=tmp_path, mirror=server.url)
    finally:
        tiny_file.write_bytes(good)
    assert 'does not convert to config 9' in one_line(exc) and cache_files(tmp_path) == []


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, path, mode, room=100_000):
        self.handle, self.room, self.name = open(path, mode), room, str(path)

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_full_disk_leaves_nothing_half_made(tiny, server, monkeypatch, tmp_path):
    cache = tmp_path / 'cache'
    with monkeypatch.context() as patch:                 # while downloading
        patch.setattr(download, 'open', _FullDisk, raising=False)
        with pytest.raises(DownloadError) as exc:
            zoo.resolve_weights(tiny.name, cache_dir=cache, mirror=server.url)
    assert 'No space left on device' in one_line(exc) and cache_files(cache) == []
    with monkeypatch.context() as patch:                 # while writing the converted checkpoint
        patch.setattr('solov2.model.checkpoint.paddle.save', lambda *a: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, 'No space left on device')))
        with pytest.raises(RunError) as exc:
            zoo.resolve_weights(tiny.name, cache_dir=cache, mirror=server.url)
    assert 'No space left on device' in one_line(exc) and cache_files(cache) == []
    assert_works(tiny, server, cache)


def test_a_command_says_what_failed_in_one_line(tiny, server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert weights.main(['get', tiny.name, '--mirror', DEAD]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'error: cannot get {tiny.file}: {DEAD}/{tiny.file}: ConnectError')
    assert demo.main(['--weights', 'mmdet/solov2_r50_fpn_1x_cocoo']) == 2
    assert capsys.readouterr().err.strip() == ('error: no published checkpoint is named mmdet/solov2_r50_fpn_1x_cocoo '
                                               '— did you mean mmdet/solov2_r50_fpn_1x_coco or '
                                               'mmdet/solov2_r50_fpn_3x_coco or ppdet/solov2_r50_fpn_1x_coco?')


def test_segmenter_takes_a_mirror(tiny, server, tmp_path):
    """``Segmenter(name, mirror=...)`` fetches from the mirror (here the only source: the
    row's own URL is unreachable), as docs/checkpoints.md says."""
    began = len(server.requests)
    assert_shipped(Segmenter(tiny.name, cache_dir=tmp_path, mirror=server.url, backend='dygraph', device='cpu')(IMAGE))
    assert [name for name, _ in server.requests[began:]] == [tiny.file]


COCO_NAME = 'ppdet/solov2_r50_fpn_3x_coco'          # config 0, never fetched here


def another_run(folder: str) -> str:
    """``folder`` (in the test's working folder) holding a run that saved a checkpoint."""
    (Path(folder) / 'last').mkdir(parents=True)
    (Path(folder) / 'last' / STATE_FILE).write_text('{"iteration": 10}')
    return folder


CHEAP_MISTAKES = {
    'backend': (lambda name: Segmenter(name, backend='tensorrt'), "unknown backend 'tensorrt'"),
    'precision': (lambda name: Segmenter(name, precision='int8'), "precision='int8' needs backend='openvino'"),
    'device': (lambda name: Segmenter(name, device='tpu'), "device='tpu' is not a device: use 'cpu', 'gpu' or 'gpu:N'"),
    'threads': (lambda name: Segmenter(name, threads=-2), 'threads= takes a whole number, 0'),
    'fast_decode': (lambda name: Segmenter(name, fast_decode='yes'), "fast_decode= takes True or False, not 'yes'"),
    'config': (lambda name: Segmenter(name, config=99), 'unknown config 99'),
    'override': (lambda name: Segmenter(name, overrides={'score_treshold': 0.2}), "bad override 'score_treshold="),
    'classes': (lambda name: Segmenter(name, overrides=['num_classes=3']), 'num_classes=3 but class_names holds 80'),
    'progress': (lambda name: Segmenter(name, progress='yes'), 'progress takes a function'),
    'train classes': (lambda name: train(TrainOptions(config=0, overrides=(f'pretrained={name}', 'num_classes=3'))),
                      'num_classes=3 but class_names holds 80 names'),
    'train weights': (lambda name: train(TrainOptions(weights=name, overrides=('score_threshold=2',))),
                      'bad value score_threshold=2'),
    'train counts': (lambda name: train(TrainOptions(weights=name, log_every=0)), 'log_every= takes a whole number'),
    'train budget': (lambda name: train(TrainOptions(weights=name, max_minutes=-1)), 'max_minutes= takes minutes'),
    'train amp': (lambda name: train(TrainOptions(weights=name, amp='fp32')), "amp='fp32' is not a precision"),
    'train data': (lambda name: train(TrainOptions(config=0, overrides=(f'pretrained={name}', 'dataset_dir=no/such'))),
                   'no/such/annotations/instances_train2017.json'),
    'train class list': (lambda name: train(TrainOptions(weights=name, classes='no/such/classes.txt')),
                         'cannot read class list no/such/classes.txt'),
    'published config': (lambda name: Segmenter(name, config=1), f'{COCO_NAME} is a config 0 model, not config 1'),
    'train config': (lambda name: train(TrainOptions(config=1, weights=name)), 'is a config 0 model, not config 1'),
    'train run folder': (lambda name: train(TrainOptions(weights=name, output=another_run('run'))),
                         'run holds another run (last)'),
    'train default run folder': (lambda name: another_run('output/SOLOv2Base') and train(TrainOptions(weights=name)),
                                 'output/SOLOv2Base holds another run (last)'),
}


@pytest.fixture
def no_fetch(monkeypatch, tmp_path):
    """The names fetched from now on (each fetch fails the call that made it), with an empty
    cache, in an empty working folder."""
    fetched = []
    monkeypatch.chdir(tmp_path)

    def fetch(file, *args, **kwargs):
        fetched.append(file)
        raise AssertionError(f'{file} was fetched')
    monkeypatch.setattr(zoo, 'fetch', fetch)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    return fetched


@pytest.mark.parametrize('case', list(CHEAP_MISTAKES))
def test_a_cheap_mistake_is_one_input_error_before_any_download(case, no_fetch):
    """``Segmenter`` and ``train`` check every argument they can without the weights before
    fetching a published name: a mistake costs no download (docs/checkpoints.md's fine-tuning
    line with num_classes=3 and no class names once ended in this error after one)."""
    call, message = CHEAP_MISTAKES[case]
    with pytest.raises(InputError, match=re.escape(message)) as raised:
        call(COCO_NAME)
    assert no_fetch == [] and '\n' not in str(raised.value)


@pytest.mark.parametrize('command, argv, message', [
    ('demo', ['--input', 'no/such/folder'], 'no images found at no/such/folder'),
    ('demo', ['--backend', 'onnx'], "backend='onnx' needs model_dir="),
    ('eval', ['--images', 'somewhere'], '--images needs --ann'),
    ('eval', ['--opt', 'num_classes=3'], 'num_classes=3 but class_names holds 80 names'),
    ('export_model', ['--output', 'out', '--opt', 'num_classes=3'], 'num_classes=3 but class_names holds 80 names'),
    ('train', ['--config=0', '--opt', f'pretrained={COCO_NAME}', 'dataset_dir=data', 'num_classes=3'],
     'num_classes=3 but class_names holds 80 names'),
    ('train', ['--config=1', '--weights', COCO_NAME], 'is a config 0 model, not config 1: pass config=0'),
    ('demo', ['--config', '1'], 'is a config 0 model, not config 1: pass config=0'),
])
def test_a_command_checks_its_arguments_before_any_download(command, argv, message, no_fetch, capsys):
    """demo.py, eval.py, tools/export_model.py and train.py: a cheap mistake with a published
    name exits 2 in one line, with nothing fetched."""
    module = importlib.import_module(f'solov2.tools.{command}')
    weights_flag = [] if command == 'train' else ['--weights', COCO_NAME]
    assert module.main(weights_flag + argv) == 2
    err = capsys.readouterr().err.strip()
    assert no_fetch == [] and len(err.splitlines()) == 1 and message in err, err


def test_train_py_refuses_another_runs_folder_before_any_download(no_fetch, capsys):
    """train.py --weights NAME over a folder holding another run exits 2 in one line, with
    nothing fetched and the other run's files kept."""
    command = importlib.import_module('solov2.tools.train')
    assert command.main(['--weights', COCO_NAME, '--output', another_run('run')]) == 2
    err = capsys.readouterr().err.strip()
    assert no_fetch == [] and len(err.splitlines()) == 1 and 'run holds another run (last)' in err, err
    assert (Path('run') / 'last' / STATE_FILE).is_file()


def test_a_host_name_that_does_not_resolve_fails_at_once(tiny, monkeypatch, tmp_path):
    """No retry, no back-off: the name will not resolve on the next try either. ``.invalid``
    names never resolve (RFC 6761); the resolver is answered here, so no query leaves the machine."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith('.invalid'):
            raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, 'getaddrinfo', getaddrinfo)
    began = time.perf_counter()
    with pytest.raises(DownloadError) as exc:
        download.fetch(tiny.file, [f'http://mirror.invalid/{tiny.file}'], tmp_path / 'scratch',
                       retry=Retry(tries=4, timeout_s=5, backoff_s=1.0))
    assert time.perf_counter() - began < 0.9
    assert 'its host name does not resolve (Name or service not known): offline, or a misspelt host' in one_line(exc)


def test_names_paths_and_rows_without_a_conversion(tmp_path):
    assert zoo.resolve_weights(SHIPPED_WEIGHTS) == SHIPPED_WEIGHTS
    assert zoo.resolve_weights('shipped/shapes_r18') == SHIPPED_WEIGHTS
    assert zoo.resolve_weights('weights/none.pdparams') == 'weights/none.pdparams'    # the backend names the fix
    assert zoo.resolve_weights(None) is None
    with pytest.raises(InputError, match='not converted by this project: use mmdet/solov2_x101_dcn_fpn_3x_coco'):
        zoo.resolve_weights('solo/solov2_x101_dcn_3x', cache_dir=tmp_path)
    with pytest.raises(InputError, match='did you mean torchvision/resnet50'):
        zoo.resolve_weights('torchvision/resnet5O')


def test_the_lists_and_the_cache_tool(tiny, server, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(zoo, 'PUBLISHED', (*zoo.PUBLISHED, tiny))
    assert weights.main(['get', tiny.name, '--mirror', server.url]) == 0
    assert weights.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith('ppdet/tiny_shapes ') and line.endswith('cached') for line in lines)
    assert lines[-1] == f'{len(zoo.PUBLISHED)} names, 1 cached in {tmp_path / "weights"}'
    folder = tmp_path / 'weights' / 'ppdet'
    (folder / '.tiny_shapes.pdparams.4194305.abcd.tmp').write_bytes(b'x' * 10)    # what a killed process left
    (folder / 'old.pdparams').write_bytes(b'x')                                # not a table entry
    assert cache_tool.main([]) == 0
    listed = capsys.readouterr().out
    assert 'weights/ppdet/tiny_shapes.pdparams  ppdet/tiny_shapes' in listed and 'current' in listed
    assert 'weights/ppdet/old.pdparams  -' in listed and 'unfinished' in listed and '3 entries' in listed
    assert cache_tool.main(['prune']) == 0
    assert 'deleted 2 of 3 entries' in capsys.readouterr().out
    assert cache_files(tmp_path / 'weights') == ['ppdet/tiny_shapes.json', 'ppdet/tiny_shapes.pdparams']


def test_paddle_hub_loads_a_ready_segmenter_from_the_checkout(server, family_cache, tmp_path):
    import paddle
    entries = paddle.hub.list(str(REPO_DIR), source='local')
    assert 'shipped_shapes_r18' in entries and 'mmdet_solov2_r50_fpn_1x_coco' in entries
    assert all(not name.startswith(('torchvision', 'paddleclas')) for name in entries)
    assert_shipped(paddle.hub.load(str(REPO_DIR), 'shipped_shapes_r18', source='local', backend='dygraph',
                                   device='cpu')(IMAGE))
    row = zoo.ROWS['ppdet/solov2_r50_fpn_1x_coco']        # cached already when the demo.py test ran
    serve(row, 'ppdet', server, CONFIGS[0], plain_state)
    seg = paddle.hub.load(str(REPO_DIR), 'ppdet_solov2_r50_fpn_1x_coco', source='local',
                          cache_dir=family_cache, mirror=server.url, backend='dygraph', device='cpu',
                          overrides={'test_short': 128, 'test_max': 128})
    assert seg.number == 0 and published_path(row.name, family_cache).is_file()


def test_fine_tune_from_a_coco_name_on_shapes(server, monkeypatch, caplog, tmp_path):
    """A published name of a model with COCO's 80 classes (here the shipped network with an
    80-class head) starts a run on the shapes set (4 classes) through ``pretrained``: every
    tensor but the class head's is loaded."""
    def coco_head(cfg):
        return {**SHIPPED_STATE, **{k: v for k, v in plain_state(cfg).items() if k.startswith('head.cate_pred.')}}
    coco = with_classes(CONFIGS[9], 80)
    row = dataclasses.replace(serve(zoo.ROWS['ppdet05/solov2_r50_fpn_3x'], 'ppdet-static', server, coco, coco_head),
                              config=9)
    with_rows(monkeypatch, row)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.setenv(zoo.MIRROR_ENV, server.url)
    with caplog.at_level(logging.INFO, logger='solov2'):
        summary = train(TrainOptions(config=9, output=str(tmp_path / 'run'), max_iters=2, overrides=(
            f'dataset_dir={make_tiny_shapes(tmp_path / "shapes")}', *TINY_TRAINING, f'pretrained={row.name}')))
    assert summary.iteration == 2 and summary.best_weights.is_file()
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith('start weights')]
    assert len(loaded) == 1, loaded
    assert loaded[0].startswith(f'start weights {published_path(row.name)}: loaded {len(SHIPPED_STATE) - 2} of ')
    assert 'left out the class head (80 classes there, 4 here: head.cate_pred.' in loaded[0]
