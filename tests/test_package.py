"""One import name, ``solov2``: from the checkout (on PYTHONPATH, or the scripts run by path)
and pip-installed into a fresh virtual environment, used from a host project that has its own
``config.py``, ``model.py`` and ``data/`` (as nearly every ML project does). Runs with
``sys.executable``, so it holds in a virtual environment as in the machine's Python."""
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from solov2 import SHIPPED_WEIGHTS
from solov2.core.cache import entry_folder
from solov2.model.inference.auto_backend import cache_key
from tests.helpers import REPO_DIR
from tests.test_docs import BLOCKS

PARTS = ('core', 'config', 'data', 'model', 'convert', 'api', 'serving', 'tools')     # the package's real folders
MODULES = ('solov2.config', 'solov2.data.coco', 'solov2.api', 'solov2.model.build',
           'solov2.model.training.trainer', 'solov2.model.inference.backend_factory', 'solov2.convert.common',
           'solov2.tools.export_model')
HOST_CHECK = """
import config, model, data                      # the host project's own modules
assert (config.HOST, model.HOST, data.HOST) == ('config', 'model', 'data')
from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter
import solov2.api
result = Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu')(SAMPLE_IMAGES + '/shapes_000023.jpg')
assert len(result.scores) > 0 and model.HOST == 'model'
print(solov2.__file__)
"""


