"""The documentation runs as written: every ```python block of README.md, CONTRIBUTING.md and docs/*.md is
executed and names the shipped files as installed (not by a checkout's paths), and every
relative link between them leads to a file and heading that exist.

Each block runs in its own subprocess, in page order, from a stand-in for the repository
root: a temporary folder whose entries link to the checkout's, so what a block writes
(``output/``, ``export/``, ``datasets/``) never lands in the checkout. That folder holds a
small synthetic shapes dataset at ``datasets/shapes`` (what ``python
tools/make_shapes_dataset.py --out datasets/shapes`` makes, fewer images), and
``$SOLOV2_CACHE`` points at its ``output/solov2-cache``, the folder docs/api.md's
``cache_dir`` example names, a link to the test session's cache: the shipped model is
exported once for every block and the other tests (``tests.helpers.shipped_auto_entry``, before
the first block), not again for that example (a first
export's progress is tests/api/test_segmenter.py's). A
block right after an HTML comment ``<!-- not-run: REASON -->`` is skipped with that reason
(the skips are listed by pytest -ra); so is one after ``<!-- served: WHERE -->``, which WHERE runs
against a service it starts (docs/serving.md's calls).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.core.paths import CACHE_ENV
from solov2.model.inference.auto_backend import installed_engines
from solov2.tools.make_shapes_dataset import main as make_shapes_dataset
from tests.helpers import REPO_DIR, shipped_auto_entry

DOC_FILES = [REPO_DIR / 'README.md', REPO_DIR / 'CONTRIBUTING.md', *sorted((REPO_DIR / 'docs').glob('*.md'))]
PYTHON_BLOCK = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL)
ANY_BLOCK = re.compile(r'^```.*?^```', re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r'<!--\s*(?:not-run|served):\s*(.*?)\s*-->\s*$')     # served: run against a service
LINK = re.compile(r'\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6}\s+(.+?)\s*$', re.MULTILINE)
NOT_LINKED = {'.git', 'output', 'export', 'datasets', 'out', '__pycache__', '.pytest_cache'}
BLOCK_TIMEOUT_S = 300
SHARED_CACHE = 'output/solov2-cache'     # $SOLOV2_CACHE, and docs/api.md's cache_dir example
# a relative path into weights/ or images/, quoted or not, or the quoted folder 'images'
CHECKOUT_PATH = re.compile(r"""(?<![\w/.{}-])(?:\./)?((?:weights|images)/[\w.-]*)|(?<=['"])(?:\./)?(images)(?=['"])""")
SHIPPED = {Path(SHIPPED_WEIGHTS).resolve(), Path(SHIPPED_WEIGHTS).with_suffix('.json').resolve(),
           Path(SAMPLE_IMAGES).resolve(), *Path(SAMPLE_IMAGES).resolve().iterdir()}   # in the checkout


def doc_name(path: Path) -> str:
    return path.relative_to(REPO_DIR).as_posix()


def python_blocks():
    """(page, first line, code, not-run reason or None) of every ```python block, page order."""
    blocks = []
    for path in DOC_FILES:
        text = path.read_text(encoding='utf-8')
        for match in PYTHON_BLOCK.finditer(text):
            line_before = text[:match.start()].rstrip('\n').rsplit('\n', 1)[-1]
            mark = NOT_RUN.search(line_before)
            line = text.count('\n', 0, match.start()) + 1
            blocks.append((doc_name(path), line, match.group(1), mark.group(1) if mark else None))
    return blocks


BLOCKS = python_blocks()


@pytest.fixture(scope='module')
def docs_root(tmp_path_factory):
    """A stand-in repository root with the shapes dataset; yields (root, environment)."""
    root = tmp_path_factory.mktemp('docs_root')
    for entry in REPO_DIR.iterdir():
        if entry.name not in NOT_LINKED:
            (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (root / SHARED_CACHE).parent.mkdir()
    (root / SHARED_CACHE).symlink_to(os.environ[CACHE_ENV], target_is_directory=True)   # the session's
    env = {**os.environ, CACHE_ENV: str(root / SHARED_CACHE), 'PYTHONPATH': str(root)}
    if installed_engines():
        shipped_auto_entry()        # made once a run: a block's Segmenter opens it, as a user's second run does
    assert make_shapes_dataset(['--out', str(root / 'datasets' / 'shapes'), '--train', '8', '--val', '4']) == 0
    return root, env


@pytest.mark.parametrize('page, line, code, reason', BLOCKS, ids=[f'{b[0]}:{b[1]}' for b in BLOCKS])
def test_python_block_runs(docs_root, page, line, code, reason):
    if reason is not None:
        pytest.skip(f'not-run: {reason}')
    root, env = docs_root
    done = subprocess.run([sys.executable, '-c', code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, f'{page}:{line} failed:\n{done.stderr[-3000:]}'


def test_every_page_has_python_and_the_readme_all_runs():
    """The README's Python section exists and none of its blocks is excused; not-run marks
    give a reason."""
    readme = [b for b in BLOCKS if b[0] == 'README.md']
    assert readme, 'README.md has no ```python block'
    assert all(reason is None for *_, reason in readme), 'README.md blocks must all run'
    assert all(reason for *_, reason in BLOCKS if reason is not None), 'a not-run mark needs a reason'
    assert any(b[0] == 'docs/api.md' for b in BLOCKS)


def checkout_paths(code: str) -> list:
    """The shipped files that ``code`` names by their paths in a checkout (``weights/shapes_r18.pdparams``,
    ``images/`` or a sample picture in it), which a folder of a user who ran ``pip install .`` lacks."""
    found = (match[0] for match in CHECKOUT_PATH.finditer(code)
             if (REPO_DIR / match[match.lastindex]).resolve() in SHIPPED)
    return list(dict.fromkeys(found))


def test_python_blocks_name_the_shipped_files_as_installed():
    """Every ```python block, run or not, names the shipped model ``'shipped/shapes_r18'`` and the
    sample pictures through ``SAMPLE_IMAGES``: a checkout's paths fail after ``pip install .``."""
    found = [f'{page}:{line} {paths}' for page, line, code, _ in BLOCKS if (paths := checkout_paths(code))]
    assert not found, ("use 'shipped/shapes_r18' and f'{SAMPLE_IMAGES}/NAME' instead of:\n" + '\n'.join(found))


def test_checkout_paths_finds_the_shipped_files_by_their_checkout_paths():
    code = ("seg = Segmenter('./weights/shapes_r18.pdparams')  # or weights/shapes_r18.json\n"
            "paths = sorted(Path('images').glob('*.jpg')) + ['images/shapes_000023.jpg']; seg.stream('images/')\n")
    assert checkout_paths(code + code) == ['./weights/shapes_r18.pdparams', 'weights/shapes_r18.json', 'images',
                                           'images/shapes_000023.jpg', 'images/']
    installed = ("seg = Segmenter('shipped/shapes_r18'); seg(f'{SAMPLE_IMAGES}/shapes_000023.jpg'); "
                 "evaluate(seg, ann='datasets/shapes/a.json', images='datasets/shapes/images/val')\n"
                 "Segmenter('weights/no_such_file.pdparams'); seg('images/my_photo.jpg')  # 3 images/s\n")
    assert checkout_paths(installed) == []


def heading_anchors(text: str) -> set:
    """GitHub's anchors of the headings of ``text`` (outside code blocks)."""
    anchors = set()
    for title in HEADING.findall(ANY_BLOCK.sub('', text)):
        slug = re.sub(r'[^\w\- ]', '', title.strip().lower()).replace(' ', '-')
        anchors.add(slug)
    return anchors


def relative_links():
    for path in DOC_FILES:
        for target in LINK.findall(ANY_BLOCK.sub('', path.read_text(encoding='utf-8'))):
            if not re.match(r'[a-z]+:', target):
                yield path, target


@pytest.mark.parametrize('path, target', list(relative_links()),
                         ids=[f'{doc_name(p)}->{t}' for p, t in relative_links()])
def test_relative_link_leads_somewhere(path, target):
    file_part, _, anchor = target.partition('#')
    destination = (path.parent / file_part).resolve() if file_part else path
    assert destination.exists(), f'{doc_name(path)}: {target} does not exist'
    if anchor and destination.suffix == '.md':
        assert anchor in heading_anchors(destination.read_text(encoding='utf-8')), \
            f'{doc_name(path)}: no heading for #{anchor} in {destination.name}'
