"""The library is a guest in the host process. A fresh process, looked at before its first
import of the toolkit (tests/api/guest_probe.py), is left as it was by exporting and
quantizing, segmenting on every backend, two streams read side by side and training: its
environment, malloc, Paddle's device, CPU math threads and random generators, NumPy's global
random state, OpenCV's and numpy's BLAS threads, matplotlib's backend, every signal handler,
the logging configuration and the warning filters. Each instance runs with its own threads.
``tune_process``, the one call that changes the process, does what it says."""
import ctypes
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest
import threadpoolctl

from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter, TrainOptions, train, tune_process
from solov2.core.paddle_zlib import loaded_objects, zlib_taken_by_paddle
from solov2.model import cpu_math, runtime, tuning
from solov2.model.cpu_math import MKL_CPU_TYPE
from tests.helpers import REPO_DIR, TINY_TRAINING, alive, children, make_tiny_shapes
from tests.test_layout import library_files

PICTURE = os.path.join(SAMPLE_IMAGES, 'shapes_000083.jpg')


def _other_threads(threads: int) -> int:
    """A CPU thread count other than ``threads`` that MKL takes on a machine of two cores or more
    (it runs at most one a core)."""
    return 1 if threads > 1 else 2


def _probe(tmp_path, *args, timeout: int = 900) -> dict:
    """What tests/api/guest_probe.py, run with ``args`` in a fresh process, reports."""
    env = {name: value for name, value in os.environ.items() if name != MKL_CPU_TYPE}
    env.update(PYTHONPATH=str(REPO_DIR), SOLOV2_CACHE=str(tmp_path / 'cache'))
    done = subprocess.run([sys.executable, str(Path(__file__).with_name('guest_probe.py')), *args],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def library_modules() -> list:
    """Every module of the library (solov2/, config/, data/, model/, convert/ but its commands) by its import name;
    the HTTP service's (``solov2.serving``) where its extra, ``serve``, is installed (the main CI venv; not the
    Paddle 2.6 one)."""
    names = [path[:-len('.py')].removesuffix('/__init__').replace('/', '.') for path in library_files()]
    modules = {'solov2'} | {name if name.split('.')[0] == 'solov2' else f'solov2.{name}' for name in names}
    if importlib.util.find_spec('fastapi') is None:
        modules = {name for name in modules if not name.startswith('solov2.serving')}
    return sorted(modules)


def test_importing_any_library_module_changes_nothing(tmp_path):
    report = _probe(tmp_path, '--imports', *library_modules(), timeout=300)
    assert report['imported'] > 50 and report['changed'] == {} and report['configured loggers'] == []


def test_a_fresh_process_is_left_as_it_was_by_every_backend_streams_export_and_training(tmp_path):
    """tests/api/guest_probe.py takes a fresh process's settings before its first import
    of the toolkit, then exports (checked) and quantizes the shipped model, segments on every
    backend (auto exporting into a cache of its own, whose ONNX export the ONNX, OpenVINO and INT8
    runs read; without the deployment extras: dygraph, Paddle Inference, and auto falling back to
    dygraph), reads two streams side by side (the first opened ends first) and trains with a loader
    worker; no setting may have changed."""
    shapes = make_tiny_shapes(tmp_path / 'shapes')
    work = tmp_path / 'work'
    work.mkdir()
    report = _probe(tmp_path, str(work), str(shapes))
    assert report['changed'] == {} and report['configured loggers'] == []
    exported = {'onnx': 'onnx', 'openvino': 'openvino', 'int8': 'openvino'} if report['deploy'] else {}
    auto = report['backends']['auto']
    assert report['backends'] == {'dygraph': 'dygraph', 'inference': 'inference', **exported, 'auto': auto}
    assert auto in (('openvino', 'onnx') if exported else ('dygraph',))    # with the extras the export ran
    assert min(report['instances'].values()) > 0
    assert report['streamed'] == report['pictures'] + 2 and report['iterations'] == 2


@pytest.fixture
def malloc_spy(monkeypatch):
    """The calls of glibc's mallopt (through any ``ctypes.CDLL``) and of the one function that
    makes them, while the test runs."""
    calls = []

    class SpiedLibrary(ctypes.CDLL):
        def __getitem__(self, name):
            if name == 'mallopt':
                calls.append('mallopt')
            return super().__getitem__(name)

    monkeypatch.setattr(ctypes, 'CDLL', SpiedLibrary)
    monkeypatch.setattr(tuning, 'malloc_keeps_freed_memory', lambda: calls.append('malloc_keeps_freed_memory'))
    return calls


@pytest.fixture
def amd_cpu(tmp_path, monkeypatch):
    """``/proc/cpuinfo`` as an AMD CPU's and no MKL_DEBUG_CPU_TYPE set: where the library would
    set it if it did, on every CPU."""
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n')
    monkeypatch.setattr(cpu_math, 'CPUINFO', str(path))
    monkeypatch.delenv(MKL_CPU_TYPE, raising=False)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='one core: MKL runs one thread whatever it is asked')
