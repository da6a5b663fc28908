"""An editor's go-to-definition (jedi, behind many editors) follows the toolkit's imports from
a plain checkout, as Python does: every ``solov2.*`` import of a sample across the repository's
Python files, and the public API's names, land in a file of this repository. (The type
checker's view is CI's pyright step, .ci/run.)"""
import ast
import re

import jedi
import pytest

from tests.helpers import REPO_DIR
from tests.test_layout import tracked_python_files

PROJECT = jedi.Project(REPO_DIR)   # an editor opened at the checkout
SAMPLE = 200        # of about 1,600 imports: all of them take about 40 s on two busy cores


def last_letter(line: str, module: str) -> int:
    """The column of the last letter of the dotted name ``module`` in ``line``."""
    return re.search(re.escape(module) + r'(?![\w.])', line).end() - 1


def toolkit_imports():
    """(file, line, column) of each ``solov2.*`` module that the repository's Python files
    import (``import solov2.a.b``, ``from solov2.a.b import name``; the column of the module
    name's last letter)."""
    found = []
    for path in tracked_python_files():
        source = (REPO_DIR / path).read_text(encoding='utf-8')
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            modules = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [
                alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found += [(path, node.lineno, last_letter(lines[node.lineno - 1], module))
                      for module in modules if module.split('.')[0] == 'solov2']
    return found


def landing(path: str, line: int, column: int):
    """Where jedi's go-to-definition, following imports, takes the name at ``line``,
    ``column`` of the file ``path``, relative to the repository (None outside it)."""
    file = REPO_DIR / path
    script = jedi.Script(file.read_text(encoding='utf-8'), path=file, project=PROJECT)
    found = script.goto(line, column, follow_imports=True)
    target = found[0].module_path.resolve() if found and found[0].module_path else None
    return str(target.relative_to(REPO_DIR)) if target and REPO_DIR in target.parents else None


def test_jedi_follows_a_sample_of_the_toolkit_s_imports_across_every_folder():
    everything = toolkit_imports()
    by_folder = {}
    for found in everything:
        by_folder.setdefault(found[0].split('/')[0], []).append(found)
    assert set(by_folder) >= {'solov2', 'config', 'data', 'model', 'convert', 'tools', 'tests', 'demo.py', 'train.py',
                              'eval.py'}
    sample = [found for imports in by_folder.values() for found in imports[::max(1, len(everything) // SAMPLE)]]
    lost = [f'{path}:{line}:{column}' for path, line, column in sample if landing(path, line, column) is None]
    assert not lost, f'{len(lost)} of {len(sample)} imports lead jedi outside the repository or nowhere: {lost[:10]}'


@pytest.mark.parametrize('name, module', [('Segmenter', 'api/segmenter.py'),
                                          ('Instances', 'api/instances.py'),
                                          ('InputError', 'core/errors.py')])
def test_jedi_takes_the_public_api_s_names_to_their_definitions(name, module):
    source = f'from solov2 import {name}\n{name}\n'
    found = jedi.Script(source, path=REPO_DIR / 'example.py', project=PROJECT).goto(
        2, 0, follow_imports=True)
    assert [(str(d.module_path.resolve().relative_to(REPO_DIR)), d.type) for d in found] == [(module, 'class')]
