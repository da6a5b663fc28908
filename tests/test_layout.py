"""The architecture as the README draws it: imports flow config -> data -> model (the
network) -> model.training | model.inference -> scripts, and nothing reads outside the
repository."""
import ast
import subprocess

import pytest

from tests.helpers import REPO_DIR

# (files under this prefix, first-party modules they must not import)
RULES = [
    ('config/', ('data', 'model', 'convert', 'tools')),
    ('data/', ('model', 'convert', 'tools')),
    ('model/training/', ('model.inference', 'convert', 'tools')),
    ('model/inference/', ('model.training', 'convert', 'tools')),
    ('model/', ('convert', 'tools')),
    ('convert/', ('tools', 'model.training', 'model.inference')),
]
NETWORK_FILES = [f for f in subprocess.run(['git', 'ls-files', 'model/*.py'], capture_output=True, text=True,
                                           cwd=REPO_DIR).stdout.split() if f.count('/') == 1]


def tracked_python_files():
    out = subprocess.run(['git', 'ls-files', '*.py'], capture_output=True, text=True, cwd=REPO_DIR, check=True)
    return out.stdout.split()


def imported_modules(path: str):
    """Every module a file imports, at module level or inside functions."""
    tree = ast.parse((REPO_DIR / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + '.')


@pytest.mark.parametrize('prefix, forbidden', RULES)
def test_imports_flow_one_way(prefix, forbidden):
    bad = [(path, module) for path in tracked_python_files() if path.startswith(prefix)
           for module in imported_modules(path) if any(_under(module, f) for f in forbidden)]
    assert not bad, bad


def test_the_network_imports_neither_training_nor_inference():
    bad = [(path, module) for path in NETWORK_FILES for module in imported_modules(path)
           if _under(module, 'model.training') or _under(module, 'model.inference')]
    assert NETWORK_FILES and not bad, bad


REFERENCE_RUNNERS = ('tools/reference/', 'tools/benchmark.py')    # PaddleDetection as the yardstick


def test_product_and_tools_never_import_tests_and_only_references_import_ppdet():
    bad = []
    for path in tracked_python_files():
        if path.startswith('tests/'):
            continue
        for module in imported_modules(path):
            if _under(module, 'tests') or (_under(module, 'ppdet') and not path.startswith(REFERENCE_RUNNERS)):
                bad.append((path, module))
    assert not bad, bad


def test_nothing_reads_outside_the_repository():
    out = subprocess.run(['git', 'grep', '-nE', r'\.\./shared|parents\[2\]', '--', '*.py', '.ci/*', '*.toml',
                          '*.ini', '*.cfg'], capture_output=True, text=True, cwd=REPO_DIR)
    hits = [line for line in out.stdout.splitlines() if not line.startswith('tests/test_layout.py')]
    assert not hits, hits
