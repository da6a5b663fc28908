"""What the contributor's pages name exists: CONTRIBUTING.md's commands are CI's (``.ci/run``:
the install, the full suite, ruff, pyright) and each test command of its table names paths that
exist and selects tests (``pytest --collect-only``, all in one process: seconds); every file,
folder and name that docs/architecture.md's "Where to change what" table points to is there."""
import json
import re
import shlex
import subprocess
import sys
from typing import List

from tests.helpers import REPO_DIR
from tests.test_doc_commands import BASH_BLOCK

GUIDE = REPO_DIR / 'CONTRIBUTING.md'
ARCHITECTURE = REPO_DIR / 'docs' / 'architecture.md'
CI_LINE = re.compile(r'^(pip install|python -m pytest|ruff|pyright)\b.*$', re.MULTILINE)   # not indented
TABLE_COMMAND = re.compile(r'^\|[^|]*\|\s*`(python -m pytest [^`]*)`', re.MULTILINE)
VALUED = {'-k', '-m', '-n', '--dist', '--deselect', '--ignore'}      # pytest options that take a value
PATH_VALUED = {'--deselect', '--ignore'}
# one pytest.main per command in a process of its own; prints [[exit code, tests selected], ...]
COLLECT = """
import json, sys
import pytest
class Count:
    selected = 0
    def pytest_collection_finish(self, session):
        self.selected = len(session.items)
found = []
for args in json.loads(sys.argv[1]):
    count = Count()
    code = pytest.main([*args, '--collect-only', '-q', '-p', 'no:cacheprovider'], plugins=[count])
    found.append([int(code), count.selected])
print('COLLECTED', json.dumps(found))
"""


def guide_lines() -> List[str]:
    """The lines of CONTRIBUTING.md's ```bash blocks."""
    text = GUIDE.read_text(encoding='utf-8')
    return [line.strip() for block in BASH_BLOCK.findall(text) for line in block.splitlines()]


def test_the_readme_links_the_guide():
    assert '(CONTRIBUTING.md)' in (REPO_DIR / 'README.md').read_text(encoding='utf-8')


def test_the_guide_runs_what_ci_runs():
    """The install, full-suite, ruff and pyright lines of ``.ci/run`` (its main venv's, not
    indented) are lines of the guide's bash blocks, as CI writes them."""
    ci = [match.group(0) for match in CI_LINE.finditer((REPO_DIR / '.ci' / 'run').read_text(encoding='utf-8'))]
    assert {line.split()[0] for line in ci} == {'pip', 'python', 'ruff', 'pyright'}, ci
    missing = [line for line in ci if line not in guide_lines()]
    assert not missing, f"CONTRIBUTING.md lacks .ci/run's lines: {missing}"


def table_commands() -> List[List[str]]:
    """The pytest arguments of each command of the guide's table (``python -m pytest`` dropped)."""
    commands = [shlex.split(found) for found in TABLE_COMMAND.findall(GUIDE.read_text(encoding='utf-8'))]
    return [words[3:] for words in commands]


def named_paths(args: List[str]) -> List[str]:
    """The files and folders ``args`` name: positional paths (node ids' files), --ignore, --deselect."""
    paths, i = [], 0
    while i < len(args):
        if args[i] in VALUED:
            if args[i] in PATH_VALUED:
                paths.append(args[i + 1].split('::')[0])
            i += 2
        else:
            if not args[i].startswith('-'):
                paths.append(args[i].split('::')[0])
            i += 1
    return paths


def test_named_paths():
    assert named_paths(['-q', 'tests/a.py::t', '-k', 'not slow', '--ignore', 'tests/b', '-n', '2', 'tests/c']) == \
        ['tests/a.py', 'tests/b', 'tests/c']


def test_each_area_command_names_paths_that_exist_and_selects_tests():
    """Every command of the table: its paths and the tests its ``-k`` and ``--deselect`` name
    exist (a renamed file, folder or test fails here) and ``--collect-only`` with its selection (``-n`` left out) finds
    at least one test."""
    commands = table_commands()
    assert len(commands) >= 8, commands
    for args in commands:
        missing = [path for path in named_paths(args) if not (REPO_DIR / path).exists()]
        assert not missing, f'{shlex.join(args)}: no {missing}'
        sources = ''.join(path.read_text(encoding='utf-8') for name in named_paths(args)
                          for path in ([REPO_DIR / name] if name.endswith('.py') else (REPO_DIR / name).rglob('*.py')))
        for option, value in zip(args, args[1:]):
            if option in ('-k', '--deselect'):
                test = re.sub(r'\[[^]]*\]', '', value.partition('::')[2] if option == '--deselect' else value)
                names = [name for name in re.findall(r'\w+', test) if name not in ('and', 'or', 'not')]
                assert all(name in sources for name in names), f'{option} {value}: a test it names is not there'
    without_workers = [[a for i, a in enumerate(args) if a != '-n' and args[i - 1:i] != ['-n']] for args in commands]
    done = subprocess.run([sys.executable, '-c', COLLECT, json.dumps(without_workers)], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=600)
    assert 'COLLECTED' in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(done.stdout.rsplit('COLLECTED', 1)[1])
    for args, (code, selected) in zip(commands, found):
        assert code == 0 and selected > 0, f'python -m pytest {shlex.join(args)}: exit {code}, {selected} tests'


