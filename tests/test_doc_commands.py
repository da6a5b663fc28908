"""The commands of the docs run as written: every project command of a ```bash block of
README.md, CONTRIBUTING.md and docs/*.md (``python demo.py``, ``train.py``, ``eval.py``, ``tools/*.py``,
``convert/*.py``, ``solov2 COMMAND`` and the same under ``paddle.distributed.launch``) runs here, or
the page marks it, just before its block, with why it cannot:
``<!-- not-run: REASON -->`` for the whole block, ``<!-- not-run "TEXT": REASON -->`` for the
commands of the block that contain TEXT. A new command that neither runs nor is marked fails
``test_every_doc_command_runs_or_is_marked``. ``pip install`` lines are checked to name
requirement files that exist; anything else (``python -m pytest``, setting ``L=``) is not a
project command.

The commands run block by block in page order (README.md first), in one stand-in for the
repository root (a temporary folder whose entries link to the checkout's) that holds what
the docs name: small synthetic data (``datasets/shapes``, a COCO-layout set with COCO class
names at ``datasets/coco``, ``coco/`` and ``data/``, labelme folders), ``photos/``, a short
``clip.mp4``, the PaddleDetection file README's converter line converts, and a
``$SOLOV2_CACHE`` that holds every published name the commands that run use as its cache
entry (random weights of the row's config: the download itself is tests/convert/test_zoo.py's,
on a loopback mirror) and the shipped model's ``auto`` export of the test session. What is
changed so that they run in seconds is in two tables, ``SUBSTITUTIONS`` (text of a command
replaced) and ``ADDED`` (options added to a command), each with its reason; a command
identical to one that already ran in the stand-in is not run again. Commands run in this
process through the command's ``main(argv)`` (as tests/test_demo.py and the others call
them), launched ones as subprocesses. Blocks with deployment commands (export, quantize,
onnxruntime or OpenVINO) are marked ``deploy``.
"""
import functools
import importlib
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import cv2
import paddle
import pytest

from solov2.config import CONFIGS
from solov2.convert import zoo
from solov2.convert.published import FAMILIES
from solov2.convert.to_ppdet import to_ppdet
from solov2.core.cache import published_path
from solov2.core.paths import CACHE_ENV, SAMPLE_IMAGES
from solov2.model.build import build_model
from solov2.model.checkpoint import save_checkpoint
from solov2.model.inference.auto_backend import installed_engines
from solov2.tools.convert import run_family
from solov2.tools.main import main as solov2_command
from solov2.tools.make_shapes_dataset import main as make_shapes_dataset
from tests.helpers import REPO_DIR, TINY_TRAINING, make_labelme_folder, shipped_auto_entry
from tests.test_docs import DOC_FILES, NOT_LINKED, doc_name

BASH_BLOCK = re.compile(r'^```bash\n(.*?)^```', re.MULTILINE | re.DOTALL)
VARIABLE = re.compile(r'[A-Z][A-Z0-9_]*=.*')      # NAME=value
MARK = re.compile(r'^<!--\s*not-run(?:\s+"([^"]+)")?:\s*(.*?)\s*-->$')
COCO_NAMES = ('person', 'bicycle', 'car', 'motorcycle')        # the shapes set's 4 classes, renamed
TINY_SHAPES = '--train 12 --val 2 --size 128'    # 3 iterations an epoch for 2 processes of batch 2
SMALL = ['--opt', 'test_short=128', 'test_max=128']
REAL_SIZE = 'a real-size model with random weights: the Paddle model at 128 px, no export'

