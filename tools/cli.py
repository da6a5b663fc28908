"""The command layer's shared glue: what every command does the same way (docs/architecture.md).

- Start-up: imported before Paddle and OpenCV, it silences the notes a user cannot act on (a
  GLOG_minloglevel or OPENCV_LOG_LEVEL set by the user wins).
- Words: a library message is shown as it is; a command names its own flags where it parses them.
- Exit codes, in one place (``command``): ``InputError`` exit 2, ``RunError`` and ``OSError`` 1,
  each in one ``error:`` line; another exception is a bug naming ``--debug``; Ctrl-C 130, SIGTERM 143.
- Arguments: the parser and the argument groups the commands share (``model_spec``).
"""
import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

os.environ.setdefault('GLOG_minloglevel', '2')
os.environ.setdefault('OPENCV_LOG_LEVEL', 'ERROR')     # OpenCV's [ WARN ] lines before our own error
warnings.filterwarnings('ignore', message='No ccache found', category=UserWarning)
warnings.filterwarnings('ignore', message='When training, we now always track global mean and variance',
                        category=UserWarning)

from solov2.config import describe_configs  # noqa: E402  (after the start-up settings above)
from solov2.config.device import device_name, on_gpu  # noqa: E402
from solov2.config.install import onnxruntime_install_problem, paddle_install_problem  # noqa: E402
from solov2.core.durations import clock  # noqa: E402
from solov2.core.errors import InputError, RunError  # noqa: E402

LIBRARY_LOGGER = 'solov2'   # every library module logs under it (loggers named after modules)
DEBUG_FLAG = '--debug'
DEBUG_ENV = 'SOLOV2_DEBUG'


# ---- console ---------------------------------------------------------------------------------

class _ConsoleLines(logging.Handler):
    """The library's log records as plain lines on the current ``sys.stdout`` (warnings: 'warning: ...')."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        line = text if record.levelno <= logging.INFO else f'{record.levelname.lower()}: {text}'
        sys.stdout.write(line + '\n')
        sys.stdout.flush()


def show_logs() -> None:
    """Print the library's log messages (INFO and above) on stdout, passing none on to the root's handlers."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    logger.handlers, logger.propagate = [_ConsoleLines()], False
    logger.setLevel(logging.INFO)


