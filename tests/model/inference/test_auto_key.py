"""``auto``'s cache key (``auto_backend.cache_key``) holds what changes the exported network or its
engines and nothing else: a data, training or path option (``--opt dataset_dir=...``) opens the same
entry instead of exporting the same model again; a network, test or OpenVINO setting another."""
import pytest

from solov2.config.sidecar import MODEL_SETTINGS, TEST_SETTINGS
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.model.inference.auto_backend import ENTRY_SETTINGS, cache_key

BASE = cache_key(SHIPPED_WEIGHTS, 9, [])


@pytest.mark.parametrize('option', ['dataset_dir=/elsewhere/shapes', 'base_lr=0.5', 'epochs=3', 'batch_size=2',
                                    'num_workers=0', 'seed=7', 'train_max=640', 'optimizer=adamw'])
def test_an_option_that_cannot_change_the_export_keeps_the_key(option):
    assert cache_key(SHIPPED_WEIGHTS, 9, [option]) == BASE


@pytest.mark.parametrize('option', ['test_max=512', 'score_threshold=0.3', 'class_names=("a", "b", "c", "d")',
                                    'openvino_buckets=none', 'openvino_streams=2'])
def test_a_setting_the_entry_depends_on_changes_the_key(option):
    assert cache_key(SHIPPED_WEIGHTS, 9, [option])['settings'] != BASE['settings']


def test_the_key_holds_every_network_and_test_setting_by_value():
    assert set(BASE) == {'format', 'weights_sha256', 'config', 'settings', 'precision', 'versions', 'source_sha256'}
    assert set(MODEL_SETTINGS + TEST_SETTINGS) <= set(BASE['settings']) == set(ENTRY_SETTINGS)
    assert BASE['settings']['num_classes'] == 4 and BASE['settings']['depth'] == 18
