"""What an annotator runs where no Paddle is: in a venv holding only what requirements-core.txt installs
(the package's own dependencies, no Paddle wheel), the annotation tools (labelme2coco, labelstudio2coco,
browse, make-shapes) show their help and convert and draw a labelme folder, and every command that needs
Paddle says so in one line, its help too.

The venv is a plain one (not ``--system-site-packages``) whose site-packages links to the distributions
requirements-core.txt names and what they require, as this interpreter has them installed: built in a
second, offline, the same closure ``pip install -r requirements-core.txt`` resolves (each requirement's
own requirements, environment markers evaluated, extras left out)."""
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from solov2.tools.main import COMMANDS
from tests.helpers import LABELME_SHAPES, REPO_DIR, make_labelme_folder

ANNOTATION_TOOLS = ('labelme2coco', 'labelstudio2coco', 'browse', 'make-shapes')
NEEDS_PADDLE = 'error: PaddlePaddle is not installed: pip install paddlepaddle'


def core_distributions() -> dict:
    """{normalised name: Distribution} of requirements-core.txt's requirements and theirs, installed here."""
    wanted = [Requirement(line.split('#')[0].strip())
              for line in (REPO_DIR / 'requirements-core.txt').read_text().splitlines() if line.split('#')[0].strip()]
    found = {}
    while wanted:
        requirement = wanted.pop()
        name = re.sub(r'[-_.]+', '-', requirement.name).lower()
        if name in found or (requirement.marker and not requirement.marker.evaluate({'extra': ''})):
            continue
        found[name] = metadata.distribution(requirement.name)
        wanted += [Requirement(text) for text in found[name].requires or []]
    return found


@pytest.fixture(scope='module')
def core_python(tmp_path_factory) -> Path:
    """The python of a plain venv holding only requirements-core.txt's closure (no Paddle)."""
    root = tmp_path_factory.mktemp('core_venv')
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(root / 'venv')], check=True, timeout=120)
    python = root / 'venv' / 'bin' / 'python'
    site = Path(subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               capture_output=True, text=True, check=True).stdout.strip())
    for distribution in core_distributions().values():
        where = Path(distribution.locate_file(''))
        tops = {Path(str(file)).parts[0] for file in distribution.files or []} - {'..'}
        for top in tops:
            if (where / top).exists() and not (site / top).exists() and not top.endswith('.pth'):
                (site / top).symlink_to(where / top)
    assert 'paddlepaddle' not in core_distributions() and 'numpy' in core_distributions()
    check = subprocess.run([str(python), '-c', 'import paddle'], capture_output=True, text=True)
    assert check.returncode != 0 and "No module named 'paddle'" in check.stderr
    return python


def run(python: Path, args, cwd: Path) -> subprocess.CompletedProcess:
    """``python args`` from ``cwd`` with the checkout importable (PYTHONPATH), as from a clone."""
    env = {**os.environ, 'PYTHONPATH': str(REPO_DIR)}
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_annotation_tools_show_their_help_without_paddle(core_python, tmp_path):
    for name in ANNOTATION_TOOLS:
        done = run(core_python, ['-m', 'solov2', name, '--help'], tmp_path)
        assert done.returncode == 0 and done.stdout.startswith(f'usage: solov2 {name}'), (name, done.stderr[-3000:])
    done = run(core_python, [str(REPO_DIR / 'tools' / 'labelme2coco.py'), '--help'], tmp_path)   # a clone's script
    assert done.returncode == 0 and 'usage: labelme2coco.py' in done.stdout, done.stderr[-3000:]


def test_a_labelme_folder_converts_and_draws_without_paddle(core_python, tmp_path):
    folder = make_labelme_folder(tmp_path / 'labelme', 3, sorted(LABELME_SHAPES))
    out = tmp_path / 'coco' / 'train.json'
    done = run(core_python, ['-m', 'solov2', 'labelme2coco', str(folder), str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    coco = json.loads(out.read_text())
    assert len(coco['images']) == 3 and coco['annotations']
    done = run(core_python, ['-m', 'solov2', 'browse', str(folder), '--output', str(tmp_path / 'browse')], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / 'browse').glob('*.jpg'))) == 3


def test_every_command_that_needs_paddle_says_so_in_one_line(core_python, tmp_path):
    """Run bare and with --help: the help, or one ``error:`` line (exit 2, no traceback) that names Paddle's install
    wherever the command needs Paddle (``cache`` lists without it; ``serve`` first names its own extra)."""
    answers = {}
    for name in sorted(set(COMMANDS) - set(ANNOTATION_TOOLS)):
        for args in ([], ['--help']):
            done = run(core_python, ['-m', 'solov2', name, *args], tmp_path)
            assert 'Traceback' not in done.stderr and len(done.stderr.strip().splitlines()) <= 1, (name, args,
                                                                                                 done.stderr[-3000:])
            answers[' '.join([name, *args])] = ('help' if done.returncode == 0 and done.stdout.startswith('usage:')
                                                else 'paddle' if done.returncode == 2 and
                                                done.stderr.startswith(NEEDS_PADDLE) else done.stderr or done.stdout)
    assert answers == {'cache': answers['cache'], 'cache --help': 'help', 'weights': 'paddle', 'weights --help': 'help',
                       'serve --help': 'help', 'serve': answers['serve'],
                       **{f'{name}{args}': 'paddle' for name in ('convert', 'demo', 'eval', 'export', 'postprocess-raw',
                                                                 'quantize', 'train') for args in ('', ' --help')}}
    assert re.fullmatch(r'\d+ entries, .*', answers['cache'].splitlines()[-1])
    assert answers['serve'].startswith('error: the service needs its extra')
