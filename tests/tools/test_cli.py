"""The command glue: the progress line (live on a terminal, whole lines in a log file), the
library's messages in the commands' words, and which exceptions end in which exit code."""
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import io
import logging
import pickle
import re
import sys
import threading
from pathlib import Path

import pytest

from solov2 import Segmenter, TrainOptions
from solov2.core.errors import InputError, param
from solov2.model.inference import backend_factory
from solov2.model.inference.backend_factory import open_backend
from solov2.model.inference.export import export
from solov2.model.inference.spec import ModelSpec
from solov2.tools import demo, weights
from solov2.tools.cli import INSTALLED, Progress, command, error_line, in_flags
from solov2.tools.commands import commands_by_module
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

def test_a_parameter_reads_as_python_or_as_its_flag():
    error = InputError('pass ', param('weights'), ' or ', param('backend', 'onnx', 'openvino'), ', ',
                       param('resume', 'auto'), ', ', param('overwrite', True), ', ',
                       param('overrides', ['test_short=512', "class_names=('a b',)"]), ' in ',
                       param('model_dir', Path('x y')))
    assert str(error) == ("pass weights= or backend='onnx'|'openvino', resume='auto', overwrite=True, "
                          "overrides=['test_short=512', \"class_names=('a b',)\"] in model_dir='x y'")
    assert error_line(error) == ("error: pass --weights or --backend onnx|openvino, --resume auto, --overwrite, "
                                 "--opt test_short=512 \"class_names=('a b',)\" in --model-dir \"x y\"")
    assert error_line(pickle.loads(pickle.dumps(error))) == error_line(error)   # across processes too
    assert in_flags('plain text') == 'plain text'
    wrapped = InputError('cannot use it: ', *error.args)                        # one error extending another
    assert error_line(wrapped) == error_line(error).replace('error: ', 'error: cannot use it: ')


def test_a_parameter_in_an_f_string_reads_in_python_words_never_a_crash(capsys):
    """A param is a str: an f-string, format() or + around one gives its Python words, in an
    error or a log line, and the command still shows the pieces beside it as flags."""
    def main(argv):
        logging.getLogger('solov2.config').info(f'{param("resume", "auto")} and %s', param('resume', 'auto'))
        raise InputError('pass {} '.format(param('config')) + param('weights') + ' or ', param('weights'))
    assert command(main)([]) == 2
    assert capsys.readouterr() == ("resume='auto' and --resume auto\n", 'error: pass config= weights= or --weights\n')


def _named_parameters(root: Path):
    """The parameter names that library messages give ``param`` as a literal."""
    names = set()
    for folder in ('config', 'data', 'model', 'convert', 'solov2/api', 'solov2/serving'):
        for path in (root / folder).rglob('*.py'):
            names.update(re.findall(r"""param\('(\w+)'""", path.read_text()))
    return names


def test_every_parameter_a_message_names_is_a_parameter_and_a_flag():
    """The Python words name a parameter of the public entry points; the flag exists in a command."""
    names = _named_parameters(REPO_DIR) | {'min_size', 'max_size'}        # export's loop names these two
    assert {'weights', 'overrides', 'resume', 'overwrite', 'config'} <= names
    entry_points = (open_backend, export, picture_targets)
    parameters = {f.name for spec in (TrainOptions, ModelSpec) for f in dataclasses.fields(spec)}
    parameters |= {name for fn in entry_points for name in inspect.signature(fn).parameters}
    assert names <= parameters, names - parameters
    flags = _command_flags()
    for name in names:
        flag = in_flags(param(name))
        assert flag in flags, flag


def _command_flags() -> set:
    """The options every command of tools/ (``solov2 COMMAND``) shows in its --help."""
    flags = set()
    for name in sorted(commands_by_module()):
        if not name.startswith('tools.') or importlib.util.find_spec(f'solov2.{name}') is None:   # serve: its branch
            continue
        module = importlib.import_module(f'solov2.{name}')
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):   # convert: its listing
            module.main(['--help'])
        flags.update(re.findall(r'(?<![\w-])(--[a-z][\w-]*)', shown.getvalue()))
    assert {'--weights', '--opt', '--output'} <= flags
    return flags


