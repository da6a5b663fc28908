"""The one console command, ``solov2 COMMAND ...`` (``python -m solov2 COMMAND ...`` where the
console command is not on PATH): runs the command's ``main`` with the rest of the line, as
``python tools/<name>.py ...`` and ``python convert/<name>2paddle.py ...`` do in a checkout.

    solov2 demo --input photos/ --output output/photos
    solov2 weights get ppdet/solov2_r50_enhance_coco
    solov2 convert ppdet solov2_r50_enhance_coco.pdparams weights/enhance.pdparams
    solov2 COMMAND --help                        # its options

``COMMANDS``: command -> (its module under solov2., what it does in one line).
"""
import difflib
import importlib
import sys

COMMANDS = {
    'demo': ('tools.demo', 'segment pictures, a folder, a video or a camera; save the drawn masks or JSON'),
    'train': ('tools.train', 'train on a COCO-format dataset'),
    'eval': ('tools.eval', 'COCO mask AP of a checkpoint or an exported model'),
    'export': ('tools.export_model', 'export a checkpoint for Paddle Inference, onnxruntime and OpenVINO'),
    'quantize': ('tools.quantize', 'INT8 quantization of an exported model, for OpenVINO'),
    'weights': ('tools.weights', 'the published checkpoints by name: list them, or fetch them now'),
    'cache': ('tools.cache', 'list, prune or clear the cache of exports and converted checkpoints'),
    'convert': ('tools.convert', "a published checkpoint -> this project's, and back to PaddleDetection"),
    'make-shapes': ('tools.make_shapes_dataset', 'write the synthetic shapes dataset (COCO format)'),
    'labelme2coco': ('tools.labelme2coco', 'a folder of labelme JSON files -> a COCO instance file'),
    'labelstudio2coco': ('tools.labelstudio2coco', 'a Label Studio JSON export (polygons, brushes) -> a COCO instance '
                                                   'file'),
    'browse': ('tools.browse', "draw a dataset's own annotations (COCO or labelme) to check them before training"),
    'postprocess-raw': ('tools.postprocess_raw', "another runtime's raw network outputs -> masks, pictures, JSON"),
    'serve': ('tools.serve', 'serve a model over HTTP'),
}


def listing(words, table) -> str:
    """The help of ``words`` ('solov2', 'solov2 convert'): its usage and one line per command."""
    width = max(map(len, table)) + 2
    lines = [f'usage: {words} COMMAND [ARGS ...]', '', 'commands:']
    lines += [f'  {name:<{width}}{line}' for name, (_, line) in table.items()]
    return '\n'.join(lines + ['', f'{words} COMMAND --help shows its options'])


def dispatch(words, table, argv, run) -> int:
    """``run(command, the rest of argv)`` for ``argv``'s first word, one of ``table``'s; nothing: the list; another
    word: one line, with the closest command."""
    if not argv or argv[0] in ('-h', '--help'):
        print(listing(words, table), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in table:
        close = difflib.get_close_matches(argv[0], table, n=1)
        print(f'error: no command {argv[0]!r}' + (f', did you mean {close[0]!r}?' if close else '')
              + f' ({words} --help lists them)', file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


def main(argv=None) -> int:
    """``solov2 COMMAND ARGS``: the command's ``main(ARGS)``, under the name ``solov2 COMMAND`` (``sys.argv[0]``)."""
    return dispatch('solov2', COMMANDS, list(sys.argv[1:] if argv is None else argv), _run)


def _run(name, argv) -> int:
    sys.argv[0] = f'solov2 {name}'
    importlib.import_module('solov2.tools.cli')      # its start-up settings before Paddle, as in the scripts
    return importlib.import_module(f'solov2.{COMMANDS[name][0]}').main(argv)
