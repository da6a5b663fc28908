"""On which Pythons each install route resolves (``config.install.ROUTES``: Paddle's wheel and one extra of
the package), with uv's resolver for a target Python and platform, which reads each wheel's tags and
markers for that Python without downloading the wheels (pip's ``--python-version`` evaluates markers
for the running Python and downloads whole wheels). Run by hand, from a checkout (a few minutes):

    pip install uv && python tools/dev/resolve_routes.py [--pythons 9 10 11 12 13]

It prints the matrix (route x Python: ``yes``, or ``no`` and uv's reason) and exits 1 when a route's
``pythons`` in ``ROUTES`` differ from what resolves. Each route resolves as
``uv pip compile --python-version 3.X --python-platform x86_64-manylinux_2_28 --only-binary :all:`` of
Paddle's requirement with ``requirements-core.txt`` and the extra's requirement files (pyproject.toml),
on the package index plus the route's own (the PaddlePaddle index for Paddle 3.x's GPU wheels, NVIDIA's
for TensorRT's libraries); sources are allowed only for the route that needs NVIDIA's index, whose
``tensorrt-cu13`` is a source stub on the package index, as pip builds it too. An index this machine
cannot reach is left out and said in the cell ('yes, without Paddle: its index not reached'): the rest of
the route is still resolved.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.config.install import NVIDIA_INDEX, PADDLE_INDEX, ROUTES, InstallRoute  # noqa: E402

REPO_DIR = Path(__file__).resolve().parents[2]
PYTHONS = (9, 10, 11, 12, 13)
PLATFORM = 'x86_64-manylinux_2_28'
UNREACHED = ('failed to fetch', 'error sending request', 'dns error', 'could not connect', 'connection refused',
             'timed out', 'network is unreachable')
Compile = Callable[[str, Sequence[str]], Tuple[bool, str]]     # (requirements text, uv's options) -> (ok, output)


def extra_files(extra: str, pyproject: Path = REPO_DIR / 'pyproject.toml') -> List[str]:
    """The requirement files pyproject.toml's ``extra`` is made of (``optional-dependencies.EXTRA = {file =
    [...]}``); ValueError when it has none."""
    found = re.search(rf'^optional-dependencies\.{re.escape(extra)} = \{{file = \[([^\]]*)\]\}}',
                      pyproject.read_text(), re.M)
    if not found:
        raise ValueError(f'pyproject.toml has no extra {extra!r}')
    return re.findall(r'"([^"]+)"', found.group(1))


def route_requirements(route: InstallRoute, paddle: bool = True, nvidia: bool = True) -> str:
    """The route's requirements as one requirements file's text (``-r`` lines with absolute paths): Paddle's
    requirement (``paddle`` False: left out), ``requirements-core.txt`` and its extra's files (``nvidia``
    False: those naming NVIDIA's index's packages, ``requirements-deploy-tensorrt.txt``, left out)."""
    files = ['requirements-core.txt'] + [name for name in extra_files(route.extra)
                                          if nvidia or 'tensorrt' not in name]
    return '\n'.join(([route.paddle] if paddle else []) + [f'-r {REPO_DIR / name}' for name in files]) + '\n'


def route_options(route: InstallRoute, python: int, paddle: bool = True, nvidia: bool = True) -> List[str]:
    """uv pip compile's options for the route on Python 3.``python``."""
    options = ['--python-version', f'3.{python}', '--python-platform', PLATFORM, '--no-header', '--quiet']
    indexes = ([f'{PADDLE_INDEX}{route.cuda}/'] if route.cuda and paddle else []) + (
        [NVIDIA_INDEX] if route.nvidia and nvidia else [])
    for index in indexes:
        options += ['--extra-index-url', index]
    if indexes:
        options += ['--index-strategy', 'unsafe-best-match']
    return options + ([] if route.nvidia and nvidia else ['--only-binary', ':all:'])


def uv_compile(uv: str) -> Compile:
    """A ``Compile`` that runs ``uv pip compile`` on the text, read from standard input."""
    def run(requirements: str, options: Sequence[str]) -> Tuple[bool, str]:
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([uv, 'pip', 'compile', '-', *options], input=requirements, text=True,
                                  capture_output=True, cwd=folder, timeout=600)
        return done.returncode == 0, done.stdout + done.stderr
    return run


def reason(output: str) -> str:
    """uv's first line saying why a resolution failed, shortened."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    why = next((line for line in lines if 'Because' in line or line.startswith('cause')), lines[0] if lines else '')
    why = re.sub(r'^(cause:\s*)?Because\s+', '', why)
    return re.split(r' and you require|, we can conclude', why)[0][:160]


def resolve(route: InstallRoute, python: int, compile: Compile) -> Tuple[bool, str]:
    """(resolves, the cell) of the route on Python 3.``python``: an index not reached is left out (Paddle's,
    then NVIDIA's) and said in the cell."""
    left_out: List[str] = []
    paddle, nvidia = True, True
    while True:
        ok, output = compile(route_requirements(route, paddle, nvidia), route_options(route, python, paddle, nvidia))
        if ok or not any(words in output.lower() for words in UNREACHED):
            break
        if route.cuda and paddle:
            paddle = False
            left_out.append('Paddle (its index not reached)')
        elif route.nvidia and nvidia:
            nvidia = False
            left_out.append("TensorRT's wheels (NVIDIA's index not reached)")
        else:
            break
    unchecked = f", without {' and '.join(left_out)}" if left_out else ''
    return ok, ('yes' + unchecked) if ok else f'no: {reason(output)}'


def matrix(compile: Compile, pythons: Sequence[int] = PYTHONS) -> Tuple[str, List[str]]:
    """(the matrix as a Markdown table, the routes whose ``pythons`` differ from what resolves, each a line)."""
    rows = ['| route | ' + ' | '.join(f'3.{python}' for python in pythons) + ' |',
            '|---|' + '---|' * len(pythons)]
    wrong = []
    for route in ROUTES:
        cells: Dict[int, Tuple[bool, str]] = {python: resolve(route, python, compile) for python in pythons}
        rows.append(f'| {route.device}: `{route.command()}` | '
                    + ' | '.join(cells[python][1] for python in pythons) + ' |')
        resolved = [python for python in pythons if cells[python][0]]
        low, high = route.pythons
        said = [python for python in pythons if low <= python <= high]
        if resolved != said:
            wrong.append(f'{route.device} [{route.extra}]: ROUTES says 3.{low}-3.{high}, resolves on '
                         + (', '.join(f'3.{python}' for python in resolved) or 'none'))
    return '\n'.join(rows), wrong


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pythons', type=int, nargs='+', default=PYTHONS, metavar='MINOR',
                        help='the Python 3 minors to resolve for (default: 9 to 13)')
    parser.add_argument('--uv', default=shutil.which('uv'), help='the uv executable (default: the one on PATH)')
    args = parser.parse_args(argv)
    if not args.uv:
        print('resolve_routes: needs uv (pip install uv)', file=sys.stderr)
        return 2
    table, wrong = matrix(uv_compile(args.uv), args.pythons)
    print(table)
    for line in wrong:
        print(f'WRONG {line}')
    return 1 if wrong else 0


if __name__ == '__main__':
    sys.exit(main())
