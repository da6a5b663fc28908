"""What the contributor's pages name exists: every file, folder and name that docs/architecture.md's
"Where to change what" table points to is there."""
import re
from typing import List

from tests.helpers import REPO_DIR

ARCHITECTURE = REPO_DIR / 'docs' / 'architecture.md'
PATH_TOKEN = re.compile(r'`([\w.<>*/-]*[\w>*]\.py|[\w.<>*/-]+/)(?:::(\w+))?`')
NAME_OF_FILE = re.compile(r"`([\w/.-]+\.py)`'s `(\w+)`")


def where_to_change_what() -> List[str]:
    """The rows of docs/architecture.md's "Where to change what" table."""
    text = ARCHITECTURE.read_text(encoding='utf-8').split('## Where to change what', 1)[1]
    return [line for line in text.split('\n## ', 1)[0].splitlines() if line.startswith('| ') and '---' not in line][1:]


def defines(path: str, name: str) -> bool:
    """Whether the module at ``path`` defines ``name`` at its top level (def, class or assignment)."""
    source = (REPO_DIR / path).read_text(encoding='utf-8')
    return re.search(rf'^(?:def |class ){name}\b|^{name}\s*[:=]', source, re.MULTILINE) is not None


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
    assert missing_in_row('| a | `core/errors.py`, `model/no_backend.py` (`backend.py`), `schema.py::Instance`, '
                          "`data/results.py::records`, `tools/cli.py`'s `FLAG` |") == \
        ['core/errors.py', 'model/no_backend.py', 'backend.py', 'schema.py', 'data/results.py::records',
         "tools/cli.py's FLAG"]


def test_where_to_change_what_names_places_that_exist():
    rows = where_to_change_what()
    assert len(rows) >= 10, rows
    missing = {row.split('|')[1].strip(): found for row in rows if (found := missing_in_row(row))}
    assert not missing, f'docs/architecture.md, Where to change what: {missing}'
