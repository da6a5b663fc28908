"""The install routes are one table (``config.install.ROUTES``): README.md's GPU table and Python line,
docs/deployment.md's resolver matrix, pyproject.toml's extras and the requirement files agree with it.
Whether each route resolves on the Pythons it names is ``tools/dev/resolve_routes.py``'s (uv, run by
hand: it needs the package index); here its matrix and verdict, on a stand-in resolver."""
import pytest

from solov2.config.install import NO_PADDLE2ONNX, ROUTES
from solov2.tools.dev import resolve_routes
from tests.helpers import REPO_DIR

PYTHONS = resolve_routes.PYTHONS


def _table(text: str, header: str) -> list:
    """The lines of the Markdown table that starts with the line ``header``."""
    lines = text.splitlines()
    start = lines.index(header)
    end = next((index for index in range(start, len(lines)) if not lines[index].startswith('|')), len(lines))
    return lines[start:end]


def test_the_readme_gpu_table_is_the_routes():
    """Each GPU route a row: who it is for, the Pythons it resolves on, its command; the CPU route's
    Pythons in the README's Python line."""
    rows = _table((REPO_DIR / 'README.md').read_text(), '| GPU, CUDA (NVIDIA driver) | Python | command |')[2:]
    assert rows == [f'| {route.device} | {route.python_range()} | `{route.command()}` |'
                    for route in ROUTES if route.device != 'CPU']
    cpu = next(route for route in ROUTES if route.device == 'CPU')
    assert f'Python {cpu.python_range()} ' in (REPO_DIR / 'README.md').read_text()


def test_the_deployment_page_matrix_is_the_routes():
    """docs/deployment.md's matrix: per route (its extra and Paddle), yes on the Pythons it names, no
    elsewhere, with the resolver's command beside it."""
    text = (REPO_DIR / 'docs/deployment.md').read_text()
    header = '| route | ' + ' | '.join(f'3.{python}' for python in PYTHONS) + ' |'
    rows = _table(text, header)[2:]
    expected = []
    for route in ROUTES:
        low, high = route.pythons
        cells = ' | '.join('yes' if low <= python <= high else 'no' for python in PYTHONS)
        expected.append(f'| {route.device}: `{route.paddle}`' + (f' ({route.cuda})' if route.cuda else '')
                        + f' + `.[{route.extra}]` | {cells} |')
    assert rows == expected
    assert 'python tools/dev/resolve_routes.py' in text


def test_every_route_extra_is_pyprojects_and_every_deployment_file_is_a_routes():
    """pyproject.toml's floor is the lowest route's; each route's extra names requirement files that
    exist; each deployment requirement file is in some route's extra."""
    pyproject = (REPO_DIR / 'pyproject.toml').read_text()
    assert f'requires-python = ">=3.{min(route.pythons[0] for route in ROUTES)}"' in pyproject
    used = set()
    for route in ROUTES:
        files = resolve_routes.extra_files(route.extra)
        assert files and all((REPO_DIR / name).is_file() for name in files), route
        used.update(files)
    assert {path.name for path in REPO_DIR.glob('requirements-deploy*.txt')} == used
    with pytest.raises(ValueError, match='no extra'):
        resolve_routes.extra_files('deploy-nothing')


def test_paddle2onnx_and_faster_coco_eval_are_left_out_where_they_have_no_wheel():
    """Every deployment file's paddle2onnx stops before ``NO_PADDLE2ONNX`` (no cp313 wheel: the extras
    install there, export needs an older Python) and faster-coco-eval starts at 3.10 (none for cp39)."""
    marker = f'python_version < "{NO_PADDLE2ONNX[0]}.{NO_PADDLE2ONNX[1]}"'
    for path in REPO_DIR.glob('requirements-deploy*.txt'):
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith('#')]
        for line in lines:
            if line.startswith('paddle2onnx'):
                assert line.endswith(f'; {marker}'), (path.name, line)
            if line.startswith('faster-coco-eval'):
                assert line.endswith('; python_version >= "3.10"'), (path.name, line)