class Progress:
    """Thread-safe progress on stderr: one line redrawn on a terminal, else a line every ``every_s`` seconds;
    with ``since`` (a ``time.perf_counter()``) each line starts with the time since then."""

    def __init__(self, total: int, label: str = '', stream=None, every_s: float = 10.0, unit: str = 'img',
                 since: Optional[float] = None):
        self.total, self.label, self.unit, self.done, self.since = total, label, unit, 0, since
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, 'isatty', lambda: False)())    # a terminal: one line redrawn
        self.interval = 0.5 if self.live else every_s
        self.start = self.last = time.perf_counter()
        self.lock = threading.Lock()

    def update(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            now = time.perf_counter()
            if now - self.last >= self.interval or self.done == self.total:
                self.last = now
                self.stream.write('\r' + self.line(now) if self.live else self.line(now) + '\n')
                self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        percent = 100 * self.done / max(self.total, 1)
        return (('' if self.since is None else f'[{clock(now - self.since)}] ') + f'{self.label}[{self.done}/'
                f'{self.total}] {percent:3.0f}% {rate:.1f} {self.unit}/s ETA {clock(eta)}')

    def close(self) -> None:
        if self.live:
            self.stream.write('\n')
            self.stream.flush()


class ExportStages:
    """``auto``'s first export, heard as ``progress(stage, fraction)`` (``auto_backend.STAGES``), as a line
    on stdout per stage, after the library's own 'auto: exporting ...' line, with the time since it began."""
    SAID = {'export': 'exporting to ONNX', 'verify': 'checking each engine against the Paddle model',
            'time': 'timing the engines on this CPU'}

    def __init__(self):
        self.start: Optional[float] = None

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        self.start = now if self.start is None else self.start
        if stage in self.SAID:
            sys.stdout.write(f'auto: [{clock(now - self.start)}] {self.SAID[stage]} ...\n')
            sys.stdout.flush()


class DownloadProgress:
    """The library's download progress, ``progress(bytes so far, total or None)``, as a ``Progress`` in MB."""

    def __init__(self):
        self.bar, self.shown = None, 0

    def __call__(self, done: int, total) -> None:
        megabytes = -(-done >> 20) if done == total else done >> 20
        if self.bar is None or megabytes < self.shown:
            self.close()
            self.bar, self.shown = Progress(-(-(total or 0) >> 20), 'download ', unit='MB'), 0
        if megabytes > self.shown:
            self.bar.update(megabytes - self.shown)
            self.shown = megabytes

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def downloaded(weights, mirror=None):
    """``weights`` with a published name fetched and converted (``convert.zoo.resolve_weights``), with progress."""
    from solov2.convert.zoo import resolve_weights  # the library loads Paddle: after the start-up settings
    with contextlib.closing(DownloadProgress()) as progress:
        return resolve_weights(weights, mirror=mirror, progress=progress)


def fetched(spec):
    """The ``ModelSpec`` ``spec`` with a published name in ``weights`` fetched (``downloaded``)."""
    return dataclasses.replace(spec, weights=downloaded(spec.weights))


def read_json(path, hint: str):
    """The JSON document at ``path``; InputError 'cannot read PATH: why — ``hint``' when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:        # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(f'cannot read {path}: {one_line(exc)} — {hint}') from None


# ---- process tuning --------------------------------------------------------------------------

def tune_for(device, threads: int, processes: int = 1, helper_threads: int = 1) -> None:
    """``model.tuning.tune_process`` for a command that runs a model on ``device``, before any Paddle work."""
    from solov2.model.runtime import default_device
    from solov2.model.tuning import tune_process
    tune_process(threads, processes, keep_freed_memory=not on_gpu(device or default_device()),
                 helper_threads=helper_threads)


# ---- exit codes ------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, a job scheduler), raised where the command is, like Ctrl-C."""


_status = {'note': None}
STOPPED_LOADING = 'stopped while loading, nothing was written: run the same command again'


def set_status(note) -> None:
    """Register ``note()``, what the command has done so far, which an interruption's line says."""
    _status['note'] = note


def one_line(exc: BaseException) -> str:
    """``exc``'s message (``<what> — <what to do>``) on one line; its type's name when it has none."""
    return ' '.join(str(exc).split()) or type(exc).__name__


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _interrupted(exc: KeyboardInterrupt, note: str = '') -> int:
    note = note or (_status['note']() if _status['note'] else 'nothing was written')
    print(f"\ninterrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'Ctrl-C'}): {note}", file=sys.stderr)
    return 143 if isinstance(exc, Terminated) else 130


def check_install() -> None:
    """Before Paddle loads: without it one ``error:`` line (exit 2); with two of its wheels a ``warning:``."""
    problem = paddle_install_problem()
    fatal = problem is not None and importlib.util.find_spec('paddle') is None
    for line in (problem, None if fatal else onnxruntime_install_problem()):
        if line:
            print(('error: ' if fatal else 'warning: ') + line, file=sys.stderr)
    if fatal:
        raise SystemExit(2)


@contextlib.contextmanager
def interruptible_loading() -> Iterator[None]:
    """Around a command's imports of Paddle and the library: Ctrl-C or SIGTERM end in the one interrupt line, not
    a traceback or the ``FatalError`` of Paddle's SIGTERM handler (both held while Paddle is imported)."""
    check_install()
    if not _main_thread():
        yield
        return
    signals = {signal.SIGINT, signal.SIGTERM}
    held = signal.pthread_sigmask(signal.SIG_BLOCK, signals) if hasattr(signal, 'pthread_sigmask') else None
    previous = {}
    try:
        try:
            import paddle  # noqa: F401  (installs Paddle's C++ SIGTERM handler, replaced here)
        finally:
            for signum, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _raise_terminated)):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    previous[signum] = signal.signal(signum, handler)
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)      # a held signal is raised here
        yield
    except KeyboardInterrupt as exc:
        raise SystemExit(_interrupted(exc, STOPPED_LOADING)) from None
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


