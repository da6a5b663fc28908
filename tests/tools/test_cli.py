"""The command glue: the progress line (live on a terminal, whole lines in a log file), the
library's messages shown as they are (no rewriting), and which exceptions end in which exit code."""
import dataclasses
import inspect
import io
import logging
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest

from solov2 import Segmenter, TrainOptions
from solov2.convert.pth_reader import load_pth
from solov2.core.errors import InputError, param
from solov2.model.checkpoint import read_paddle_file
from solov2.model.inference import backend_factory
from solov2.model.inference.backend_factory import open_backend
from solov2.model.inference.export import export
from solov2.model.inference.spec import ModelSpec
from solov2.tools import demo, export_model, quantize, weights
from solov2.tools.cli import Progress, command, one_line
from solov2.tools.demo_outputs import picture_targets
from tests.helpers import REPO_DIR


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_file_prints_whole_lines_without_carriage_returns():
    stream = io.StringIO()
    bar = Progress(3, 'predict ', stream=stream, every_s=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert '\r' not in text
    lines = text.splitlines()
    assert len(lines) == 3 and lines[-1].startswith('predict [3/3] 100%')


def test_progress_on_a_terminal_redraws_one_line():
    stream = FakeTerminal()
    bar = Progress(2, stream=stream)
    bar.update()
    bar.update()
    bar.close()
    text = stream.getvalue()
    assert text.startswith('\r') and text.endswith('\n') and text.count('\n') == 1


# ---- errors in the caller's words ----------------------------------------------------------------

def test_the_commands_show_a_library_message_as_it_is(capsys):
    """No layer rewrites the library's words: the error line and the log lines of a command are
    the library's message, which names the caller's parameters in Python words."""
    error = InputError('pass ', param('weights'), ' or ', param('backend', 'onnx', 'openvino'), ' in ',
                       param('model_dir', Path('x y')))
    assert str(error) == "pass weights= or backend='onnx'|'openvino' in model_dir='x y'"
    assert one_line(error) == str(error)

    def main(argv):
        logging.getLogger('solov2.model').info('%s: no checkpoint in %s yet', param('resume', 'auto'), 'x%')
        raise error
    assert command(main)([]) == 2
    assert capsys.readouterr() == ("resume='auto': no checkpoint in x% yet\n", f'error: {error}\n')


def test_no_module_of_the_product_rewrites_messages():
    """The commands name their flags where they parse them; nothing maps a parameter to a flag
    or a checkout script to an installed command afterwards."""
    product = [path for top in ('config', 'data', 'model', 'convert', 'tools', 'solov2')
               for path in (REPO_DIR / top).rglob('*.py') if 'dev' not in path.parts]
    found = [str(path.relative_to(REPO_DIR)) for path in product
             if re.search(r'\b(in_flags|flag_words|command_words|class Param\b)', path.read_text())]
    assert len(product) > 100 and not found, found


def _named_parameters(root: Path):
    """The parameter names that library messages give ``param`` as a literal."""
    names = set()
    for folder in ('config', 'data', 'model', 'convert', 'api', 'serving'):
        for path in (root / folder).rglob('*.py'):
            names.update(re.findall(r"""param\('(\w+)'""", path.read_text()))
    return names


def test_every_parameter_a_message_names_is_a_parameter():
    """The Python words name a parameter of the public entry points."""
    names = _named_parameters(REPO_DIR) | {'min_size', 'max_size'}        # export's loop names these two
    assert {'weights', 'overrides', 'resume', 'overwrite', 'config'} <= names
    entry_points = (open_backend, export, picture_targets)
    parameters = {f.name for spec in (TrainOptions, ModelSpec) for f in dataclasses.fields(spec)}
    parameters |= {name for fn in entry_points for name in inspect.signature(fn).parameters}
    assert names <= parameters, names - parameters


def test_a_library_error_reads_the_same_to_python_callers_and_on_the_command_line(tmp_path, capsys):
    with pytest.raises(InputError) as info:
        Segmenter(weights=str(tmp_path))
    assert str(info.value) == f"weights='{tmp_path}' is a folder — give the .pdparams file (there is none in it)"
    assert demo.main(['--weights', str(tmp_path), '--output', str(tmp_path / 'o')]) == 2
    assert capsys.readouterr().err == f'error: {info.value}\n'


def test_a_commands_bad_flag_value_names_the_flag(tmp_path, capsys):
    """Where a command parses a flag it names it: argparse's checks and the command's own."""
    with pytest.raises(SystemExit):
        demo.main(['--device', 'tpu'])
    assert 'argument --device: ' in capsys.readouterr().err
    for flag, value, least in (('--threads', '-1', 0), ('--batch-size', '0', 1)):     # not the library's threads=
        with pytest.raises(SystemExit):
            demo.main([flag, value])
        assert f'argument {flag}: takes a whole number of at least {least}, not {value} (' in capsys.readouterr().err
    for flag, value, kind, least in (('--max-drop', '-0.5', '', 0), ('--num-annotated', '-1', 'whole ', 0),
                                     ('--num-images', '0', 'whole ', 1)):
        with pytest.raises(SystemExit):
            quantize.main(['--model-dir', 'm', '--images', 'i', '--output', 'o', flag, value])
        assert f'argument {flag}: takes a {kind}number of at least {least}, not {value} (' in capsys.readouterr().err
    for given, message in ((['--num-annotated', '3'], '--num-annotated needs --annotations (a COCO annotation file)'),
                           (['--annotations', 'a.json'], '--annotations needs --annotated-images, the folder its')):
        assert quantize.main(['--model-dir', 'm', '--images', 'i', '--output', 'o', *given]) == 2
        assert capsys.readouterr().err.startswith(f'error: {message}')
    (tmp_path / 'in').mkdir()
    shutil.copy(REPO_DIR / 'images' / 'shapes_000023.jpg', tmp_path / 'in')
    assert demo.main(['--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'in')]) == 2
    assert capsys.readouterr().err.startswith(f'error: --output {tmp_path / "in"} is the input folder')


def command_parsers(monkeypatch) -> dict:
    """{'demo': its parser, ..., 'convert ppdet': ..., ...}: the parser of every command of ``solov2`` and
    of every converter family, as each builds it (``parse_args`` stopped before it parses)."""
    import argparse

    from solov2.convert.published import FAMILIES
    from solov2.tools import main as console
    built = []

    def grab(parser, *args, **kwargs):
        built.append(parser)
        raise SystemExit(0)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', grab)
    lines = [[name] for name in console.COMMANDS if name != 'convert'] + [['convert', name] for name in FAMILIES]
    parsers = {}
    for line in lines:
        with pytest.raises(SystemExit):
            console.main(line)
        parsers[' '.join(line)] = built.pop()
    return parsers


def test_every_number_flag_of_every_command_is_checked_where_it_is_parsed(monkeypatch, capsys):
    """No command takes a number flag as a bare int or float: each has its bound (``cli.at_least``,
    ``cli.config_number``) or its choices, so -5 frames, a threshold of 1.5 or checkpoints every 0
    iterations are refused under the flag, in the user's words, before anything runs."""
    parsers = command_parsers(monkeypatch)
    unchecked = [(name, action.option_strings[0]) for name, parser in parsers.items() for action in parser._actions
                 if action.type in (int, float) and not action.choices]
    assert len(parsers) > 15 and unchecked == []
    monkeypatch.undo()
    for main, flags in ((demo.main, [('--warmup', '-1'), ('--max-frames', '-5'), ('--draw-threshold', '1.5'),
                                     ('--config', '99')]),
                        (export_model.main, [('--min-size', '100'), ('--max-size', '32')])):
        for flag, value in flags:
            with pytest.raises(SystemExit):
                main([flag, value])
            assert f'argument {flag}: ' in capsys.readouterr().err, flag
    from solov2.tools import train
    with pytest.raises(SystemExit):
        train.main(['--checkpoint-every', '0'])
    assert 'argument --checkpoint-every: takes a whole number of at least 1, not 0' in capsys.readouterr().err


def test_a_message_or_help_names_a_command_as_installed_and_in_a_checkout(tmp_path, capsys):
    """``solov2 export`` for an installed user, tools/export_model.py in a checkout: both, in one reading."""
    with pytest.raises(InputError, match='export a model with solov2 export / tools/export_model.py'):
        open_backend(ModelSpec(backend='onnx', model_dir=tmp_path))
    with pytest.raises(SystemExit):
        demo.main(['--help'])
    helped = ' '.join(capsys.readouterr().out.split())
    assert '(solov2 weights / tools/weights.py lists them)' in helped, helped
    assert 'solov2 quantize / tools/quantize.py' in helped, helped


def test_a_missing_relative_path_says_where_it_was_looked_up(tmp_path, monkeypatch, capsys):
    """The API and the command give the same hint: the folder the path was looked up from, a
    close name if there is one, and no advice to convert a checkpoint that is not there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'weights').mkdir()
    (tmp_path / 'weights' / 'model.pdparams').write_bytes(b'x')
    with pytest.raises(InputError) as info:
        Segmenter(weights='weights/modle.pdparams')
    assert str(info.value) == (f'weights file not found: weights/modle.pdparams (from {tmp_path}) '
                               '— did you mean weights/model.pdparams?')
    assert demo.main(['--weights', 'weights/modle.pdparams', '--output', 'o']) == 2
    assert capsys.readouterr().err == f'error: {info.value}\n'
    with pytest.raises(InputError) as info:
        Segmenter(weights='elsewhere/model.pdparams')
    assert str(info.value) == f'weights file not found: elsewhere/model.pdparams (from {tmp_path})'


def test_a_folder_where_a_file_is_needed_is_named_a_folder(tmp_path, monkeypatch, capsys):
    """A converter or the demo's --video given a folder says it is a folder, not that it is not there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'export').mkdir()
    with pytest.raises(InputError, match=re.escape(f'weights file not found: export (from {tmp_path}) (a folder, '
                                                   'not a file)')):
        read_paddle_file('export')
    with pytest.raises(InputError, match=re.escape(f'PyTorch checkpoint not found: {tmp_path / "export"} (a folder')):
        load_pth(tmp_path / 'export')
    assert demo.main(['--video', 'export', '--output', 'o']) == 2
    assert f'video not found: export (from {tmp_path}) (a folder, not a file)' in capsys.readouterr().err


def test_a_bug_in_the_library_is_called_one_and_names_debug(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError('num_grids')
    monkeypatch.setattr(backend_factory, 'checked_weights', broken)
    monkeypatch.delenv('SOLOV2_DEBUG', raising=False)
    assert demo.main(['--output', str(tmp_path / 'o')]) == 1
    assert capsys.readouterr().err == ("error: a bug in the toolkit: KeyError: 'num_grids' (rerun with --debug "
                                       'for the traceback, and please report it)\n')
    with pytest.raises(KeyError):
        demo.main(['--output', str(tmp_path / 'o'), '--debug'])


def test_a_record_on_its_way_when_the_command_ends_is_shown_once(monkeypatch):
    """A library thread logs a warning while the command's stdout write is under way, and the
    command ends meanwhile (as Ctrl-C ends the demo while its reader warns of a greyscale
    picture): the record is shown once, as the command's line, not again by a root handler
    (importing Paddle adds one): the command's logging stays for the rest of the process."""
    writing, ended = threading.Event(), threading.Event()

    class SlowStdout(io.StringIO):
        def write(self, text):
            writing.set()
            assert ended.wait(30)
            return super().write(text)

    class Caught(logging.Handler):
        def emit(self, record):
            caught.append(record.getMessage())

    caught, root, catcher, stdout = [], logging.getLogger(), Caught(), SlowStdout()
    monkeypatch.setattr(sys, 'stdout', stdout)
    reader = threading.Thread(target=logging.getLogger('solov2.data.transforms').warning, args=('a.png is grey',))

    def main(argv):
        reader.start()
        assert writing.wait(30)
        return 0

    root.addHandler(catcher)
    try:
        assert command(main)([]) == 0
        ended.set()
        reader.join(30)
    finally:
        root.removeHandler(catcher)
    assert stdout.getvalue() == 'warning: a.png is grey\n' and caught == []


def test_a_command_names_itself_as_it_was_started(monkeypatch, capsys):
    """From a checkout ``weights.py``, started as the console command (tools/main.py sets
    sys.argv[0] to solov2 weights) ``solov2 weights``: argparse's name, in its errors."""
    for argv0, words in (('tools/weights.py', 'weights.py'), ('solov2 weights', 'solov2 weights')):
        monkeypatch.setattr(sys, 'argv', [argv0])
        with pytest.raises(SystemExit):
            weights.main(['get'])
        err = capsys.readouterr().err
        assert err == f'error: get needs one or more names ({words} lists them)\n'


def test_opt_given_twice_keeps_both_lists():
    """``--opt a=1 --opt b=2`` is ``--opt a=1 b=2`` (argparse's default keeps the last list only)."""
    assert demo.parse_args(['--opt', 'a=1', '--opt', 'b=2', 'c=3']).opt == ['a=1', 'b=2', 'c=3']
    assert demo.parse_args([]).opt == [] and demo.parse_args(['--opt', 'a=1']).opt == ['a=1']
    assert export_model.parse_args(['--weights', 'w', '--output', 'o', '--opt', 'a=1', '--opt', 'b=2']).opt == [
        'a=1', 'b=2']