# (text of a command, what runs instead, why)
SUBSTITUTIONS = [
    ('--max-minutes 30', '--max-iters 4', 'a training run of seconds'),
    ('make_shapes_dataset.py --out datasets/shapes', 'make_shapes_dataset.py --out datasets/shapes ' + TINY_SHAPES,
     'a tiny shapes set, the one the fixture makes'),
    ('python tools/cache.py clear', 'SOLOV2_CACHE=output/another-cache python tools/cache.py clear',
     'clearing another cache than the one the next commands read (the listing and pruning run on it)'),
]
# (a command that matches this, options added unless it gives them, why); --opt values join its own
ADDED = [
    (r'train\.py', ['--opt', *TINY_TRAINING], 'training in seconds: 128 px, batch 2, two epochs of the tiny set'),
    (r'train\.py.*pretrained=', ['--max-iters', '1', '--opt', 'num_grids=(20,16,12,8,6)'],
     "a real-size model: one iteration, on config 9's grids (the head's cost is per grid cell, whatever the "
     'picture size; the grids shape no tensor, so what loads from the start weights is the same)'),
    (r'train\.py.*--resume', ['--max-iters', '6'],
     "two iterations after where the run before stopped (its --max-iters 4), not the rest of TINY_TRAINING's epochs"),
    (r'train\.py(?!.*--resume)', ['--overwrite'],
     'the pages show other ways to the same run folder: each starts anew where another left its run'),
    (r'(demo|eval)\.py.*(ppdet/|mmdet/|enhance\.pdparams|--config=3)', ['--backend', 'dygraph', *SMALL], REAL_SIZE),
    (r'demo\.py', ['--warmup', '0'], 'no untimed warm-up runs: they change the speed line, not what is done '
     '(tests/test_demo.py runs with them)'),
    (r'(demo|eval)\.py.*output/', ['--backend', 'dygraph'],
     "a model trained here: the Paddle model, no export (auto's export: tests/model/inference/test_openvino.py)"),
]
WRITTEN = {'weights', 'data'}     # checkout folders the docs write into (a converter's output, your data/)
DEPLOY = re.compile(r'export_model\.py|quantize\.py|--backend (onnx|openvino|inference)|--precision|--format')


@dataclass
class Command:
    """One command of a bash block: its text as the page gives it (continuations joined,
    comment dropped), its words after ``$L``-style variables, and a not-run reason."""
    text: str
    words: List[str]
    reason: Optional[str] = None

    @property
    def kind(self) -> str:
        """'install' (pip), 'script' (python X.py), 'launch' (paddle.distributed.launch X.py),
        'installed' (solov2 COMMAND) or 'other'."""
        words = list(self.words)
        while words and VARIABLE.fullmatch(words[0]):       # a VAR=value prefix
            words.pop(0)
        if not words:
            return 'other'
        if words[0] == 'pip':
            return 'install'
        if words[0] == 'solov2':
            return 'installed'
        if words[0] not in ('python', 'python3'):
            return 'other'
        rest = _without_warning_options(words[1:])
        if rest[:2] == ['-m', 'paddle.distributed.launch']:
            return 'launch'
        return 'script' if rest and rest[0].endswith('.py') else 'other'


@dataclass
class Block:
    page: str
    line: int
    commands: List[Command] = field(default_factory=list)
    marks: List[tuple] = field(default_factory=list)       # (TEXT or None, reason)

    @property
    def id(self) -> str:
        return f'{self.page}:{self.line}'


def _without_warning_options(words):
    while words[:1] == ['-W']:
        words = words[2:]
    return words


def _marks_before(text: str, start: int) -> list:
    """The not-run marks of the HTML comment lines right above ``start``."""
    marks = []
    for line in reversed(text[:start].rstrip('\n').split('\n')):
        found = MARK.match(line.strip())
        if not found:
            break
        marks.append(found.groups())
    return marks


def _commands(body: str) -> List[Command]:
    """The commands of a bash block (``&&`` parts too), ``$NAME`` of a variable set in it expanded."""
    variables, commands = {}, []
    for logical in body.replace('\\\n', ' ').splitlines():
        words = shlex.split(logical, comments=True)
        if len(words) == 1 and VARIABLE.fullmatch(words[0]):
            name, value = words[0].split('=', 1)
            variables[name] = shlex.split(value)
            continue
        while words:
            part = words[:words.index('&&')] if '&&' in words else words
            words = words[len(part) + 1:]
            expanded = sum((variables.get(w[1:], [w]) if w.startswith('$') else [w] for w in part), [])
            commands.append(Command(' '.join(part), expanded))
    return commands


