"""Training rounds from Label Studio (serving/training.py, serving/learning.py) against a stand-in Label Studio
(tests/serving/shapes_project.py): Label Studio's training event starts one round in its own process, a second
is answered "running", the round fetches, splits by task id, grows the head for the new label, fine-tunes,
scores both versions on the held-out tasks and promotes only a version that measures at least as well; a round
that fails or measures worse leaves the serving version. A real Label Studio drives a round in
test_label_studio_server.py."""
import contextlib
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from solov2.core.paths import SAMPLE_IMAGES
from solov2.model.checkpoint import load_paddle_params
from solov2.serving.learning import HELD_OUT_EVERY, grown_start, held_out
from solov2.serving.training import Job, TrainingJobs
from solov2.serving.versions import VersionStore
from tests.helpers import free_port
from tests.serving.running import SMALL_MODEL, ServeSettings, serving
from tests.serving.shapes_project import NEW_LABEL, TOKEN, shapes_set, stand_in

ROUND = 'batch_size=2 warmup_iters=5 base_lr=0.001 ema_decay=0.9'     # a short round on 256 px pictures
PICTURE = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[0].read_bytes()


@contextlib.contextmanager
def posting(client) -> Iterator[list]:
    """A client posting a sample picture to /v1/segment every 0.2 s while the block runs; the list of its answers'
    (status, X-Model-Version) it yields is complete once the block ends."""
    answers, stop = [], threading.Event()

    def keep_posting():
        while not stop.is_set():
            answer = client.post('/v1/segment', content=PICTURE, headers={'Content-Type': 'image/jpeg'})
            answers.append((answer.status_code, answer.headers.get('x-model-version')))
            time.sleep(0.2)
    poster = threading.Thread(target=keep_posting)
    poster.start()
    try:
        yield answers
    finally:
        stop.set()
        poster.join()


