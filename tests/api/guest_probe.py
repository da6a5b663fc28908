"""The host program of tests/api/test_guest.py, run in a fresh process: it takes its
settings before the first import of the toolkit, then exports the shipped model (with the
deployment extras also auto's export into a cache, which it quantizes), segments a picture on every
backend installed, reads two streams side by side, trains two iterations, and prints (JSON) the
settings that changed and what the work gave.

    python tests/api/guest_probe.py WORK_FOLDER SHAPES_DATASET
    python tests/api/guest_probe.py --imports MODULE...     (only imports them)
"""
import ctypes
import importlib
import importlib.util
import json
import locale
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import paddle
import threadpoolctl

MALLOPT_CALLS = []


class SpiedLibrary(ctypes.CDLL):
    """Every ``ctypes.CDLL``, with its ``mallopt`` looked up noted (the toolkit must not ask for it)."""

    def __getitem__(self, name):
        if name == 'mallopt':
            MALLOPT_CALLS.append(name)
        return super().__getitem__(name)


def paddle_math_threads():
    """Paddle's CPU math threads as its MKL counts them (None where this Paddle has no MKL)."""
    try:
        mkl = ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), 'libs', 'libmklml_intel.so'))
    except OSError:
        return None
    return int(mkl.MKL_Get_Max_Threads())


def signal_handlers() -> dict:
    handlers = {}
    for signum in signal.valid_signals():
        try:
            handlers[signum] = signal.getsignal(signum)
        except (OSError, ValueError):      # a signal Python cannot ask about
            continue
    return handlers


def logger_settings(logger) -> tuple:
    return list(logger.handlers), logger.level, logger.propagate, logger.disabled


def loggers(names) -> dict:
    """The settings of the loggers ``names`` and of the root logger."""
    found = {name: logging.getLogger(name) for name in names if name in logging.root.manager.loggerDict}
    return {'': logger_settings(logging.root), **{name: logger_settings(logger) for name, logger in found.items()}}


def matplotlib_backend():
    """The backend matplotlib was told to use (None when it has not chosen yet), without making it choose."""
    try:
        return matplotlib.get_backend(auto_select=False)
    except TypeError:                    # matplotlib < 3.10
        return dict.__getitem__(matplotlib.rcParams, 'backend')


def paddle_next_numbers() -> list:
    """The next numbers of Paddle's random generator on the current device, left undrawn."""
    state = paddle.get_rng_state()
    numbers = paddle.rand([4]).numpy().tolist()
    paddle.set_rng_state(state)
    return numbers


def numpy_random_state() -> tuple:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return name, keys.tobytes(), position, has_gauss, gauss


def process_state(blas_libraries, logger_names) -> dict:
    """What the toolkit must leave as it found it, by name (numpy's and OpenCV's BLAS: the
    libraries loaded before, by file)."""
    blas = {pool['filepath']: pool['num_threads'] for pool in threadpoolctl.threadpool_info()}
    return {'environment': dict(os.environ), 'paddle device': paddle.get_device(),
            'paddle math threads': paddle_math_threads(), 'paddle random numbers': paddle_next_numbers(),
            'numpy random state': numpy_random_state(), 'opencv threads': cv2.getNumThreads(),
            'blas threads': {path: blas.get(path) for path in blas_libraries},
            'matplotlib backend': matplotlib_backend(), 'pyplot imported': 'matplotlib.pyplot' in sys.modules,
            'signal handlers': signal_handlers(), 'loggers': loggers(logger_names),
            'logging disabled below': logging.root.manager.disable, 'warning filters': list(warnings.filters),
            'working directory': os.getcwd(), 'mallopt calls': list(MALLOPT_CALLS),
            'locale': locale.setlocale(locale.LC_ALL)}


def configured_toolkit_loggers() -> list:
    """The toolkit's loggers given handlers, a level or no propagation (a program's to choose)."""
    return [name for name, logger in logging.root.manager.loggerDict.items()
            if name.split('.')[0] == 'solov2' and isinstance(logger, logging.Logger)
            and (logger.handlers or logger.level or not logger.propagate)]


