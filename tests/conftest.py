"""Session-wide test settings: ``--backend auto`` exports into a temporary cache, never the
user's (``$SOLOV2_CACHE``, see model/inference/export_cache.py)."""
import os

import pytest

from solov2.model.inference.export_cache import CACHE_ENV


@pytest.fixture(scope='session', autouse=True)
def temporary_export_cache(tmp_path_factory):
    """Point ``$SOLOV2_CACHE`` at a fresh folder for the whole run, one that the pytest-xdist
    workers of the run share (an entry is written to a temporary name and renamed, so two
    workers can build the same one): the shipped model is exported once, not once a worker.
    Tests that change an entry copy it into a cache of their own."""
    base = tmp_path_factory.getbasetemp()
    folder = base.parent / 'export_cache' if os.environ.get('PYTEST_XDIST_WORKER') else base / 'export_cache'
    folder.mkdir(exist_ok=True)
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(folder))
    yield
    patch.undo()