def finished(client, timeout_s: float = 600) -> dict:
    """The last job of /v1/jobs once it no longer runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get('/v1/jobs').json()['jobs'][-1]
        if job['state'] != 'running':
            return job
        time.sleep(1)
    pytest.fail(f'the training job still runs after {timeout_s} s')


def test_the_held_out_split_is_fixed_by_task_id():
    chosen = [task for task in range(1, 1001) if held_out(task)]
    assert chosen == [task for task in range(1, 1001) if held_out(task)]      # the same each round
    assert 1000 / HELD_OUT_EVERY * 0.8 < len(chosen) < 1000 / HELD_OUT_EVERY * 1.2
    assert [task for task in range(1, 31) if held_out(task)] == [6, 12, 29]


def test_the_class_head_grows_keeping_the_known_classes(tmp_path):
    classes = ['circle', 'square', 'triangle', 'star', NEW_LABEL]
    grown = grown_start(SMALL_MODEL.weights, classes, tmp_path / 'grown.pdparams')
    parent, child = load_paddle_params(SMALL_MODEL.weights), load_paddle_params(grown)
    weight, bias = 'head.cate_pred.weight', 'head.cate_pred.bias'
    assert child[weight].shape[0] == child[bias].shape[0] == 5
    assert (child[weight][:4] == parent[weight]).all() and (child[bias][:4] == parent[bias]).all()
    assert child[bias][4] == pytest.approx(-4.595, abs=1e-3)       # the prior 0.01 of a new head
    assert all((child[name] == value).all() for name, value in parent.items() if not name.startswith('head.cate_pred'))
    assert grown_start(SMALL_MODEL.weights, classes[:4], tmp_path / 'same.pdparams') == SMALL_MODEL.weights


def test_a_round_that_measures_worse_is_not_promoted():
    switched = []
    service = SimpleNamespace(version='v1', switch=switched.append, store=None)
    jobs, job = TrainingJobs(service), Job(1, 1, time.time())
    jobs.decide(job, {'held_out_ap': 40.0, 'parent_held_out_ap': 41.5})
    assert job.state == 'not promoted' and switched == [] and job.version is None
    assert job.reason == 'held-out mask AP 40.0 (serving version v1: 41.5): lower, the serving version stays'


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    """A stand-in Label Studio serving a project of 30 annotated shapes pictures, the stars labelled 'blob'."""
    server = stand_in(shapes_set(tmp_path_factory.mktemp('shapes'), 30))
    yield f'http://127.0.0.1:{server.server_port}', server
    server.shutdown()


def a_round(client) -> dict:
    """The job of the round Label Studio's training event starts, once it ends; a second event meanwhile is
    answered "running" (Label Studio's older /train call, its project as "<id>.<time>")."""
    event = {'action': 'START_TRAINING', 'project': {'id': 1, 'title': 'shapes'}}
    started = client.post('/label-studio/webhook', json=event).json()
    assert started['status'] == 'started' and started['project'] == 1
    again = client.post('/label-studio/train', json={'project': '1.1700000000'}).json()
    assert again == {**started, 'status': 'running'}
    return finished(client)


def test_a_round_fetches_splits_trains_scores_both_and_decides_by_the_figures(project, tmp_path):
    """A short round (4 iterations): whatever it measures, the decision follows the figures."""
    url, server = project
    settings = ServeSettings(SMALL_MODEL, versions=str(tmp_path / 'versions'), label_studio_url=url,
                             label_studio_token=TOKEN, train_iters=4,
                             train_opt='batch_size=2 train_shorts=(128,) train_max=128 warmup_iters=2')
    with serving(settings) as client:
        job = a_round(client)
        serving_now = client.get('/v1/model').json()['version']
    assert job['state'] in ('promoted', 'not promoted') and job['parent_held_out_ap'] is not None, job
    assert (job['state'] == 'promoted') == (job['held_out_ap'] >= job['parent_held_out_ap'])
    assert serving_now == ('v2' if job['state'] == 'promoted' else 'v1')
    assert any('3 held out' in line and '(new: blob)' in line for line in job['progress']), job['progress']
    assert any(call.startswith('/api/projects/1/export') for call in server.calls)
    rounds = list((tmp_path / 'versions' / '.rounds').iterdir())
    assert len(rounds) == 1 and (rounds[0] / 'data' / 'held_out.json').is_file()


@pytest.mark.round
def test_a_round_learns_the_new_label_is_promoted_and_swapped_while_requests_flow(project, tmp_path):
    """150 iterations (about 3 minutes on a 2-core CPU): the new version measures better, serves, knows 'blob'."""
    url, _ = project
    settings = ServeSettings(SMALL_MODEL, versions=str(tmp_path / 'versions'), label_studio_url=url,
                             label_studio_token=TOKEN, train_iters=150, train_opt=ROUND)
    with serving(settings) as client:
        with posting(client) as answers:
            job = a_round(client)
        assert job['state'] == 'promoted' and job['version'] == 'v2', job
        assert {status for status, _ in answers} == {200} and {version for _, version in answers} >= {'v1'}
        model = client.get('/v1/model').json()
        assert model['version'] == 'v2' and model['classes'][-1] == NEW_LABEL
    store = VersionStore(settings.versions)
    record = store.record('v2')
    assert record.parent == 'v1' and record.held_out_ap == job['held_out_ap'] > job['parent_held_out_ap']
    assert record.data['held_out_tasks'] == [6, 12, 29] and record.data['new_labels'] == [NEW_LABEL]
    assert (store.root / 'v2' / 'data' / 'held_out.json').is_file()


def test_a_round_that_fails_leaves_the_serving_version_and_says_why(tmp_path):
    nowhere = f'http://127.0.0.1:{free_port()}'
    settings = ServeSettings(SMALL_MODEL, versions=str(tmp_path / 'versions'), label_studio_url=nowhere)
    with serving(settings) as client:
        assert client.post('/label-studio/webhook', json={'action': 'START_TRAINING', 'project': {'id': 3}}).json()[
            'status'] == 'started'
        job = finished(client, 120)
        assert job['state'] == 'failed' and 'could not be fetched' in job['reason'], job
        assert client.get('/v1/model').json()['version'] == 'v1'
    with serving(replace(settings, versions=None)) as plain:
        refused = plain.post('/label-studio/webhook', json={'action': 'START_TRAINING', 'project': {'id': 3}})
        assert refused.status_code == 501 and 'versions' in refused.json()['error']