def bash_blocks() -> List[Block]:
    """Every ```bash block of README.md, CONTRIBUTING.md and docs/*.md, page order, with its commands and marks."""
    blocks = []
    for path in DOC_FILES:
        text = path.read_text(encoding='utf-8')
        for match in BASH_BLOCK.finditer(text):
            block = Block(doc_name(path), text.count('\n', 0, match.start()) + 1, _commands(match.group(1)),
                          _marks_before(text, match.start()))
            for command in block.commands:
                reasons = [why for what, why in block.marks if what is None or what in command.text]
                command.reason = reasons[0] if reasons else None
            blocks.append(block)
    return blocks


BLOCKS = bash_blocks()
PROJECT = ('script', 'launch', 'installed')


def _needs_deploy(block: Block) -> bool:
    return any(DEPLOY.search(c.text) for c in block.commands if c.kind in PROJECT and not c.reason)


def test_commands_are_in_bash_blocks():
    """A project command in a code block of another kind (```sh, ```console, a bare ```) would
    escape the test below: commands are written in ```bash blocks."""
    fence = re.compile(r'^```(\w*)\n(.*?)^```', re.MULTILINE | re.DOTALL)
    command = re.compile(r'^\s*(python3? [\w/]+\.py|solov2 [a-z])', re.MULTILINE)
    for path in DOC_FILES:
        for match in fence.finditer(path.read_text(encoding='utf-8')):
            assert match.group(1) in ('bash', 'python') or not command.search(match.group(2)), \
                f'{doc_name(path)}: a command in a ```{match.group(1)} block: {command.search(match.group(2))[0]}'


def test_every_doc_command_runs_or_is_marked():
    """Each project command of a bash block runs (a block test below) or its page says why not;
    every mark gives a reason and covers a command; pip lines name files that exist."""
    kinds = {}
    for block in BLOCKS:
        for what, why in block.marks:
            assert why, f'{block.id}: a not-run mark needs a reason'
            assert any(what is None or what in c.text for c in block.commands), f'{block.id}: "{what}" marks nothing'
        for command in block.commands:
            kinds.setdefault(command.kind, []).append(command.text)
            if command.kind == 'install':
                for i, word in enumerate(command.words[:-1]):
                    if word == '-r':
                        assert (REPO_DIR / command.words[i + 1]).is_file(), f'{block.id}: {command.text}'
    assert len(kinds['script']) > 40 and kinds['launch'] and kinds['install'], kinds
    assert all(c.reason is None for b in BLOCKS if b.page == 'README.md' for c in b.commands), \
        'the README commands all run'
    for old, new, why in SUBSTITUTIONS:
        assert why and any(old in c.text for b in BLOCKS for c in b.commands), f'{old!r} replaces nothing'
    for pattern, options, why in ADDED:
        assert why and any(re.search(pattern, c.text) for b in BLOCKS for c in b.commands), f'{pattern!r} adds nothing'


# ---------------------------------------------------------------- the stand-in root
def _coco_layout(shapes: Path, folder: Path, test_dev: bool = False) -> Path:
    """The tiny shapes set ``shapes`` in COCO's layout and class names under ``folder``."""
    (folder / 'annotations').mkdir(parents=True)
    for split in ('train', 'val'):
        data = json.loads((shapes / 'annotations' / f'instances_{split}.json').read_text())
        for category, name in zip(data['categories'], COCO_NAMES):
            category['name'] = name
        (folder / 'annotations' / f'instances_{split}2017.json').write_text(json.dumps(data))
        shutil.copytree(shapes / split, folder / f'{split}2017')
    if test_dev:
        data.pop('annotations')
        (folder / 'annotations' / 'image_info_test-dev2017.json').write_text(json.dumps(data))
        shutil.copytree(shapes / 'val', folder / 'test2017')
    return folder


