"""``solov2 convert FAMILY SOURCE OUTPUT [--config N]``, the converters' one command line:
``--help`` lists the families (convert/published.py's ``FAMILIES``), ``FAMILY --help`` shows its notes
(its ``Converter`` in convert/families.py, convert/to_ppdet.py's for the way back). In a checkout
each ``convert/<source>2paddle.py`` hands its line to ``run_family`` (through convert/_bootstrap)."""
import os
import sys
from typing import List

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # before Paddle

with cli.interruptible_loading():  # no Paddle: one line saying so; Ctrl-C while it loads: one line
    from solov2.config import CONFIGS
    from solov2.convert import families, to_ppdet
    from solov2.convert.common import Converted, convert_file
    from solov2.convert.published import FAMILIES
    from solov2.tools.cli import command, config_number, make_parser
    from solov2.tools.main import dispatch

TO_PPDET_HELP = {'source': "this project's .pdparams (its NAME.json names the config)",
                 'output': 'PaddleDetection .pdparams to write', 'config': 'config number when there is no sidecar'}
HELP = {'source': 'checkpoint to convert', 'output': 'where to write the .pdparams (a .json sidecar goes beside it)',
        'config': 'target config number; default: detect among {configs}'}


def converted_lines(done: Converted) -> List[str]:
    """What a conversion into this project wrote, as printed: its config, its report, ``wrote OUTPUT``."""
    return [f'config {done.number} ({CONFIGS[done.number].__name__}): {done.report.summary()}', f'wrote {done.output}']


def ppdet_lines(done: to_ppdet.WrittenPpdet) -> List[str]:
    """What ``to-ppdet`` wrote, as printed: its PaddleDetection config, a note per setting, ``wrote OUTPUT``."""
    return ([f'config {done.number} ({done.cfg.__name__}) -> PaddleDetection {to_ppdet.PPDET_CONFIGS[done.number]} '
             f'(num_classes: {done.cfg.num_classes}): {done.tensors} tensors']
            + [f'note: trained with {name}={value!r}: set it in the PaddleDetection config too'
               for name, value in done.changed.items()]
            + [f'wrote {done.output}'])


def work(family: str):
    """``FAMILY``'s (convert(source, output, config) -> summary lines, configs tried, notes, help of the arguments)."""
    if family == 'to-ppdet':
        return lambda *args: ppdet_lines(to_ppdet.write_ppdet(*args)), (), to_ppdet.NOTES, TO_PPDET_HELP
    converter = families.CONVERTERS[family]

    def convert(*args) -> List[str]:
        return converted_lines(convert_file(converter, *args))
    return convert, converter.default_configs, converter.notes, HELP


def run_family(family: str, argv=None, prog=None) -> int:
    """``solov2 convert FAMILY SOURCE OUTPUT [--config N]`` with ``argv``, as a command named ``prog``."""
    convert, configs, notes, helps = work(family)
    summary, _, details = (notes + '\nDetails: docs/checkpoints.md, "Converting".\n').partition('\n')

    def run(rest) -> int:
        parser = make_parser(summary, notes=details)
        parser.prog = prog or parser.prog
        parser.add_argument('source', help=helps['source'])
        parser.add_argument('output', help=helps['output'])
        parser.add_argument('--config', type=config_number, default=None,
                            help=helps['config'].format(configs=list(configs)))
        args = parser.parse_args(rest)
        for line in convert(args.source, args.output, args.config):
            print(line)
        return 0
    return command(run)(argv)


def main(argv=None) -> int:
    """``solov2 convert FAMILY ARGS``: ``run_family``; the families and their notes' first lines for ``--help``."""
    words = os.path.basename(sys.argv[0])
    table = {family: (script, work(family)[2].split('\n')[0].replace('``', '')) for family, script in FAMILIES.items()}
    return dispatch(words, table, list(sys.argv[1:] if argv is None else argv),
                    lambda family, rest: run_family(family, rest, f'{words} {family}'))


if __name__ == '__main__':
    raise SystemExit(main())
