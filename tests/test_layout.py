"""The architecture as the README draws it: imports flow config -> data -> model (the
network) -> convert (the converters' library) | model.training | model.inference -> solov2.api
-> solov2.serving (the HTTP service) -> the commands (demo.py, train.py, eval.py, tools/ and their
shared glue tools/cli.py; convert/*2paddle.py hand their line to tools/convert.py through the
checkout's convert/_bootstrap), and nothing reads outside the repository."""
import ast
import re

import pytest

from tests.helpers import REPO_DIR

PACKAGE = 'solov2'
SUBPACKAGES = ('core', 'config', 'data', 'model', 'convert', 'api', 'serving', 'tools')
# (files whose path matches this pattern, first-party modules they must not import; all under solov2.)
RULES = [
    ('core/', ('config', 'data', 'model', 'convert', 'solov2.api', 'solov2.serving', 'tools')),  # under all
    ('config/', ('data', 'model', 'convert', 'solov2.api', 'solov2.serving', 'tools')),
    ('data/', ('model', 'convert', 'solov2.api', 'solov2.serving', 'tools')),
    ('model/training/', ('model.inference', 'solov2.api', 'solov2.serving', 'convert', 'tools')),
    ('model/inference/', ('model.training', 'solov2.api', 'solov2.serving', 'convert', 'tools')),
    (r'model/[^/]+\.py$', ('solov2.api', 'solov2.serving', 'convert', 'tools')),   # the network files
    ('api/', ('solov2.serving', 'tools')),
    ('serving/', ('tools',)),      # the HTTP service: above solov2.api, below its command
    # the package solov2.convert; its scripts' bootstrap, which the wheel leaves out, hands them to tools/convert.py
    ('convert/(?!_bootstrap/)', ('model.training', 'model.inference', 'solov2.api', 'solov2.serving', 'tools')),
    # the wheel never needs the workshop
    (r'(solov2|core|config|data|model|convert|api|serving)/|tools/(?!dev/)', ('tools.dev',)),
]
SKIPPED_DIRS = {'.git', '__pycache__', 'output', 'datasets', 'weights', 'export', 'out', 'build'}


def project_files(*patterns: str):
    """Paths (relative, with '/') of the repository's files matching ``patterns``, outside
    hidden, cache and output folders (CI runs on a copy without .git, so no git here)."""
    found = set()
    for pattern in patterns:
        for path in REPO_DIR.rglob(pattern):
            parts = path.relative_to(REPO_DIR).parts
            if path.is_file() and not any(part in SKIPPED_DIRS or part.startswith('.') and part != '.ci'
                                          for part in parts[:-1]):
                found.add('/'.join(parts))
    return sorted(found)


def tracked_python_files():
    return project_files('*.py')


NETWORK_FILES = [f for f in tracked_python_files() if f.startswith('model/') and f.count('/') == 1]


def file_package(path: str) -> list:
    """The package (as a list of names) that the relative imports of the file ``path`` start
    from: its folder, under ``solov2.`` for the toolkit's folders."""
    package = path.split('/')[:-1]
    return [PACKAGE] + package if package and package[0] in SUBPACKAGES else package


