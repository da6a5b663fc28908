"""Session-wide test settings: ``--backend auto`` exports into a temporary cache, never the
user's (``$SOLOV2_CACHE``, see model/inference/auto_backend.py)."""
import gc
import logging
import os

import pytest

from solov2.core.paths import CACHE_ENV


def run_folder(tmp_path_factory, name: str):
    """The folder ``name`` of the test run's temporary folder, one that its pytest-xdist workers share."""
    base = tmp_path_factory.getbasetemp()
    folder = base.parent / name if os.environ.get('PYTEST_XDIST_WORKER') else base / name
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope='session', autouse=True)
def temporary_export_cache(tmp_path_factory):
    """Point ``$SOLOV2_CACHE`` at a fresh folder for the whole run, one that the pytest-xdist
    workers of the run share (an entry is written to a temporary name and renamed, so two
    workers can build the same one): the shipped model is exported once, not once a worker.
    Tests that change an entry copy it into a cache of their own."""
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(run_folder(tmp_path_factory, 'export_cache')))
    yield
    patch.undo()


@pytest.fixture(scope='session')
def run_builds(tmp_path_factory):
    """The folder of what ``tests.helpers.built_once`` makes once a test run (its workers share it)."""
    return run_folder(tmp_path_factory, 'built_once')


LIBRARY_LOGGING = logging.getLogger('solov2')
LIBRARY_LOGGING_AT_START = list(LIBRARY_LOGGING.handlers), LIBRARY_LOGGING.level, LIBRARY_LOGGING.propagate


@pytest.fixture(autouse=True)
def library_logging_put_back():
    """A command takes the library's logging for the rest of its process (``tools.cli.show_logs``);
    after each test the library's logger is as it was before the first one, also after a
    module's fixture that ran a command (its state is not what the next module should find)."""
    yield
    handlers, level, propagate = LIBRARY_LOGGING_AT_START
    LIBRARY_LOGGING.handlers, LIBRARY_LOGGING.propagate = list(handlers), propagate
    LIBRARY_LOGGING.setLevel(level)


@pytest.fixture(autouse=True)
def garbage_collected_in_the_main_thread():
    """Collect each test's reference cycles at its end, in the main thread. Left to chance, a
    cycle holding Paddle objects may be collected later by whichever thread allocates (a
    loopback server's or a pipeline's), while the next test runs Paddle in the main thread: a
    CI run here died once that way (a segmentation fault while garbage-collecting in a thread in
    ``selectors.select``). What outlives the test is then frozen out of later scans
    (``gc.freeze``): the modules a test imported (PyTorch, NNCF, Ray: hundreds of thousands of
    objects) and its module's fixtures. Scanned again after every test, they made each
    collection cost 0.2-0.5 s late in a CI run, 130 s of each worker's time."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope='module', autouse=True)
def module_garbage_collected():
    """At a test file's end, after its fixtures are released, one full collection that scans the
    frozen objects too, so that cycles a file's fixtures held are freed with the file, not kept
    for the rest of the run; what lives on is frozen again."""
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()