def _stand_in(refused: dict, unreached: tuple = ()):
    """A ``Compile`` refusing Python 3.X where ``refused`` {requirement text in the input: minors} says, and
    failing to reach the ``unreached`` indexes; records what it was asked."""
    asked = []

    def compile(requirements: str, options) -> tuple:
        python = int(options[options.index('--python-version') + 1].split('.')[1])
        asked.append((requirements, list(options)))
        indexes = [options[index + 1] for index, word in enumerate(options) if word == '--extra-index-url']
        if any(index.startswith(prefix) for index in indexes for prefix in unreached):
            return False, 'error: Failed to fetch: `https://example`\n  Caused by: dns error'
        for words, minors in refused.items():
            if words in requirements and python in minors:
                return False, f'  × No solution found\n  cause: Because {words} has no wheels for cp3{python}\n'
        return True, 'numpy==2.0\n'
    return compile, asked


def test_the_resolver_matrix_names_each_refusal_and_each_route_that_says_otherwise():
    """A route whose Pythons differ from what resolves is named; the cells say uv's reason; an index not
    reached is left out and said in the cell (the rest of the route still resolved)."""
    paddle26 = 'paddlepaddle-gpu==2.6.2'
    compile, asked = _stand_in({paddle26: {13, 11}}, unreached=('https://www.paddlepaddle.org.cn',))
    table, wrong = resolve_routes.matrix(compile)
    assert len(table.splitlines()) == 2 + len(ROUTES)
    assert 'no: paddlepaddle-gpu==2.6.2 has no wheels for cp313' in table
    assert 'yes, without Paddle (its index not reached)' in table
    expected = []
    for route in ROUTES:
        resolved = [python for python in PYTHONS if route.paddle != paddle26 or python not in (11, 13)]
        if resolved != list(range(route.pythons[0], route.pythons[1] + 1)):
            expected.append(f'{route.device} [{route.extra}]: ROUTES says 3.{route.pythons[0]}-3.{route.pythons[1]}, '
                            f"resolves on {', '.join(f'3.{python}' for python in resolved)}")
    assert wrong == expected and any('resolves on 3.9, 3.10, 3.12' in line for line in wrong)
    assert all(('--only-binary' in options) is (resolve_routes.NVIDIA_INDEX not in options)    # the stub's build
               for _, options in asked)
    tensorrt = [text for text, options in asked if resolve_routes.NVIDIA_INDEX in options]
    assert tensorrt and all('requirements-deploy-tensorrt.txt' in text for text in tensorrt)


def test_the_resolver_agrees_with_routes_that_say_what_resolves():
    """A stand-in refusing exactly outside each route's Pythons: nothing named, every route asked whole."""
    routes = {resolve_routes.route_requirements(route): route for route in ROUTES}
    assert len(routes) == len(ROUTES)

    def compile(requirements: str, options) -> tuple:
        python = int(options[options.index('--python-version') + 1].split('.')[1])
        low, high = routes[requirements].pythons
        return low <= python <= high, 'cause: Because x has no wheels'
    table, wrong = resolve_routes.matrix(compile)
    assert wrong == [] and 'no: x has no wheels' in table


def test_an_onnx_export_without_paddle2onnx_on_3_13_says_to_export_on_an_older_python(monkeypatch):
    """The extras leave paddle2onnx out on 3.13 (no wheel): the export says so in one line with the ways out,
    not 'pip install' of a wheel that does not exist; on an older Python the install line as before."""
    import importlib.metadata

    from solov2.model.inference import export

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, 'version', missing)
    monkeypatch.setattr(export.sys, 'version_info', (3, 13, 1, 'final', 0))
    with pytest.raises(export.ExportError, match=r'paddle2onnx, which has no wheel for Python 3\.13: export with '
                                                 r'Python 3\.12 or older \(the exported folder runs here\), or '):
        export.check_onnx_tools(False)
    monkeypatch.setattr(export.sys, 'version_info', (3, 12, 8, 'final', 0))
    with pytest.raises(export.ExportError, match='needs paddle2onnx and onnx: pip install -r requirements-deploy.txt'):
        export.check_onnx_tools(False)
