"""A training round driven by a real Label Studio (docs/label_studio.md, "Train from Label Studio"): a brush
project of 30 shapes pictures whose stars are labelled 'blob' (a label the shipped model does not know), its
annotations submitted through Label Studio's API; Label Studio itself sends the training event once the 30th is
saved (the project's ``min_annotations_to_start_training``), and again when asked through its API while the round
runs (answered "running"); the round trains, scores both versions on the held-out tasks and promotes the new
one, which then finds blobs; a client posting to /v1/segment throughout sees every answer 200. Then a second round,
forced to measure worse, is not promoted and the version stays. 4 to 11 minutes on a shared 2-core CPU, as loaded
(Label Studio's start, 2.6 to 8.5 for the first round): ``python -m pytest -m round
tests/serving/test_label_studio_round.py``."""
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from solov2.serving.versions import VersionStore
from tests.serving.running import SMALL_MODEL, ServeSettings, serving
from tests.serving.shapes_project import CONFIG, NEW_LABEL, annotation_results, shapes_set
from tests.serving.test_label_studio_server import connect, label_studio, new_project  # noqa: F401 (a fixture)
from tests.serving.test_label_studio_server import pytestmark as needs_label_studio
from tests.serving.test_training import ROUND, finished, posting

pytestmark = [pytest.mark.round, needs_label_studio]
TASKS = 30
UPLOAD_PREFIX = re.compile(r'^[0-9a-f]{8}-')      # Label Studio's prefix of an uploaded file's name


def annotate_all(studio, project: int, root: Path) -> None:
    """Each task annotated through Label Studio's API as the shapes set says (the stars as 'blob')."""
    coco = json.loads((root / 'annotations' / 'instances_train.json').read_text())
    by_name = {image['file_name']: image for image in coco['images']}
    tasks = studio.get('/api/tasks', params={'project': project, 'page_size': 100}).json()['tasks']
    assert len(tasks) == TASKS
    for task in tasks:
        image = by_name[UPLOAD_PREFIX.sub('', Path(task['data']['image']).name)]
        studio.post(f'/api/tasks/{task["id"]}/annotations', json={
            'result': annotation_results(coco, image), 'was_cancelled': False}).raise_for_status()


def test_label_studio_trains_a_version_that_learns_its_new_label(label_studio, tmp_path):  # noqa: F811
    root = shapes_set(tmp_path / 'shapes', TASKS)
    project = new_project(label_studio, CONFIG, [(path.name, path.read_bytes())
                                                 for path in sorted((root / 'train').glob('*.jpg'))])
    settings = ServeSettings(SMALL_MODEL, versions=str(tmp_path / 'versions'), train_iters=150, train_opt=ROUND,
                             label_studio_url=str(label_studio.base_url).rstrip('/'),
                             label_studio_token=label_studio.token)
    with serving(settings) as client:
        ml = connect(label_studio, str(client.base_url).rstrip('/') + '/label-studio', project)
        label_studio.patch(f'/api/projects/{project}', json={'min_annotations_to_start_training': TASKS}
                           ).raise_for_status()
        began = time.monotonic()
        with posting(client) as answers:
            annotate_all(label_studio, project, root)          # the 30th makes Label Studio send the event
            assert client.get('/v1/jobs').json()['jobs'][-1]['state'] == 'running'
            label_studio.post(f'/api/ml/{ml}/train').raise_for_status()      # Label Studio's Start Training
            job = finished(client)
            time.sleep(1)           # the poster's next answers come from the version promoted
        minutes = (time.monotonic() - began) / 60
        jobs = client.get('/v1/jobs').json()['jobs']
        assert len(jobs) == 1 and job['state'] == 'promoted', jobs
        assert {status for status, _ in answers} == {200} and {version for _, version in answers} == {'v1', 'v2'}
        label_studio.post('/api/dm/actions', params={'id': 'retrieve_tasks_predictions', 'project': project},
                          json={'selectedItems': {'all': True, 'excluded': []}}).raise_for_status()
        predictions = label_studio.get('/api/predictions', params={'project': project}).json()
        latest = [one for one in predictions if one['model_version'] == 'v2']
        found = {label for one in latest for region in one['result'] for label in region['value']['brushlabels']}
        assert latest and NEW_LABEL in found, found
        print(f'\nround: {minutes:.1f} min from the first annotation to the swap; held-out mask AP '
              f"{job['parent_held_out_ap']:.1f} (v1) -> {job['held_out_ap']:.1f} (v2); {len(answers)} requests "
              f"during it, all 200 ({sum(1 for _, v in answers if v == 'v2')} answered by v2)")
    a_worse_round_is_not_promoted(label_studio, project, ml, settings)


def a_worse_round_is_not_promoted(studio, project: int, ml: int, settings) -> None:
    """A second round forced to measure worse (5 iterations at 50 times the learning rate), sent by Label Studio
    to the service restarted on the same versions folder: not promoted, v2 serves on."""
    forced = replace(settings, train_iters=5, train_opt='batch_size=2 warmup_iters=1 base_lr=0.05')
    with serving(forced) as client:
        assert client.get('/v1/model').json()['version'] == 'v2'
        studio.patch(f'/api/ml/{ml}', json={'url': str(client.base_url).rstrip('/') + '/label-studio',
                                            'project': project}).raise_for_status()   # Label Studio needs both
        studio.post(f'/api/ml/{ml}/train').raise_for_status()
        job = finished(client)
        assert job['state'] == 'not promoted' and job['held_out_ap'] < job['parent_held_out_ap'], job
        assert client.get('/v1/model').json()['version'] == 'v2'
    assert VersionStore(settings.versions).names() == ['v1', 'v2']
    print(f"second round (forced worse): held-out mask AP {job['parent_held_out_ap']:.1f} (v2) -> "
          f"{job['held_out_ap']:.1f}: not promoted, v2 serves")
