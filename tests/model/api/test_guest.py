"""The library is a guest in the host process: building Segmenters (dygraph, and ``auto``,
which exports for OpenVINO or onnxruntime when they are installed), segmenting a picture,
streaming a folder and training two iterations leave the process as they found them (its
environment, malloc, Paddle's device, CPU math threads and random generators, NumPy's global
random state, matplotlib's backend, every signal handler, the logging configuration,
OpenCV's threads). Each instance runs with its own threads. ``tune_process``, the one call
that changes the process, does what it says."""
import ctypes
import logging
import os
import signal
import sys
import threading
import warnings

import cv2
import matplotlib
import numpy as np
import paddle
import pytest

from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter, TrainOptions, train, tune_process
from solov2.model import cpu_math, runtime
from solov2.model.cpu_math import MKL_CPU_TYPE
from tests.helpers import TINY_TRAINING, alive, children, make_tiny_shapes

PICTURE = os.path.join(SAMPLE_IMAGES, 'shapes_000083.jpg')


def _signal_handlers() -> dict:
    handlers = {}
    for signum in signal.valid_signals():
        try:
            handlers[signum] = signal.getsignal(signum)
        except (OSError, ValueError):      # a signal Python cannot ask about
            continue
    return handlers


def _logger(name=None) -> tuple:
    logger = logging.getLogger(name)
    return list(logger.handlers), logger.level, logger.propagate, logger.disabled


def _paddle_next_numbers() -> list:
    """The next numbers of Paddle's random generator on the current device, left undrawn."""
    state = paddle.get_rng_state()
    numbers = paddle.rand([4]).numpy().tolist()
    paddle.set_rng_state(state)
    return numbers


def _numpy_random_state() -> tuple:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return name, keys.tobytes(), position, has_gauss, gauss


def _matplotlib_backend():
    """The backend matplotlib was told to use (None when it has not chosen yet), without
    making it choose."""
    try:
        return matplotlib.get_backend(auto_select=False)
    except TypeError:                    # matplotlib < 3.10
        return dict.__getitem__(matplotlib.rcParams, 'backend')


def _other_threads(threads: int) -> int:
    """A CPU thread count other than ``threads`` that MKL takes on a machine of two cores or more
    (it runs at most one a core)."""
    return 1 if threads > 1 else 2


def process_state() -> dict:
    """What the library must leave as it found it, by name."""
    return {'environment': dict(os.environ), 'paddle device': paddle.get_device(),
            'paddle math threads': runtime.math_threads(), 'paddle random numbers': _paddle_next_numbers(),
            'numpy random state': _numpy_random_state(), 'matplotlib backend': _matplotlib_backend(),
            'pyplot imported': 'matplotlib.pyplot' in sys.modules, 'signal handlers': _signal_handlers(),
            'root logger': _logger(), 'solov2 logger': _logger('solov2'), 'opencv threads': cv2.getNumThreads(),
            'warning filters': list(warnings.filters), 'working directory': os.getcwd()}


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
    monkeypatch.setattr(runtime, 'malloc_keeps_freed_memory', lambda: calls.append('malloc_keeps_freed_memory'))
    return calls


@pytest.fixture
def amd_cpu(tmp_path, monkeypatch):
    """``/proc/cpuinfo`` as an AMD CPU's and no MKL_DEBUG_CPU_TYPE set: where the library would
    set it if it did, on every CPU."""
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n')
    monkeypatch.setattr(cpu_math, 'CPUINFO', str(path))
    monkeypatch.delenv(MKL_CPU_TYPE, raising=False)


def test_segmenting_streaming_and_training_leave_the_process_as_they_found_it(tmp_path, malloc_spy, amd_cpu):
    shapes = make_tiny_shapes(tmp_path / 'shapes')
    before = process_state()
    threads = _other_threads(before['paddle math threads'])        # not the process's: a leak would show
    for backend in ('dygraph', 'auto'):
        seg = Segmenter(SHIPPED_WEIGHTS, backend=backend, device='cpu', threads=threads)
        assert len(seg(PICTURE)) > 0
        assert len(list(seg.stream(SAMPLE_IMAGES))) == len(os.listdir(SAMPLE_IMAGES))
    summary = train(TrainOptions(config=9, output=str(tmp_path / 'run'), overrides=(f'dataset_dir={shapes}',
                                                                                  *TINY_TRAINING),
                                 max_iters=2, eval_every=2, log_every=1, device='cpu', threads=threads))
    assert summary.iteration == 2 and (summary.run_folder / 'curves.png').is_file()
    after = process_state()
    assert not malloc_spy
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, {name: (before[name], after[name]) for name in changed}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='one core: MKL runs one thread whatever it is asked')
def test_each_segmenter_runs_with_its_own_threads_and_puts_the_process_s_back():
    process = runtime.math_threads()
    other = _other_threads(process)
    segs = [Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu', threads=count) for count in (other, process)]
    seen = []
    for seg in segs:
        net = seg.backend.net
        seg.backend.net = lambda images, net=net: seen.append(runtime.math_threads()) or net(images)
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


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='one core: MKL runs one thread whatever it is asked')
def test_tune_process_sets_paddle_s_threads_for_the_process(amd_cpu, malloc_spy):
    process = runtime.math_threads()
    other = _other_threads(process)
    try:
        tune_process(threads=other)
        assert runtime.math_threads() == other
    finally:
        paddle.base.core.set_num_threads(process)


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