def end_loading(exc: KeyboardInterrupt) -> None:
    """End the command at once, a model loading in another thread: its temporaries removed, by ``os._exit``."""
    from solov2.core.cache import leftovers, remove_entries
    if _main_thread():           # a second signal (Ctrl-C reaches a whole process group) changes nothing
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        remove_entries(leftovers(mine=True))
    code = _interrupted(exc, STOPPED_LOADING)
    sys.stdout.flush()
    os._exit(code)


def command(run):
    """``run(argv)`` as a command's ``main(argv=None)``: the one place where exceptions become exit codes."""
    @functools.wraps(run)
    def main(argv=None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, '') not in ('', '0')
        set_status(None)
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
        show_logs()
        try:
            return run([arg for arg in argv if arg != DEBUG_FLAG])
        except KeyboardInterrupt as exc:
            return _interrupted(exc)
        except Exception as exc:       # one line: an InputError's; a RunError's or OSError's with the hint; a bug's
            if debug:
                raise
            text, hint = one_line(exc), f'(rerun with {DEBUG_FLAG} for the traceback)'
            known = isinstance(exc, (InputError, RunError, OSError))
            print(f'error: {text}' if isinstance(exc, InputError) else f'error: {text} {hint}' if known else
                  f'error: a bug in the toolkit: {type(exc).__name__}: {text} {hint[:-1]}, and please report it)',
                  file=sys.stderr)
            return 2 if isinstance(exc, InputError) else 1
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return main


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# ---- arguments -------------------------------------------------------------------------------

def shares_line(counts) -> str:
    """'N images by W processes (a, b, ...), each once' of the images each process did, ``counts``."""
    return f'{sum(counts)} images by {len(counts)} processes ({", ".join(map(str, counts))}), each once'


class CommandParser(argparse.ArgumentParser):
    """argparse's parser whose refusal of the command line is one line, as every other error: ``error: argument
    --threads: takes a whole number of at least 0, not x (solov2 demo --help shows the options)``, exit 2, with
    no usage block before it."""

    def error(self, message: str):
        hint = '' if self.prog in message or '--help' in message else f' ({self.prog} --help shows the options)'
        self.exit(2, f'error: {one_line(Exception(message))}{hint}\n')


def make_parser(description: str, configs: bool = True, notes: str = '') -> argparse.ArgumentParser:
    """The parser every command starts from (a ``CommandParser``): ``--debug``, a help ending with ``notes`` and
    the configs."""
    epilog = (notes.strip() + '\n\n' if notes.strip() else '') + (
        'configs (--config=N):\n' + describe_configs() + '\n\n' if configs else '')
    parser = CommandParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=epilog + 'errors end in one line; --debug shows the traceback')
    parser.add_argument(DEBUG_FLAG, action='store_true',
                        help=f'show the full traceback of an error (or set {DEBUG_ENV}=1)')
    return parser


