"""tools/main.py, the console command ``solov2``: one line per command in its help, each command
runs its module's ``main`` under the name ``solov2 COMMAND``, and ``python -m solov2`` is the same."""
import re
import subprocess
import sys

import pytest

from solov2.convert import families
from solov2.convert.published import FAMILIES
from solov2.tools import main as solov2
from solov2.tools.main import COMMANDS
from tests.helpers import REPO_DIR


@pytest.fixture(autouse=True)
def own_argv(monkeypatch):
    """The dispatcher names the command it runs in ``sys.argv[0]``: each test on a list of its own, so
    that no later test in this process runs as the installed command."""
    monkeypatch.setattr(sys, 'argv', ['/venv/bin/solov2'])


def test_the_help_lists_every_command_in_one_line(capsys):
    assert solov2.main(['--help']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'usage: solov2 COMMAND [ARGS ...]'
    listed = [line.split()[0] for line in lines if line.startswith('  ')]
    assert listed == list(solov2.COMMANDS)
    assert {'demo', 'train', 'eval', 'export', 'quantize', 'weights', 'cache', 'convert', 'serve'} <= set(listed)
    assert solov2.main(['convert', '-h']) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith('  ')]
    assert listed == ['solo', 'ppdet', 'ppdet-static', 'mmdet', 'paddleclas', 'torchvision', 'to-ppdet']


def test_no_command_is_answered_with_the_list_and_an_unknown_one_in_one_line(capsys):
    assert solov2.main([]) == 2 and 'usage: solov2 COMMAND' in capsys.readouterr().err
    assert solov2.main(['convert', 'caffe']) == 2
    assert capsys.readouterr().err == "error: no command 'caffe' (solov2 convert --help lists them)\n"
    assert solov2.main(['dmeo']) == 2
    assert capsys.readouterr().err == "error: no command 'dmeo', did you mean 'demo'? (solov2 --help lists them)\n"


def _rows():
    """(words, checkout file) of every command and converter: ('solov2 convert ppdet', 'convert/ppdet2paddle.py')."""
    return sorted([(f'solov2 {name}', module.replace('.', '/') + '.py') for name, (module, _) in COMMANDS.items()]
                  + [(f'solov2 convert {family}', script) for family, script in FAMILIES.items()])


@pytest.mark.parametrize('words, path', _rows())
def test_each_command_shows_its_own_help_under_its_words(words, path, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['/venv/bin/solov2'])
    try:
        code = solov2.main([*words.split()[1:], '--help'])      # a listing returns, argparse's help exits
    except SystemExit as done:
        code = done.code
    assert code == 0 and sys.argv[0] == ' '.join(words.split()[:2])
    assert capsys.readouterr().out.startswith(f'usage: {words} ')
    assert (REPO_DIR / path).is_file()


def test_a_converters_help_gives_its_configs_and_points_at_the_docs(capsys):
    with pytest.raises(SystemExit):
        solov2.main(['convert', 'ppdet-static', '--help'])
    out = capsys.readouterr().out
    assert 'solov2_light_r50_vd_fpn_dcn_512_3x (2)' in out and 'docs/checkpoints.md' in out


def test_every_family_but_the_way_back_has_a_converter():
    assert list(families.CONVERTERS) == [family for family in FAMILIES if family != 'to-ppdet']


def test_python_m_solov2_runs_the_same_command(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'solov2', 'convert', 'solo', str(tmp_path / 'none.pth'),
                           str(tmp_path / 'out.pdparams')], capture_output=True, text=True, cwd=REPO_DIR, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith('error: PyTorch checkpoint not found'), done.stderr
    assert 'ccache' not in done.stderr      # tools/cli.py's start-up settings came before Paddle


@pytest.mark.parametrize('words, path', _rows())
def test_a_bad_flag_or_value_is_one_line_in_the_flags_words(words, path, monkeypatch, capsys):
    """An unknown flag, and a word for a number: ``error: ...`` alone on stderr, exit 2 (before: argparse's usage
    block first, 19 lines of it; 'invalid int value')."""
    monkeypatch.setattr(sys, 'argv', ['/venv/bin/solov2'])
    for args in (['--no-such-flag'], ['--threads', 'many']):
        try:
            code = solov2.main([*words.split()[1:], *args])     # a listing's refusal returns, argparse's exits
        except SystemExit as done:
            code = done.code
        err = capsys.readouterr().err
        assert code == 2 and err.startswith('error: ') and err.count('\n') == 1, err
        assert err.endswith((f'({words} --help shows the options)\n', f'({words} --help lists them)\n')), err
        if err.startswith('error: argument --threads'):
            assert err.startswith('error: argument --threads: takes a whole number of at least 0, not many ('), err


def test_no_help_names_a_flag_its_command_does_not_have(monkeypatch, capsys):
    """The options' help of every command names only the command's own flags (before: serve's --no-page said
    'turn off the --page at /', a flag that does not exist)."""
    monkeypatch.setattr(sys, 'argv', ['/venv/bin/solov2'])
    for words, _ in _rows():
        try:
            solov2.main([*words.split()[1:], '--help'])
        except SystemExit:
            pass
        options = capsys.readouterr().out.split('\noptions:\n', 1)[-1].split('\n\n', 1)[0]
        defined = set(re.findall(r'^  (?:-\w, )?(--[\w-]+)', options, re.M))
        options = re.sub(r'(\S+\.py|visualdl|solov2 [\w-]+) --[\w-]+', '', options)   # another program's flags
        named = set(re.findall(r'(?<![\w-])(--[a-z][\w-]*)', options))
        assert named <= defined, (words, named - defined)
