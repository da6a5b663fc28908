"""Session-wide test settings: ``--backend auto`` exports into a temporary cache, never the
user's (``$SOLOV2_CACHE``, see model/inference/export_cache.py)."""
import pytest

from solov2.model.inference.export_cache import CACHE_ENV


@pytest.fixture(scope='session', autouse=True)
def temporary_export_cache(tmp_path_factory):
    """Point ``$SOLOV2_CACHE`` at a fresh folder for the whole session."""
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp('export_cache')))
    yield
    patch.undo()
