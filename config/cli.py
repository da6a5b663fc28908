"""Command-line pieces shared by demo.py, eval.py and train.py."""
import argparse

from config import describe_configs, format_settings, get_config, with_overrides
from config.sidecar import apply_sidecar, read_sidecar


def make_parser(description: str) -> argparse.ArgumentParser:
    """A parser whose help lists the numbered configs."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog='configs (--config=N):\n' + describe_configs()
                                   + '\n\nerrors end in one line; --debug (or SOLOV2_DEBUG=1) shows the traceback')


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device, --threads and --opt."""
    parser.add_argument('--device', default=None, help="'cpu' or 'gpu' (default: gpu if available)")
    parser.add_argument('--threads', type=int, default=0,
                        help='CPU math threads (default: every core, shared out among data-parallel processes)')
    parser.add_argument('--opt', nargs='+', default=[], metavar='NAME=VALUE',
                        help='override config values, e.g. --opt test_short=512 score_threshold=0.2')
    parser.add_argument('--verbose', action='store_true', help='print every resolved config value at start')


def add_model_args(parser: argparse.ArgumentParser, default_weights=None) -> None:
    """--config (optional: read from the weights' sidecar) and --weights."""
    parser.add_argument('--config', type=int, default=None,
                        help='config number (default: the one recorded beside the weights)')
    parser.add_argument('--weights', default=default_weights,
                        help='checkpoint .pdparams from convert/*2paddle.py or train.py'
                             + (f' (default: {default_weights})' if default_weights else ''))


def resolve_config(args):
    """(number, config class) from --config, else from the weights' sidecar, with what the
    sidecar recorded (classes, settings) under the --opt overrides. A command line that
    contradicts a recorded model setting, --config included, raises ValueError naming it;
    test-time settings (thresholds, test sizes) may differ. Raises ValueError/KeyError with
    a one-line message."""
    meta = read_sidecar(args.weights) if args.weights else None
    number = args.config if args.config is not None else (meta or {}).get('config')
    if number is None:
        raise ValueError('pass --config (the weights have no sidecar .json naming one)')
    cfg = with_overrides(get_config(number), args.opt)
    if meta is None:
        return number, cfg
    same = meta.get('config') == number
    chosen = [text.partition('=')[0].strip() for text in args.opt] if same else cfg.settings()
    try:
        return number, apply_sidecar(cfg, meta, chosen)
    except ValueError as exc:
        hint = '' if same else f' (they were made for --config={meta.get("config")})'
        raise ValueError(f'{exc}{hint}') from None


def announce_config(number: int, cfg, overrides=(), verbose: bool = False, where: str = '') -> str:
    """What a command runs with: one line (config number and name, ``where`` (weights or
    model folder) and the --opt overrides), or with ``verbose`` that line and the table of
    every resolved value."""
    line = f'config {number}: {cfg.__name__}' + (f' ({where})' if where else '')
    if overrides:
        line += ', --opt ' + ' '.join(overrides)
    return f'{line}\n{format_settings(cfg)}' if verbose else line