def _python(args, cwd, pythonpath=None, executable=sys.executable, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    if pythonpath:
        env['PYTHONPATH'] = pythonpath
    return subprocess.run([executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def host_project(root: Path) -> Path:
    """A user's project folder with its own ``config.py``, ``model.py`` and ``data/``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ('config', 'model'):
        (root / f'{name}.py').write_text(f'HOST = {name!r}\n')
    (root / 'data').mkdir(exist_ok=True)
    (root / 'data' / '__init__.py').write_text("HOST = 'data'\n")
    return root


def test_checkout_on_pythonpath_serves_a_host_project_with_its_own_config_and_model(tmp_path):
    host = host_project(tmp_path / 'host')
    check = ('import sys; before = list(sys.path); import solov2.tools._bootstrap, solov2.convert._bootstrap; '
             'assert sys.path == before, "the bootstrap edited sys.path"; '
             f'import {", ".join(MODULES)}; from pathlib import Path; '
             'print(Path(solov2.model.build.__file__).resolve())')
    done = _python(['-c', check], host, pythonpath=str(REPO_DIR))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(REPO_DIR / 'model' / 'build.py')
    done = _python(['-c', HOST_CHECK], host, pythonpath=str(REPO_DIR))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(REPO_DIR / 'solov2' / '__init__.py')


@pytest.mark.parametrize('name', ['tests', 'demo', 'hubconf'])
def test_only_the_package_folders_import_under_the_one_name(tmp_path, name):
    """In a checkout as installed, ``solov2.*`` is the package's subpackages only: a test,
    script or data folder that imported as ``solov2.tests`` here would fail for users."""
    done = _python(['-c', f'import solov2.{name}'], host_project(tmp_path), pythonpath=str(REPO_DIR))
    assert done.returncode == 1 and 'ModuleNotFoundError' in done.stderr, done.stderr[-2000:]


def test_a_checkout_whose_links_are_plain_files_runs(tmp_path):
    """Git without ``core.symlinks`` (Windows) checks each link in ``solov2/`` out as a plain file
    holding its target: the package's path then leads to the top-level folders, the shipped model
    and pictures are found, and a script and the API run."""
    checkout = tmp_path / 'checkout'
    for name in ('solov2', *PARTS, 'weights', 'images', 'demo.py'):
        copy = shutil.copytree if (REPO_DIR / name).is_dir() else shutil.copy
        copy(REPO_DIR / name, checkout / name, **({'symlinks': True} if copy is shutil.copytree else {}))
    links = [path for path in (checkout / 'solov2').iterdir() if path.is_symlink()]
    assert len(links) == len(PARTS) + 2
    for link in links:
        target = os.readlink(link)
        link.unlink()
        link.write_text(target)
    check = ('from solov2 import SAMPLE_IMAGES, SHIPPED_WEIGHTS, Segmenter; import solov2.tools.main; '
             "seg = Segmenter(SHIPPED_WEIGHTS, backend='dygraph', device='cpu'); "
             "assert len(seg(SAMPLE_IMAGES + '/shapes_000023.jpg')) > 0; "
             'import solov2.model.build as build, solov2.serving.app as app; print(build.__file__, app.__file__)')
    done = _python(['-c', check], host_project(tmp_path / 'host'), pythonpath=str(checkout))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(checkout / 'model' / 'build.py'), str(checkout / 'serving' / 'app.py')]
    done = _python([str(checkout / 'demo.py'), '--help'], tmp_path)
    assert done.returncode == 0 and done.stdout.startswith('usage: '), done.stderr[-2000:]


# a module of each part, imported by its bare dotted name
BARE_MODULES = {'core': 'core.paths', 'config': 'config.base', 'data': 'data.coco', 'model': 'model.build',
                'convert': 'convert.common', 'api': 'api.instances', 'serving': 'serving.limits', 'tools': 'tools.cli'}
BARE_CHECK = """
import sys
import solov2.{module}
try:
    import {module}
except ImportError as exc:
    print(exc)
print(sorted(name for name in sys.modules if name == '{part}' or name.startswith('{part}.')))
"""


@pytest.mark.parametrize('part', PARTS)
def test_every_part_imported_by_its_bare_name_refuses(tmp_path, part):
    """With the checkout's root on the path ``import model`` or ``import core.paths`` would load a second copy
    of the module (its own locks and caches, beside ``solov2.core.paths``'): each part refuses, naming the one
    name, and none of its modules is loaded under the bare name."""
    assert set(BARE_MODULES) == set(PARTS)
    done = _python(['-c', f'import {part}'], tmp_path, pythonpath=str(REPO_DIR))
    assert done.returncode == 1 and f'import solov2.{part}, not {part}' in done.stderr, done.stderr[-2000:]
    done = _python(['-c', BARE_CHECK.format(module=BARE_MODULES[part], part=part)], tmp_path, pythonpath=str(REPO_DIR))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f'import solov2.{part}, not {part}: each module of the toolkit has one name',
                                        '[]'], done.stdout


def test_scripts_run_by_path_from_another_folder(tmp_path):
    """tools/_bootstrap, convert/_bootstrap and tools/dev/_bootstrap.py make the project importable."""
    for script in ('demo.py', 'tools/demo.py', 'tools/make_shapes_dataset.py', 'convert/solo2paddle.py',
                   'tools/dev/zoo_docs.py'):
        done = _python([str(REPO_DIR / script), '--help'], host_project(tmp_path))
        assert done.returncode == 0, (script, done.stderr[-2000:])
        assert done.stdout.startswith('usage: '), (script, done.stdout[:200])


def _pyproject_list(name: str):
    text = (REPO_DIR / 'pyproject.toml').read_text()
    block = re.search(rf'^{name} = \[(.*?)\]', text, re.S | re.M).group(1)
    return re.findall(r'"([\w.]+)"', block)


# the checkout's own package folders, which the wheel leaves out: the workshop and the scripts' bootstraps
CHECKOUT_ONLY = ('solov2.tools.dev', 'solov2.tools._bootstrap', 'solov2.convert._bootstrap')


def test_every_part_has_one_home_at_the_top_and_solov2_holds_its_entry_files_and_links():
    """Each part of the package is a real folder at the top level, the package's folder holds its own
    entry files and a link to each (and the wheel maps each name to its folder): no part real in
    ``solov2/`` and linked from the top while its neighbours are the other way round."""
    entries = {path.name: path for path in (REPO_DIR / 'solov2').iterdir() if path.name != '__pycache__'}
    assert {name for name, path in entries.items() if not path.is_symlink()} == {'__init__.py', '__main__.py'}
    links = {name: os.readlink(path) for name, path in entries.items() if path.is_symlink()}
    assert links == {name: f'../{name}' for name in (*PARTS, 'weights', 'images')}
    assert all((REPO_DIR / name).is_dir() and not (REPO_DIR / name).is_symlink() for name in links)
    mapped = dict(re.findall(r'^"(solov2\.\w+)" = "(\w+)"$', (REPO_DIR / 'pyproject.toml').read_text(), re.M))
    assert mapped == {f'solov2.{name}': name for name in links}


def test_the_installed_package_lists_every_package_folder():
    """pyproject.toml names each package but the checkout's own; a new folder with an
    ``__init__.py`` must join one or the other."""
    folders = {'solov2'} | {'solov2.' + '.'.join(path.parent.relative_to(REPO_DIR).parts)
                            for top in PARTS for path in (REPO_DIR / top).rglob('__init__.py')}
    shipped = {folder for folder in folders if not folder.startswith(CHECKOUT_ONLY)}
    assert set(CHECKOUT_ONLY) <= folders and {'solov2.core', 'solov2.api', 'solov2.serving'} <= shipped
    assert set(_pyproject_list('packages')) == shipped | {'solov2.weights', 'solov2.images'}


def _fresh_venv(root: Path) -> Path:
    """A new virtual environment that sees this interpreter's installed packages (Paddle and the
    rest, through a .pth file) but not the checkout; returns its python."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(root)], check=True, timeout=120)
    python = root / 'bin' / 'python'
    purelib = _python(['-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], root,
                      executable=str(python)).stdout.strip()
    outer = {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib'], *site.getsitepackages()}
    Path(purelib, 'outer.pth').write_text('\n'.join(sorted(p for p in outer if os.path.isdir(p))) + '\n')
    return python


def workshop_in(root: Path, names) -> list:
    """Those of the files ``names`` (relative to ``root``) that belong to a checkout only:
    tools/dev/'s modules (by their names too), a scripts' bootstrap, a module that edits
    ``sys.path`` or imports ``solov2.tools.dev``."""
    dev = {path.stem for path in (REPO_DIR / 'tools' / 'dev').rglob('*.py')} - {'__init__'}
    found = []
    for name in names:
        path = Path(root, name)
        text = path.read_text(errors='replace') if path.suffix == '.py' and path.is_file() else ''
        if ({'dev', 'reference', '_bootstrap'} & set(Path(name).parts) or path.stem in dev | {'_bootstrap'}
                or re.search(r'sys\.path\.(insert|append)|sys\.path\s*=|solov2\.tools\.dev\b', text)):
            found.append(str(name))
    return found


def test_the_checkout_has_what_the_wheel_must_leave_out(tmp_path):
    """``workshop_in`` finds the workshop, the bootstraps, a path hack and an import of the workshop."""
    found = workshop_in(REPO_DIR, ['tools/dev/benchmark.py', 'tools/_bootstrap/__init__.py', 'tools/demo.py',
                                   'convert/_bootstrap/__init__.py', 'model/build.py'])
    assert found == ['tools/dev/benchmark.py', 'tools/_bootstrap/__init__.py', 'convert/_bootstrap/__init__.py']
    (tmp_path / 'hack.py').write_text('import sys\nsys.path.insert(0, "..")\n')
    (tmp_path / 'uses.py').write_text('from solov2.tools.dev import report\n')
    assert workshop_in(tmp_path, ['hack.py', 'uses.py', 'hack.txt']) == ['hack.py', 'uses.py']


def test_pip_install_gives_one_name_and_console_commands_in_a_fresh_venv(tmp_path):
    """``pip install .`` into a fresh venv; from a host project: the API segments a picture,
    README.md's Python runs as a newcomer copies it, and the console demo runs on the shipped
    model and sample pictures from any folder. The wheel holds the library and the commands, not
    the workshop, the bootstraps or a path hack."""
    pytest.importorskip('setuptools')
    source = tmp_path / 'source'
    shutil.copytree(REPO_DIR, source, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', 'output', 'build', '*.egg-info', '__pycache__', 'datasets', 'export', '.pytest_cache'))
    python = _fresh_venv(tmp_path / 'venv')
    done = _python(['-m', 'pip', 'install', '--no-deps', '--no-build-isolation', '--no-index', '-q', str(source)],
                   tmp_path, executable=str(python), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    host = host_project(tmp_path / 'host')
    # README's backend='auto' opens the session's export of the shipped model ($SOLOV2_CACHE): the
    # installed package's cache key (weights, config, versions, source) is the checkout's
    done = _python(['-c', HOST_CHECK + 'from solov2.core.cache import entry_folder; '
                    'from solov2.model.inference.auto_backend import cache_key; '
                    'print(entry_folder(cache_key(SHIPPED_WEIGHTS, 9, [])).name)'], host, executable=str(python))
    assert done.returncode == 0, done.stderr[-3000:]
    package_file, key = done.stdout.splitlines()
    installed = Path(package_file).parent
    assert installed.parent.name == 'site-packages' and (installed / 'weights' / 'shapes_r18.pdparams').is_file()
    assert not (installed / 'tests').exists()
    assert key == entry_folder(cache_key(SHIPPED_WEIGHTS, 9, [])).name
    for page, line, code, _ in BLOCKS:
        if page == 'README.md':
            done = _python(['-c', code], host, executable=str(python))
            assert done.returncode == 0, f'README.md:{line} failed installed:\n{done.stderr[-3000:]}'
    done = _python(['-c', 'from importlib.metadata import files; print(*files("solov2-paddle"), sep="\\n")'],
                   host, executable=str(python))
    files = done.stdout.split()
    assert 'solov2/tools/demo.py' in files and 'solov2/tools/convert.py' in files, done.stdout[-2000:]
    assert {f'solov2/serving/page/{name}' for name in ('index.html', 'page.js', 'page.css')} <= set(files)
    assert not workshop_in(installed.parent, files), workshop_in(installed.parent, files)
    solov2 = str(tmp_path / 'venv' / 'bin' / 'solov2')
    shown = subprocess.run([solov2, '--help'], cwd=host, capture_output=True, text=True, timeout=120).stdout
    assert shown.startswith('usage: solov2 COMMAND') and '  convert ' in shown and '  demo ' in shown
    done = subprocess.run([solov2, 'demo', '--backend', 'dygraph', '--device', 'cpu', '--output', 'pictures'],
                          cwd=host, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in (host / 'pictures').iterdir()) == sorted(
        p.name for p in (REPO_DIR / 'images').glob('*.jpg'))
    assert _pyproject_scripts() == ['solov2'] and not list((tmp_path / 'venv' / 'bin').glob('solov2-*'))
    weights = [solov2, 'weights']          # installed, it names itself (argparse's prog)
    shown = subprocess.run(weights + ['--help'], cwd=host, capture_output=True, text=True, timeout=120).stdout
    refused = subprocess.run(weights + ['get'], cwd=host, capture_output=True, text=True, timeout=120)
    assert shown.startswith('usage: solov2 weights ')
    assert refused.returncode == 2 and 'get needs one or more names (solov2 weights lists them)' in refused.stderr
    shown = _python(['-m', 'solov2', 'convert', 'ppdet', '--help'], host, executable=str(python)).stdout
    assert shown.startswith('usage: solov2 convert ppdet ') and 'PaddleDetection 2.x' in shown
    done = _python(['-c', 'from importlib.metadata import requires; print(*requires("solov2-paddle"), sep="\\n")'],
                   host, executable=str(python))
    extras = done.stdout.splitlines()
    assert {'paddle2onnx>=2.0; python_version < "3.13" and extra == "deploy"',
            'paddle2onnx==1.3.1; python_version < "3.13" and extra == "deploy-paddle26"'} <= set(extras)


def _requirements(name: str) -> dict:
    """{package: its requirement line} of a requirements file."""
    lines = [line.strip() for line in (REPO_DIR / name).read_text().splitlines()]
    return {re.match(r'[\w.-]+', line).group(0): line for line in lines if line and not line.startswith('#')}


def test_each_paddle_line_has_its_deployment_extras():
    """Paddle 3.x takes paddle2onnx 2.x, Paddle 2.6 paddle2onnx 1.3.1 (2.x needs Paddle 3); an
    extra each (no environment marker sees Paddle's version), the rest the same."""
    paddle3, paddle26 = _requirements('requirements-deploy.txt'), _requirements('requirements-deploy-paddle26.txt')
    assert paddle3.pop('paddle2onnx') == 'paddle2onnx>=2.0; python_version < "3.13"'     # no cp313 wheel
    assert paddle26.pop('paddle2onnx') == 'paddle2onnx==1.3.1; python_version < "3.13"'
    assert paddle3 == paddle26
    text = (REPO_DIR / 'pyproject.toml').read_text()
    for extra, name in (('deploy', 'requirements-deploy.txt'), ('deploy-paddle26', 'requirements-deploy-paddle26.txt'),
                        ('deploy-gpu', 'requirements-deploy-gpu.txt'),
                        ('deploy-gpu-paddle26', 'requirements-deploy-gpu-paddle26.txt')):
        assert f'optional-dependencies.{extra} = {{file = ["{name}"]}}' in text, extra
    assert ('optional-dependencies.deploy-tensorrt = {file = ["requirements-deploy-gpu.txt", '
            '"requirements-deploy-tensorrt.txt"]}') in text


@pytest.mark.parametrize('cpu_file, gpu_file', [('requirements-deploy.txt', 'requirements-deploy-gpu.txt'),
                                                ('requirements-deploy-paddle26.txt',
                                                 'requirements-deploy-gpu-paddle26.txt')])
def test_the_gpu_deployment_extras_never_bring_the_cpu_onnxruntime(cpu_file, gpu_file):
    """onnxruntime-gpu with the CUDA and cuDNN runtime its providers load (its extras cuda and
    cudnn) in place of onnxruntime (the CPU wheel would shadow it), the rest the same, on each
    Paddle line; TensorRT 10, which onnxruntime-gpu's provider loads (libnvinfer.so.10), not 11."""
    cpu, gpu = _requirements(cpu_file), _requirements(gpu_file)
    assert cpu.pop('onnxruntime') == 'onnxruntime'
    assert gpu.pop('onnxruntime-gpu') == 'onnxruntime-gpu[cuda,cudnn]>=1.28,<2'     # its CUDA 13 line: Python 3.11+
    assert cpu == gpu
    assert _requirements('requirements-deploy-tensorrt.txt') == {'tensorrt-cu13': 'tensorrt-cu13>=10.13.3,<11'}


def _pyproject_scripts():
    text = (REPO_DIR / 'pyproject.toml').read_text()
    block = text.split('[project.scripts]', 1)[1].split('\n[', 1)[0]
    return re.findall(r'^([\w-]+) = ', block, re.M)


def test_the_console_command_is_the_dispatcher():
    text = (REPO_DIR / 'pyproject.toml').read_text()
    block = text.split('[project.scripts]', 1)[1].split('\n[', 1)[0]
    assert re.findall(r'^([\w-]+) = "([\w.]+):(\w+)"', block, re.M) == [('solov2', 'solov2.tools.main', 'main')]