# ---------------------------------------------------------------- docs/architecture.md
PATH_TOKEN = re.compile(r'`([\w.<>*/-]*[\w>*]\.py|[\w.<>*/-]+/)(?:::(\w+))?`')
NAME_OF_FILE = re.compile(r"`([\w/.-]+\.py)`'s `(\w+)`")


def where_to_change_what() -> List[str]:
    """The rows of docs/architecture.md's "Where to change what" table."""
    text = ARCHITECTURE.read_text(encoding='utf-8').split('## Where to change what', 1)[1]
    return [line for line in text.split('\n## ', 1)[0].splitlines() if line.startswith('| ') and '---' not in line][1:]


def defines(path: str, name: str) -> bool:
    """Whether the module at ``path`` defines ``name`` at its top level (def, class or assignment)."""
    source = (REPO_DIR / path).read_text(encoding='utf-8')
    return re.search(rf'^(?:def |async def |class ){name}\b|^{name}\s*[:=]', source, re.MULTILINE) is not None


def missing_in_row(row: str) -> List[str]:
    """What a row names that is not there: a path (``<engine>`` a wildcard; a bare file name is
    looked up in the folders of the row's other paths), ``path::name`` or ```path`'s `NAME```."""
    found = PATH_TOKEN.findall(row)
    folders = {path.rsplit('/', 1)[0] for path, _ in found if '/' in path.rstrip('/')}
    missing = []
    for path, name in found:
        pattern = re.sub(r'<\w+>', '*', path)
        places = [pattern] if '/' in pattern else [f'{folder}/{pattern}' for folder in sorted(folders)]
        matches = [hit for place in places for hit in sorted(REPO_DIR.glob(place.rstrip('/')))]
        if not matches:
            missing.append(path)
        elif name and not defines(str(matches[0].relative_to(REPO_DIR)), name):
            missing.append(f'{path}::{name}')
    for path, name in NAME_OF_FILE.findall(row):
        if (REPO_DIR / path).is_file() and not defines(path, name):
            missing.append(f"{path}'s {name}")
    return missing


def test_missing_in_row_finds_what_is_not_there():
    assert missing_in_row("| a | `model/inference/<engine>_backend.py`, `backend.py`, `config/__init__.py`'s "
                          '`CONFIGS`, `data/results.py::instance_records`, `tools/dev/` |') == []
    assert missing_in_row('| a | `core/no_errors.py`, `model/no_backend.py` (`backend.py`), `schema.py::Instance`, '
                          "`data/results.py::records`, `tools/cli.py`'s `FLAG` |") == \
        ['core/no_errors.py', 'model/no_backend.py', 'backend.py', 'schema.py', 'data/results.py::records',
         "tools/cli.py's FLAG"]


def test_where_to_change_what_names_places_that_exist():
    rows = where_to_change_what()
    assert len(rows) >= 10, rows
    missing = {row.split('|')[1].strip(): found for row in rows if (found := missing_in_row(row))}
    assert not missing, f'docs/architecture.md, Where to change what: {missing}'


def test_pyright_checks_the_public_api_and_the_service():
    """CI's and the guide's ``pyright`` covers the package's entry, ``api/`` and ``serving/`` (pyproject.toml)."""
    text = (REPO_DIR / 'pyproject.toml').read_text(encoding='utf-8').split('[tool.pyright]', 1)[1]
    include = re.search(r'^include\s*=\s*\[([^]]*)\]', text, re.MULTILINE)
    assert include and {'solov2/__init__.py', 'api', 'serving'} <= set(re.findall(r'"([^"]+)"', include.group(1)))


# the checks that read the pages (not run them): in the docs' line, and the lists of fields in the lines of
# what declares them (a result field's record and ModelSpec in the API's, ServeSettings in the service's)
DOCS_CHECKS = {'tests/test_docs.py': ['the docs'], 'tests/test_doc_commands.py': ['the docs'],
               'tests/test_contributing.py': ['the docs'],
               'tests/test_doc_lists.py': ['the docs', 'the Python API', 'the service']}


def test_the_docs_checks_run_in_the_lines_they_belong_to():
    rows = {row.split('|')[1].strip(): row for row in GUIDE.read_text(encoding='utf-8').splitlines()
            if TABLE_COMMAND.match(row)}
    for path, areas in DOCS_CHECKS.items():
        for area in areas:
            row = next((row for name, row in rows.items() if name.startswith(area)), None)
            assert row is not None, area
            args = shlex.split(TABLE_COMMAND.match(row).group(1))[3:]
            named = [arg for i, arg in enumerate(args) if arg == path and args[i - 1] not in VALUED]
            assert named, f'CONTRIBUTING.md: the line of {area} does not run {path}'


def test_each_line_says_its_time_within_three_minutes():
    """Each line of the table gives its measured time and load (``N s (load)``), at most 3 minutes."""
    rows = [row for row in GUIDE.read_text(encoding='utf-8').splitlines() if TABLE_COMMAND.match(row)]
    times = [re.search(r'\| (\d+) s \((\d+(?:\.\d+)?)\) \|', row) for row in rows]
    assert rows and all(times), [row[:60] for row, found in zip(rows, times) if not found]
    assert all(int(found.group(1)) <= 180 for found in times if found), [found.group(0) for found in times if found]
