"""Command-line pieces shared by demo.py, eval.py and train.py."""
import argparse

from config import describe_configs, format_settings, get_config, with_overrides
from config.sidecar import read_sidecar


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
    """(number, config class) from --config, else from the weights' sidecar, with the
    --opt overrides applied. Raises ValueError/KeyError with a one-line message."""
    number = args.config
    if number is None and args.weights:
        number = (read_sidecar(args.weights) or {}).get('config')
    if number is None:
        raise ValueError('pass --config (the weights have no sidecar .json naming one)')
    return number, with_overrides(get_config(number), args.opt)


def announce_config(number: int, cfg, overrides=(), verbose: bool = False, where: str = '') -> str:
    """What a command runs with: one line (config number and name, ``where`` (weights or
    model folder) and the --opt overrides), or with ``verbose`` that line and the table of
    every resolved value."""
    line = f'config {number}: {cfg.__name__}' + (f' ({where})' if where else '')
    if overrides:
        line += ', --opt ' + ' '.join(overrides)
    return f'{line}\n{format_settings(cfg)}' if verbose else line