def test_each_segmenter_runs_with_its_own_threads_and_puts_the_process_s_back():
    process = runtime.math_threads()
    other = _other_threads(process)
    segs = [Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu', threads=count) for count in (other, process)]
    seen = []
    for seg in segs:
        net = seg.backend.net
        seg.backend.net = lambda images, regions=None, net=net: seen.append(runtime.math_threads()) or net(images)
    for seg in segs + segs[:1]:
        seg(PICTURE)
        assert runtime.math_threads() == process
    assert seen == [other, process, other]


def test_tune_process_asks_for_mkl_s_avx2_path_on_amd_and_keeps_freed_memory_when_asked(amd_cpu, malloc_spy):
    threads = runtime.math_threads()
    tune_process(threads=threads)
    assert os.environ[MKL_CPU_TYPE] == '5' and not malloc_spy
    tune_process(threads=threads, keep_freed_memory=True)
    assert malloc_spy == ['malloc_keeps_freed_memory'] and runtime.math_threads() == threads


def _openblas_threads() -> list:
    return [pool['num_threads'] for pool in threadpoolctl.threadpool_info() if pool['internal_api'] == 'openblas']


def test_tune_process_sets_opencv_s_and_openblas_s_threads_when_asked(amd_cpu, malloc_spy):
    threads, openblas = cv2.getNumThreads(), threadpoolctl.ThreadpoolController().select(internal_api='openblas')
    limits = openblas.limit(limits=2)          # the host's, other than 1 (where there are 2 cores)
    try:
        cv2.setNumThreads(3)
        tune_process(threads=runtime.math_threads())
        assert cv2.getNumThreads() == 3
        tune_process(threads=runtime.math_threads(), helper_threads=1)
        assert cv2.getNumThreads() == 1 and set(_openblas_threads()) == {1}
    finally:
        cv2.setNumThreads(threads)
        limits.restore_original_limits()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='one core: MKL runs one thread whatever it is asked')
def test_tune_process_sets_paddle_s_threads_for_the_process(amd_cpu, malloc_spy):
    process = runtime.math_threads()
    other = _other_threads(process)
    try:
        tune_process(threads=other)
        assert runtime.math_threads() == other
    finally:
        runtime.set_math_threads(process)


def test_training_runs_in_another_thread_with_loader_workers(tmp_path):
    """A host's worker thread trains with a loader worker process (Paddle's DataLoader sets a
    signal handler, which Python allows in the main thread only); afterwards the process's
    SIGCHLD handler is as it was and no loader process is left (Paddle's iterator, left at the
    last iteration's break, kept its workers until the thread that started them ended)."""
    shapes = make_tiny_shapes(tmp_path / 'shapes', val=1)
    tiny = [setting for setting in TINY_TRAINING if not setting.startswith('num_workers=')]
    overrides = (f'dataset_dir={shapes}', *tiny, 'num_workers=1')
    before, processes = signal.getsignal(signal.SIGCHLD), set(children(os.getpid()))

    results = []

    def train_then_look() -> None:       # looked at from the training thread: its end kills them
        summary = train(TrainOptions(config=9, output=str(tmp_path / 'run'), overrides=overrides, max_iters=2,
                                     eval_every=2, device='cpu'))
        results.append((summary, [pid for pid in children(os.getpid()) if pid not in processes and alive(pid)]))
    thread = threading.Thread(target=train_then_look, daemon=True)     # a hang fails the test, not the run
    thread.start()
    thread.join(300)
    assert results, 'the training thread failed or hung (its error, if any, is printed above)'
    summary, left = results[0]
    assert summary.iteration == 2 and not left
    assert signal.getsignal(signal.SIGCHLD) is before


