"""Model versions (serving/versions.py, switching.py, admin.py): the versions folder, the atomic switch that
refuses nothing while requests flow, rollback, and the version named by /v1/model, the metrics, each answer and
Label Studio's predictions."""
import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from solov2.config.sidecar import sidecar_path
from solov2.core.errors import InputError
from solov2.core.paths import SAMPLE_IMAGES
from solov2.serving.switching import Served, Slot
from solov2.serving.versions import VersionStore
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving

PICTURE = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[0]
TOKEN = 'operator-secret'
RENAMED = ['ring', 'square', 'triangle', 'star']        # the second version's classes: its answers tell it apart
POLYGONS = ('<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
            + ''.join(f'<Label value="{name}"/>' for name in ('circle', 'ring', 'square')) + '</PolygonLabels></View>')


def renamed_checkpoint(folder: Path) -> str:
    """The shipped checkpoint copied into ``folder`` with its first class renamed 'ring' in its sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / 'renamed.pdparams'
    shutil.copyfile(SMALL_MODEL.weights, weights)
    sidecar = json.loads(sidecar_path(str(SMALL_MODEL.weights)).read_text())
    sidecar_path(str(weights)).write_text(json.dumps({**sidecar, 'class_names': RENAMED}))
    return str(weights)


def test_a_version_is_added_whole_found_by_its_weights_and_rolled_back_to(tmp_path):
    store = VersionStore(str(tmp_path / 'versions'))
    first = store.of_weights(str(SMALL_MODEL.weights), 'started with')
    assert first.name == 'v1' and store.of_weights(str(SMALL_MODEL.weights), 'again') == first
    second = store.add(renamed_checkpoint(tmp_path / 'run'), 'trained', data={'tasks': 3}, parent='v1',
                       held_out_ap=50.0, parent_held_out_ap=40.0)
    assert second.name == 'v2' and store.names() == ['v1', 'v2'] and store.record('v2') == second
    assert json.loads(sidecar_path(store.weights('v2')).read_text())['class_names'] == RENAMED
    assert [path.name for path in store.root.iterdir() if path.name.startswith('.')] == []     # no staging left
    with pytest.raises(InputError, match='nothing to roll back'):
        store.previous()
    store.served('v1')
    store.served('v2')
    assert store.serving() == {'serving': 'v2', 'before': ['v1']} and store.previous() == 'v1'
    store.served('v1', rollback=True)
    assert store.serving() == {'serving': 'v1', 'before': []}
    with pytest.raises(InputError, match="no version 'v9'"):
        store.weights('v9')


class Model:
    """A stand-in segmenter that counts its closes."""
    closed = 0

    def close(self):
        self.closed += 1


def test_a_replaced_model_closes_once_its_last_request_is_answered():
    slot, old, new = Slot(), Model(), Model()
    slot.put(Served(old, 'v1'))       # type: ignore[arg-type]
    held = slot.lease()
    slot.put(Served(new, 'v2'))       # type: ignore[arg-type]
    assert slot.lease().version == 'v2' and old.closed == 0      # the request in flight still has it
    slot.release(held)
    assert old.closed == 1 and new.closed == 0
    host = Served(Model(), 'v3', owns=False)      # type: ignore[arg-type]
    slot.put(host)
    slot.put(Served(Model(), 'v4'))     # type: ignore[arg-type]
    assert host.segmenter.closed == 0     # a host's model stays the host's


def post(client, data: bytes):
    return client.post('/v1/segment', content=data, headers={'Content-Type': 'image/jpeg'})


def test_the_switch_refuses_nothing_and_every_answer_names_its_version(tmp_path):
    folder = tmp_path / 'versions'
    settings = ServeSettings(SMALL_MODEL, versions=str(folder), admin_token=TOKEN, label_studio_files=SAMPLE_IMAGES)
    data, answers, stop = PICTURE.read_bytes(), [], threading.Event()
    with serving(settings) as client:
        assert client.get('/v1/model').json()['version'] == 'v1'
        VersionStore(str(folder)).add(renamed_checkpoint(tmp_path / 'run'), 'by hand')

        def keep_posting():
            while not stop.is_set():
                answer = post(client, data)
                answers.append((answer.status_code, answer.headers.get('x-model-version'),
                                answer.json().get('model_version')))
        posting = [threading.Thread(target=keep_posting) for _ in range(3)]
        for thread in posting:
            thread.start()
        try:
            auth = {'Authorization': f'Bearer {TOKEN}'}
            assert client.post('/v1/admin/versions/v2').status_code == 401
            assert client.post('/v1/admin/versions/v2', headers={'Authorization': 'Bearer wrong'}).status_code == 401
            switched = client.post('/v1/admin/versions/v2', headers=auth, timeout=120)
            assert switched.status_code == 200 and switched.json() == {'serving': 'v2'}, switched.text
            after = post(client, data).json()
        finally:
            stop.set()
            for thread in posting:
                thread.join()
        assert {status for status, _, _ in answers} == {200}
        assert {(header, body) for _, header, body in answers} == {('v1', 'v1'), ('v2', 'v2')}
        assert after['model_version'] == 'v2' and after['class_names'] == RENAMED
        assert client.get('/v1/model').json()['version'] == 'v2'
        samples = metric_families(client)['solov2_model_version'].samples
        assert [(one.labels['version'], one.value) for one in samples] == [('v2', 1.0)]
        task = {'id': 1, 'data': {'image': PICTURE.name}}
        predicted = client.post('/label-studio/predict', json={'tasks': [task], 'label_config': POLYGONS}).json()
        assert predicted['model_version'] == predicted['results'][0]['model_version'] == 'v2'
        assert {one['value']['polygonlabels'][0] for one in predicted['results'][0]['result']} <= {'ring', 'square'}
        listed = client.get('/v1/admin/versions', headers=auth).json()
        assert listed['serving'] == 'v2' and listed['before'] == ['v1'] and len(listed['versions']) == 2
        assert client.post('/v1/admin/versions/v7', headers=auth).status_code == 400
        assert client.post('/v1/admin/rollback', headers=auth, timeout=120).json() == {'serving': 'v1'}
        assert post(client, data).json()['model_version'] == 'v1'
        client.post('/v1/admin/versions/v2', headers=auth, timeout=120)
    with serving(replace(settings, admin_token=None)) as restarted:     # the version serving when it stopped
        assert restarted.get('/v1/model').json()['version'] == 'v2'
        assert restarted.post('/v1/admin/rollback').status_code == 404      # no token: no admin routes


def test_without_a_versions_folder_the_version_is_the_weights_name():
    with serving(ServeSettings(SMALL_MODEL)) as client:
        answer = post(client, PICTURE.read_bytes())
        name = f'solov2-{client.get("/v1/model").json()["config_name"]}-{Path(SMALL_MODEL.weights).name}'
        assert answer.json()['model_version'] == answer.headers['x-model-version'] == name