def imports_in(source: str, path: str):
    """(module, names) of each import in the code ``source`` of the file ``path``, at module
    level or inside functions (a lazy import is a dependency all the same), relative imports
    resolved: ``import a.b`` gives ('a.b', []), ``from a import b, c`` ('a', ['b', 'c'])."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = file_package(path)[:len(file_package(path)) - node.level + 1] if node.level else []
            yield '.'.join(base + ([node.module] if node.module else [])), [
                alias.name for alias in node.names if alias.name != '*']


def modules_in(source: str, path: str):
    """Every module the code ``source`` of the file ``path`` imports (``imports_in``), ``from
    package import name`` giving both the package and ``package.name`` (a submodule, or a name in it)."""
    for module, names in imports_in(source, path):
        yield module
        yield from (f'{module}.{name}' for name in names)


def imported_modules(path: str):
    """Every module a file of the repository imports (``modules_in``)."""
    yield from modules_in((REPO_DIR / path).read_text(), path)


def _under(module: str, package: str) -> bool:
    """Whether ``module`` is the toolkit's ``package`` (given without ``solov2.``) or inside it;
    third-party names (``ppdet``, ...) are matched as given."""
    if package.split('.')[0] in SUBPACKAGES:
        package = f'{PACKAGE}.{package}'
    return module == package or module.startswith(package + '.')


def test_relative_imports_are_resolved_and_held_to_the_rules():
    source = 'from . import pipeline\nfrom .backend import Backend\nfrom ...api import segmenter\n'
    found = set(modules_in(source, 'model/inference/new.py'))
    assert {'solov2.model.inference.pipeline', 'solov2.model.inference.backend', 'solov2.api',
            'solov2.api.segmenter'} <= found
    forbidden = dict(RULES)['model/inference/']
    assert [module for module in found if any(_under(module, f) for f in forbidden)]


@pytest.mark.parametrize('prefix, forbidden', RULES)
def test_imports_flow_one_way(prefix, forbidden):
    files = [path for path in tracked_python_files() if re.match(prefix, path)]
    bad = [(path, module) for path in files for module in imported_modules(path)
           if any(_under(module, f) for f in forbidden)]
    assert files and not bad, bad


def module_file(module: str):
    """The file of the toolkit's ``module`` (``solov2.model.inference``: model/inference/__init__.py,
    ``solov2.core.cache``: core/cache.py); None for a name that is no module of it."""
    parts = module.split('.')
    folder = '/'.join(parts[1:] if parts[1:2] and parts[1] in SUBPACKAGES else parts)
    return next((file for file in (f'{folder}.py', f'{folder}/__init__.py')
                 if parts[0] == PACKAGE and (REPO_DIR / file).is_file()), None)


def imported_files(path: str, source: str = ''):
    """The toolkit's files that the file ``path`` (its code: ``source``, default read) imports:
    ``from package import name`` is the file of ``package.name`` where that is a module, else
    the package's."""
    for module, names in imports_in(source or (REPO_DIR / path).read_text(), path):
        for found in [module_file(f'{module}.{name}') or module_file(module) for name in names] or [
                module_file(module)]:
            if found and found != path:
                yield found


def a_cycle(graph: dict) -> list:
    """One cycle of the directed ``graph`` ({node: nodes it points to}) as [a, b, ..., a]; [] for none."""
    done, chain = set(), []

    def walk(node) -> list:
        if node in chain:
            return chain[chain.index(node):] + [node]
        if node not in done:
            chain.append(node)
            for cycle in (walk(next_node) for next_node in sorted(graph.get(node, ()))):
                if cycle:
                    return cycle
            done.add(chain.pop())
        return []
    return next((cycle for cycle in map(walk, sorted(graph)) if cycle), [])


def test_a_lazy_import_is_an_edge_and_a_cycle_is_found():
    lazy = 'def run():\n    from solov2.model.inference import auto_backend, Backend\n'
    assert set(imported_files('model/inference/x.py', lazy)) == {'model/inference/auto_backend.py',
                                                                 'model/inference/__init__.py'}
    assert a_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a', 'd'}}) == ['a', 'b', 'c', 'a']
    assert a_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) == []


def test_no_import_circle_between_files():
    """The toolkit's files (the product, the commands and the workshop; not tests/) import one
    another without a circle, lazy imports inside functions included: each layer's files form
    a chain too, so that a module can be read, tested and moved after what it imports."""
    files = [path for path in tracked_python_files() if not path.startswith('tests/')]
    cycle = a_cycle({path: set(imported_files(path)) for path in files})
    assert files and not cycle, 'an import circle: ' + ' -> '.join(cycle)


def test_every_project_import_goes_through_the_one_package_name():
    """A host program's own ``config``, ``model`` or ``data`` must never be picked up: the
    toolkit imports itself only as ``solov2.*`` (tests may also import ``tests.*``)."""
    bad = [(path, module) for path in tracked_python_files() for module in imported_modules(path)
           if module.split('.')[0] in SUBPACKAGES]
    assert tracked_python_files() and not bad, bad