FIRST_PADDLE_IMPORTS = {
    'the first API call': "from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter\n"
                          "Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu')"
                          "(SAMPLE_IMAGES + '/shapes_000083.jpg')",
    'the training loader': 'import solov2.data.loader',
    'the way back to PaddleDetection': 'import solov2.convert.to_ppdet',
    'the version check': 'from solov2.config.install import paddle_major\npaddle_major()',
}


@pytest.mark.parametrize('first', sorted(FIRST_PADDLE_IMPORTS))
def test_the_import_of_paddle_leaves_the_hosts_root_logger_as_it_was(first):
    """Paddle 3's import sets the root logger to INFO with a handler of its own; whichever toolkit
    module imports it first, the host's root logger keeps its level and handlers (its own
    WARNING default included), so the host's and its libraries' INFO lines do not start to print;
    and no third-party warning prints (Paddle 3's "No ccache found")."""
    host = ('import logging, sys\nroot = logging.getLogger()\nbefore = (root.level, list(root.handlers))\n'
            f'{FIRST_PADDLE_IMPORTS[first]}\n'
            "assert 'paddle' in sys.modules\n"
            "print(before == (root.level, list(root.handlers)), logging.getLevelName(root.level), root.handlers)\n")
    done = subprocess.run([sys.executable, '-c', host], capture_output=True, text=True, cwd=str(REPO_DIR),
                          env={**os.environ, 'PYTHONPATH': str(REPO_DIR)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[:2] == ['True', 'WARNING'], done.stdout
    assert not [line for line in done.stderr.splitlines() if 'Warning' in line], done.stderr


HOST_ORDERS = {   # a host's imports, then a decompression (what pycocotools' own import does)
    'paddle first': 'import paddle\nimport solov2',
    'solov2 first': 'import solov2\nimport paddle',
    'zlib first': 'import zlib\nimport paddle\nimport solov2',
}


@pytest.mark.parametrize('order', sorted(HOST_ORDERS))
def test_a_host_that_imported_paddle_2_first_gets_one_line_not_a_crash(order):
    """Paddle 2.x's core library exports an older zlib; imported before anything loaded zlib, it
    takes the system's zlib in with it and the next decompression crashes the process
    (core/paddle_zlib.py). ``import solov2`` after such an import stops with one ImportError line
    saying the fix; every other order (and Paddle 3.x, any order) imports and decompresses."""
    host = f"{HOST_ORDERS[order]}\nimport zlib\nprint(len(zlib.decompress(zlib.compress(b'x' * 99))))\n"
    done = subprocess.run([sys.executable, '-c', host], capture_output=True, text=True, cwd=str(REPO_DIR),
                          env={**os.environ, 'PYTHONPATH': str(REPO_DIR)}, timeout=300)
    import paddle
    if order == 'paddle first' and paddle.__version__.startswith('2.'):
        assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
            f'ImportError: Paddle {paddle.__version__} was imported before solov2'), done.stderr[-2000:]
        assert done.stderr.strip().endswith('import solov2 (or zlib) before paddle')
    else:
        assert done.returncode == 0 and done.stdout.split() == ['99'], done.stderr[-2000:]


def test_zlib_is_taken_by_paddle_only_when_it_was_loaded_after_paddle_s_core_library():
    order = ['', '/lib/libc.so.6', '/site/paddle/base/libpaddle.so', '/lib/x86_64-linux-gnu/libz.so.1']
    assert zlib_taken_by_paddle(order)
    assert not zlib_taken_by_paddle([order[0], order[3], order[1], order[2]])
    assert not zlib_taken_by_paddle(order[:3]) and not zlib_taken_by_paddle([order[0], order[3]])
    names = [path.rsplit('/', 1)[-1] for path in loaded_objects()]
    assert 'libpaddle.so' in names and any(name.startswith('libz.so') for name in names)   # this process's