def work(folder: Path, shapes: str, threads: int) -> dict:
    """Everything the toolkit does for a program; what it gave. The ONNX export is auto's (into a
    cache of its own, verified and timed), which the ONNX, OpenVINO and INT8 runs then read; the
    checked export writes the Paddle Inference model."""
    from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter, TrainOptions, train
    from solov2.config import get_config
    from solov2.core.cache import entry_folder
    from solov2.model import cpu_math
    from solov2.model.inference.auto_backend import cache_key
    from solov2.model.inference.dygraph_backend import DygraphBackend
    from solov2.model.inference.export import export
    from solov2.model.inference.quantize import quantize_model
    from solov2.model.inference.spec import ModelSpec
    cpuinfo = folder / 'cpuinfo'      # an AMD CPU's: where MKL_DEBUG_CPU_TYPE would be set if the toolkit did
    cpuinfo.write_text('processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n')
    cpu_math.CPUINFO = str(cpuinfo)
    pictures = sorted(str(path) for path in Path(SAMPLE_IMAGES).glob('*.jpg'))
    deploy = all(importlib.util.find_spec(name) for name in ('paddle2onnx', 'onnxruntime', 'openvino', 'nncf'))
    auto = Segmenter(SHIPPED_WEIGHTS, device='cpu', threads=threads, cache_dir=str(folder / 'cache'))
    export(DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=threads), 9, folder / 'export', fmt='paddle',
           check=True)
    segmenters = {'dygraph': Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu', threads=threads),
                  'inference': Segmenter(backend='inference', model_dir=str(folder / 'export'), threads=threads)}
    if deploy:                        # the deployment extras (requirements-deploy.txt)
        exported = {'model_dir': str(entry_folder(cache_key(SHIPPED_WEIGHTS, 9, []), str(folder / 'cache'))),
                    'threads': threads}
        quantize_model(ModelSpec(backend='openvino', model_dir=exported['model_dir']),
                       [Path(path) for path in pictures], folder / 'int8')
        segmenters.update(onnx=Segmenter(backend='onnx', **exported),
                          openvino=Segmenter(backend='openvino', **exported),
                          int8=Segmenter(backend='openvino', model_dir=str(folder / 'int8'), precision='int8',
                                         threads=threads))
    segmenters['auto'] = auto
    found = {name: len(seg(pictures[0])) for name, seg in segmenters.items()}
    first, second = segmenters['dygraph'].stream(pictures[:2]), segmenters['inference'].stream(pictures)
    read = [next(first), next(second), next(first), next(second)]     # side by side; the first ends first
    read += list(first) + list(second)
    summary = train(TrainOptions(config=9, output=str(folder / 'run'), max_iters=2, eval_every=2, log_every=1,
                                 device='cpu', threads=threads,
                                 overrides=(f'dataset_dir={shapes}', 'num_workers=1', 'batch_size=2',
                                            'train_shorts=(128,)', 'train_max=128', 'test_short=128', 'test_max=128',
                                            'warmup_iters=2', 'epochs=2')))
    return {'instances': found, 'streamed': len(read), 'pictures': len(pictures), 'iterations': summary.iteration,
            'deploy': deploy,
            'backends': {name: seg.backend.name for name, seg in segmenters.items()}}


def main(args) -> None:
    ctypes.CDLL = SpiedLibrary
    cv2.setNumThreads(3)                  # the host's own choices, which no count the toolkit picks equals
    paddle.base.core.set_num_threads(2)   # (on 2 cores or more; Paddle Inference's runs leave 1 behind)
    host_threads = paddle_math_threads()
    blas_libraries = [pool['filepath'] for pool in threadpoolctl.threadpool_info()]
    logger_names = list(logging.root.manager.loggerDict)
    before = process_state(blas_libraries, logger_names)
    if args[0] == '--imports':
        done = {'imported': len([importlib.import_module(name) for name in args[1:]])}
    else:
        done = work(Path(args[0]), args[1], 1 if host_threads and host_threads > 1 else 2)
    after = process_state(blas_libraries, logger_names)
    changed = {name: [repr(before[name]), repr(after[name])] for name in before if before[name] != after[name]}
    print(json.dumps({'changed': changed, 'configured loggers': configured_toolkit_loggers(), **done}))


if __name__ == '__main__':
    main(sys.argv[1:])