@functools.lru_cache(maxsize=None)
def initial_state(number: int) -> dict:
    """Config ``number``'s network as built, before training ({name: array}): random weights; built
    once a config (read only: the enhance file and its published row are config 3, two rows config 0)."""
    paddle.seed(number)
    return {name: tensor.numpy() for name, tensor in build_model(CONFIGS[number]).state_dict().items()}


def _published_in_cache(cache: Path) -> None:
    """Every published name the commands that run use, as its cache entry: random weights of its config."""
    names = {w.split('=', 1)[-1] for b in BLOCKS for c in b.commands if not c.reason for w in c.words}
    for name in sorted(names & set(zoo.ROWS)):
        row = zoo.ROWS[name]
        if row.config is None or row.family == 'shipped':
            continue
        cfg, extra = CONFIGS[row.config], {'published': zoo.record(row)}
        state = initial_state(row.config)
        if row.backbone:
            state, extra['part'] = {k: v for k, v in state.items() if k.startswith('backbone.')}, 'backbone'
        save_checkpoint(state, str(published_path(row.name, cache)), row.config, cfg, source=row.url, extra=extra)
        assert zoo.is_cached(row, cache)


def _shipped_export_in(cache: Path) -> None:
    """The test session's ``auto`` export of the shipped model (made once, shared), linked in ``cache``."""
    if installed_engines():
        entry = shipped_auto_entry()
        (cache / entry.name).symlink_to(entry, target_is_directory=True)