def test_a_library_error_names_the_parameter_to_python_callers_and_the_flag_on_the_command_line(tmp_path, capsys):
    with pytest.raises(InputError) as info:
        Segmenter(weights=str(tmp_path))
    assert str(info.value).startswith(f"weights='{tmp_path}' is a folder") and '--' not in str(info.value)
    assert demo.main(['--weights', str(tmp_path), '--output', str(tmp_path / 'o')]) == 2
    assert capsys.readouterr().err == f'error: --weights {tmp_path} is a folder — give the .pdparams file ' \
                                      '(there is none in it)\n'


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


def test_library_log_lines_show_the_flags(capsys):
    def main(argv):
        logging.getLogger('solov2.model.training.run').info('%s: no checkpoint in %s yet (%s)', param('resume', 'auto'),
                                                            'x%', InputError('pick ', param('output')))
        return 0
    assert command(main)([]) == 0
    assert capsys.readouterr().out == '--resume auto: no checkpoint in x% yet (pick --output)\n'


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


def test_the_installed_names_are_the_console_commands_that_run_the_scripts():
    """Each checkout script's installed words (cli.INSTALLED) are the ``solov2`` command that runs
    the script's module (tools/main.py); the scripts at the top are tools/'s."""
    by_module = commands_by_module()
    for script, words in INSTALLED.items():
        module = script[:-3].replace('/', '.')
        if module in by_module:
            assert words == by_module[module], script
    for script in ('demo.py', 'train.py', 'eval.py'):
        assert INSTALLED[script] == INSTALLED['tools/' + script] == 'solov2 ' + script[:-3]
    scripts = [f'tools/{p.name}' for p in (REPO_DIR / 'tools').glob('*.py')
               if p.name != 'main.py' and re.search(r'^def main\(', p.read_text(), re.M)]
    scripts += [f'convert/{p.name}' for p in (REPO_DIR / 'convert').glob('*2p*.py')]
    assert len(scripts) >= 17 and all(INSTALLED[script].startswith('solov2 ') for script in scripts), scripts


def test_run_installed_the_help_errors_and_log_lines_name_the_installed_commands(monkeypatch, capsys):
    """From a checkout the words stay (python tools/weights.py); started as an installed
    console command (tools/main.py sets sys.argv[0] to solov2 weights), the help, an argument error, the error
    line and the log lines name the console commands and the shipped model by its name."""
    def main(argv):
        logging.getLogger('solov2.convert.zoo').info('or convert it by hand with convert/ppdet2paddle.py')
        raise InputError('weights/shapes_r18.pdparams is not here: python tools/weights.py lists the names')

    for argv0, words in (('tools/weights.py', ('python tools/weights.py', 'convert/ppdet2paddle.py',
                                               'weights/shapes_r18.pdparams', 'tools/cache.py')),
                         ('solov2 weights', ('solov2 weights', 'solov2 convert ppdet', 'shipped/shapes_r18',
                                             'solov2 cache'))):
        monkeypatch.setattr(sys, 'argv', [argv0])
        with pytest.raises(SystemExit):
            weights.main(['--help'])
        shown = ' '.join(capsys.readouterr().out.split())
        assert shown.startswith(f'usage: {argv0.rsplit("/", 1)[-1]} ') and f' {words[3]} shows and prunes' in shown
        with pytest.raises(SystemExit):
            weights.main(['get'])
        assert f'get needs one or more names ({words[0]} lists them)' in capsys.readouterr().err
        with pytest.raises(SystemExit):
            demo.main(['--help'])
        assert f'(default: the shipped model {words[2]})' in ' '.join(capsys.readouterr().out.split())
        assert command(main)([]) == 2
        out, err = capsys.readouterr()
        assert out == f'or convert it by hand with {words[1]}\n'
        assert err == f'error: {words[2]} is not here: {words[0]} lists the names\n'
