"""The service's contract (one server for the module): each stage's timing and the process's
own metrics."""
from pathlib import Path

import pytest

from solov2.core.paths import SAMPLE_IMAGES
from tests.model.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

PICTURE = (Path(SAMPLE_IMAGES) / 'shapes_000023.jpg').read_bytes()    # scores from 0.92 down to 0.06


@pytest.fixture(scope='module')
def client():
    with serving(ServeSettings(**SMALL_MODEL, max_body_mb=1)) as running:
        yield running


def stage_counts(client) -> dict:
    family = metric_families(client)['solov2_stage_seconds']
    return {s.labels['stage']: s.value for s in family.samples if s.name == 'solov2_stage_seconds_count'}


def test_a_request_moves_each_stages_count_and_the_process_is_measured(client):
    before = stage_counts(client)
    assert client.post('/v1/segment', content=PICTURE).status_code == 200
    after = stage_counts(client)
    assert {stage: after[stage] - before.get(stage, 0) for stage in after} == \
        {'queue': 1, 'decode': 1, 'network': 1, 'postprocess': 1, 'encode': 1}
    families = metric_families(client)
    assert families['process_resident_memory_bytes'].samples[0].value > 0
    assert families['process_cpu_seconds'].samples[0].value > 0