def _clip(path: Path, frames: int = 3) -> Path:
    picture = cv2.resize(cv2.imread(str(Path(SAMPLE_IMAGES) / 'shapes_000023.jpg')), (128, 128))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, (128, 128))
    for _ in range(frames):
        writer.write(picture)
    writer.release()
    return path


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    """The stand-in repository root (module docstring)."""
    root = tmp_path_factory.mktemp('doc_commands')
    for entry in REPO_DIR.iterdir():
        if entry.name not in NOT_LINKED | WRITTEN:
            (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for folder in WRITTEN:
        (root / folder).mkdir()
        for entry in (REPO_DIR / folder).iterdir():
            (root / folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    shapes = root / 'datasets' / 'shapes'
    assert make_shapes_dataset(['--out', str(shapes), *TINY_SHAPES.split()]) == 0
    _coco_layout(shapes, root / 'coco', test_dev=True)
    (root / 'datasets' / 'coco').symlink_to(root / 'coco', target_is_directory=True)
    _coco_layout(shapes, root / 'data')
    make_labelme_folder(root / 'labelme' / 'train', 4, ('brick', 'egg'))
    make_labelme_folder(root / 'labelme' / 'val', 2, ('brick', 'egg'), seed=1)
    (root / 'photos').mkdir()
    shutil.copy(Path(SAMPLE_IMAGES) / 'shapes_000042.jpg', root / 'photos')
    _clip(root / 'clip.mp4')
    with open(root / 'solov2_r50_enhance_coco.pdparams', 'wb') as handle:      # as PaddleDetection publishes it
        pickle.dump(to_ppdet(initial_state(3), CONFIGS[3]), handle, protocol=4)
    (root / 'cache').mkdir()
    _published_in_cache(root / 'cache')
    initial_state.cache_clear()       # the real-size weights are written: not kept for the whole run
    _shipped_export_in(root / 'cache')
    return root


@pytest.fixture(scope='module')
def ran():
    """The commands that ran in the stand-in root, as they ran."""
    return set()


# ---------------------------------------------------------------- running a command
def as_run(command: Command) -> List[str]:
    """The words that run for ``command``: ``SUBSTITUTIONS`` then ``ADDED`` applied."""
    text = shlex.join(command.words)
    for old, new, _ in SUBSTITUTIONS:
        text = text.replace(old, new)
    words = shlex.split(text)
    for pattern, options, _ in ADDED:
        if re.search(pattern, text):
            words = _with_options(words, options)
    return words


def _with_options(words: List[str], options: List[str]) -> List[str]:
    """``words`` with each flag of ``options`` it lacks; ``--opt`` values after its own."""
    words, i = list(words), 0
    while i < len(options):
        flag, values = options[i], []
        i += 1
        while i < len(options) and not options[i].startswith('--'):
            values.append(options[i])
            i += 1
        if flag == '--opt' and flag in words:
            at = words.index(flag) + 1
            while at < len(words) and not words[at].startswith('--'):
                at += 1
            words[at:at] = values
        elif flag not in words:
            words += [flag, *values]
    return words


def _main(script: str):
    """The ``main`` of a checkout script (demo.py, tools/x.py, convert/x.py) or of the console command."""
    if script == 'solov2':
        return solov2_command
    families = {path: family for family, path in FAMILIES.items()}
    if script in families:
        return lambda argv: run_family(families[script], argv)
    folder, _, name = script.rpartition('/')
    return importlib.import_module(f'solov2.{folder.replace("/", ".") or "tools"}.{name[:-3]}').main


def run_command(words: List[str], root: Path, monkeypatch) -> str:
    """Run ``words`` in the stand-in ``root``; what it printed when it failed, else ''."""
    env = {}
    while words and VARIABLE.fullmatch(words[0]):
        name, value = words.pop(0).split('=', 1)
        env[name] = value
    if 'paddle.distributed.launch' in words:
        launched = [sys.executable if w.startswith('python') else w for w in words]
        done = subprocess.run(launched, cwd=root, capture_output=True, text=True, timeout=300,
                              env={**os.environ, 'PYTHONPATH': str(root), **env})
        return '' if done.returncode == 0 else done.stdout[-2000:] + done.stderr[-3000:]
    args = _without_warning_options(words[1:]) if words[0].startswith('python') else words
    with monkeypatch.context() as patch:
        patch.setattr(sys, 'argv', list(sys.argv))      # the console command names itself in sys.argv[0]
        for name, value in env.items():
            patch.setenv(name, str(root / value) if '/' in value else value)
        code = _main(args[0])(args[1:])
    return '' if code == 0 else f'exit {code}'


PARAMS = [pytest.param(b, id=b.id, marks=[pytest.mark.deploy] if _needs_deploy(b) else [])
          for b in BLOCKS if any(c.kind in PROJECT for c in b.commands)]


def _bf16_refused(words: List[str], failure: str, err: str) -> bool:
    """Whether ``words`` ask OpenVINO for bf16 on a CPU that has none, and got what deployment.md
    promises there: one line saying so, exit 2 (the doc's command runs on a CPU with bf16)."""
    from openvino import Core

    from solov2.model.inference.openvino_backend import has_bf16
    asked = any(a == '--precision' and b == 'bf16' for a, b in zip(words, words[1:]))
    return asked and not has_bf16(Core()) and failure == 'exit 2' and 'has no bf16 support' in err


@pytest.mark.parametrize('block', PARAMS)
def test_doc_block_runs(block, root, ran, monkeypatch, capsys):
    """Each project command of the block, as ``as_run`` gives it, in the stand-in root."""
    if _needs_deploy(block) and not installed_engines():
        pytest.skip('deploy: needs requirements-deploy.txt')
    monkeypatch.chdir(root)
    monkeypatch.setenv(CACHE_ENV, str(root / 'cache'))
    done = 0
    for command in block.commands:
        if command.kind not in PROJECT or command.reason:
            continue
        words = as_run(command)
        if shlex.join(words) in ran:
            continue
        failure = run_command(words, root, monkeypatch)
        output = capsys.readouterr()
        assert not failure or _bf16_refused(words, failure, output.err), \
            f'{block.id}: {command.text}\nran as: {shlex.join(words)}\n{failure}\n' \
            f'{output.out[-2000:]}{output.err[-2000:]}'
        ran.add(shlex.join(words))
        done += 1
    if not done and all(c.reason for c in block.commands if c.kind in PROJECT):
        pytest.skip('not-run: ' + '; '.join(sorted({c.reason for c in block.commands if c.reason})))