CONVERTER_TABLES = re.compile(r'solov2\.convert\.(\w+_)?names$')     # a family's rename table
CONVERTER_MACHINERY = {'solov2.convert.common': {'convert', 'apply_table'}}   # what a Converter drives


def converter_internals(path: str):
    """The converters' internals a file imports: a family's rename table or the machinery under a
    ``Converter`` (outside convert/, a family is used through its Converter in convert/families.py,
    with ``convert_file``, so each family converts one way)."""
    for node in ast.walk(ast.parse((REPO_DIR / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = {alias.name for alias in node.names}
            modules = [node.module] + [f'{node.module}.{name}' for name in names]
            yield from (module for module in modules if CONVERTER_TABLES.match(module))
            yield from (f'{node.module}.{name}' for name in names & CONVERTER_MACHINERY.get(node.module, set()))
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if CONVERTER_TABLES.match(alias.name))


def test_outside_the_converters_a_family_converts_through_its_converter():
    files = [path for path in tracked_python_files() if not path.startswith(('convert/', 'tests/'))]
    bad = [(path, module) for path in files for module in converter_internals(path)]
    assert files and not bad, bad


def library_files():
    """The library: solov2/ (the name), core/, config/, data/, model/, convert/, api/ and serving/,
    without the commands' entry points there (``python -m solov2``, the scripts' bootstraps)."""
    return [path for path in tracked_python_files()
            if path.startswith(('solov2/', 'core/', 'config/', 'data/', 'model/', 'convert/', 'api/', 'serving/'))
            and path != 'solov2/__main__.py' and '/_bootstrap/' not in path]


def console_calls(path: str):
    """``print(...)``, ``exit``/``sys.exit(...)`` calls and argparse imports in a file."""
    for node in ast.walk(ast.parse((REPO_DIR / path).read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ''
            if name in ('print', 'exit'):      # os._exit in a loader worker whose parent died is not a console exit
                yield f'{name}() at line {node.lineno}'
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or '']
            if 'argparse' in names:
                yield f'import argparse at line {node.lineno}'


def test_the_library_never_prints_exits_or_parses_arguments():
    """Library code takes explicit parameters and reports through logging and exceptions;
    only the commands talk to the console (tools/cli.py)."""
    bad = [(path, call) for path in library_files() for call in console_calls(path)]
    assert library_files() and not bad, bad


def test_the_network_imports_neither_training_nor_inference():
    bad = [(path, module) for path in NETWORK_FILES for module in imported_modules(path)
           if _under(module, 'model.training') or _under(module, 'model.inference')]
    assert NETWORK_FILES and not bad, bad


REFERENCE_RUNNERS = ('tools/dev/reference/', 'tools/dev/benchmark.py')    # PaddleDetection as the yardstick


def test_product_and_tools_never_import_tests_and_only_references_import_ppdet():
    bad = []
    for path in tracked_python_files():
        if path.startswith('tests/'):
            continue
        for module in imported_modules(path):
            if _under(module, 'tests') or (_under(module, 'ppdet') and not path.startswith(REFERENCE_RUNNERS)):
                bad.append((path, module))
    assert not bad, bad


def reads_outside(path: str, text: str) -> bool:
    """Whether the file ``path`` names ../shared or a ``parents[N]`` of its own path above the
    repository's root (``tools/dev/x.py``'s ``parents[2]`` is the root, ``model/x.py``'s is not)."""
    return '../shared' in text or any(int(n) > path.count('/') for n in re.findall(r'parents\[(\d+)\]', text))


def test_nothing_reads_outside_the_repository():
    assert reads_outside('model/x.py', 'parents[2]') and not reads_outside('tools/dev/x.py', 'parents[2]')
    files = project_files('*.py', '*.toml', '*.ini', '*.cfg') + project_files('.ci/*')
    hits = [path for path in files if path != 'tests/test_layout.py'
            and reads_outside(path, (REPO_DIR / path).read_text(errors='replace'))]
    assert files and not hits, hits