def device_flag(text: str) -> str:
    """--device's value, normalised (``config.device.device_name``); an argparse error otherwise."""
    try:
        return device_name(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def at_least(least: float, whole: bool = True, above: bool = False, most: Optional[float] = None, step: int = 1):
    """An argparse ``type``: a whole (or, not ``whole``, a finite) number of at least ``least`` (``above``:
    above it), at most ``most`` when given, a multiple of ``step``, so that a bad value is reported under
    its flag (``argument --threads: ...``)."""
    def number(text: str):
        try:
            value = (int if whole else float)(text)
        except ValueError:
            value = math.nan                    # a word: refused below, in the flag's words
        if (not (value > least if above else value >= least) or not math.isfinite(value)
                or (most is not None and value > most) or (step != 1 and value % step)):
            raise argparse.ArgumentTypeError(
                f"takes a {'whole ' * whole}number {'above' if above else 'of at least'} {least}"
                + (f' and at most {most}' if most is not None else '')
                + (f', a multiple of {step}' if step != 1 else '') + f', not {text}')
        return value
    return number


def config_number(text: str) -> int:
    """--config's value: one of the numbered configs (``config.CONFIGS``); an argparse error otherwise."""
    from solov2.config import CONFIGS
    number = int(text) if text.strip().lstrip('+-').isdigit() else None
    if number not in CONFIGS:
        raise argparse.ArgumentTypeError(f'is not a config number: {text} (they are {min(CONFIGS)} to '
                                         f'{max(CONFIGS)}; --list-configs or --help lists them)')
    return number


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device, --threads and --verbose."""
    parser.add_argument('--device', default=None, type=device_flag,
                        help="'cpu', 'gpu' or 'gpu:N' (GPU number N; default: gpu if available)")
    parser.add_argument('--threads', type=at_least(0), default=0,
                        help='CPU math threads (default: every core, shared out among data-parallel processes)')
    parser.add_argument('--verbose', action='store_true', help='print every resolved config value at start')


def add_model_args(parser: argparse.ArgumentParser, default_weights=None, weights_help: str = '') -> None:
    """--config (optional: read from the weights' sidecar), --weights (``weights_help``, else a checkpoint or
    a published name) and --opt."""
    parser.add_argument('--config', type=config_number, default=None,
                        help='config number (default: the one recorded beside the weights)')
    parser.add_argument('--weights', default=default_weights, help=weights_help or (
        'checkpoint .pdparams from solov2 convert or train, or a published name (solov2 weights / tools/weights.py '
        'lists them), downloaded and converted once'
        + (' (default: the shipped model weights/shapes_r18.pdparams)' if default_weights else '')))
    parser.add_argument('--opt', nargs='+', action='extend', default=[], metavar='NAME=VALUE',
                        help='override config values, e.g. --opt test_short=512 score_threshold=0.2')


def named_fields(cls, args: argparse.Namespace) -> dict:
    """{name: value} of the flags in ``args`` named as fields of the dataclass ``cls``."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(cls) if hasattr(args, field.name)}


def model_spec(args):
    """The model a command line names as a ``ModelSpec``, checked before a published name is fetched."""
    from solov2.convert.zoo import checked_config  # the library loads Paddle: after the start-up settings
    from solov2.model.inference.spec import ModelSpec
    spec = ModelSpec(**named_fields(ModelSpec, args), overrides=args.opt)
    spec.check(checked_config)
    return spec


def add_inference_args(parser: argparse.ArgumentParser, default_weights=None, batch_size: bool = True,
                       fast_decode: bool = False) -> None:
    """What every command that runs a model takes (``model_spec`` makes it a ``ModelSpec``); --batch-size
    with ``batch_size``, --fast-decode for a command that needs no picture's full pixels."""
    from solov2.config.engines import BACKENDS, PRECISIONS  # no Paddle
    add_model_args(parser, default_weights)
    parser.add_argument('--backend', choices=BACKENDS, default='auto',
                        help='auto (default: exported once from --weights into $SOLOV2_CACHE or '
                             '~/.cache/solov2-paddle, run in openvino f32 or onnxruntime, whichever was faster '
                             'when it exported; dygraph on a GPU), dygraph '
                             '(--weights, the Paddle model), inference, onnx or openvino (--model-dir)')
    parser.add_argument('--model-dir', metavar='DIR',
                        help='exported model folder (solov2 export / tools/export_model.py, or solov2 quantize / '
                             'tools/quantize.py) for --backend inference|onnx|openvino')
    parser.add_argument('--precision', choices=PRECISIONS,
                        help='--backend openvino: f32 (default), bf16 (CPUs with AMX or avx512_bf16) or int8 (a '
                             'folder from solov2 quantize / tools/quantize.py); --backend auto: f32 keeps it to f32 '
                             '(default: bf16 too where the CPU has it natively and it keeps the f32 instances)')
    parser.add_argument('--mkldnn', action='store_true', help='oneDNN kernels for --backend inference')
    parser.add_argument('--tensorrt', action='store_true',
                        help='--backend inference or onnx on a GPU --device: through TensorRT float16 (onnx: '
                             "onnxruntime's TensorRT provider, for Paddle 3 exports too)")
    if fast_decode:
        parser.add_argument('--fast-decode', action='store_true',
                            help='decode a JPEG much larger than the network input at 1/2, 1/4 or 1/8 of its size '
                                 '(faster, less memory; the network input changes slightly: docs/api.md)')
    add_runtime_args(parser)
    if batch_size:
        parser.add_argument('--batch-size', type=at_least(1), default=1, metavar='N',
                            help='pictures to a network run (pictures of one padded size share it; default 1)')
