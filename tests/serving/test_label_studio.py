"""The service's Label Studio ML backend routes (serving/label_studio.py) without Label Studio: health, setup's
mapping, predictions of pictures read from the operator's folder (and no other), the webhook answered honestly.
A real Label Studio drives them in test_label_studio_server.py."""
import time
from pathlib import Path

import numpy as np
import pytest

from solov2 import Segmenter
from solov2.core.paths import SAMPLE_IMAGES
from solov2.data.label_studio import decode_brush
from tests.serving.running import SMALL_MODEL, ServeSettings, serving

BRUSHES = ('<View><Image name="image" value="$image"/><BrushLabels name="label" toName="image">{}</BrushLabels>'
           '</View>')
ALL = ''.join(f'<Label value="{name}"/>' for name in ('circle', 'square', 'triangle', 'star'))


@pytest.fixture(scope='module')
def client():
    with serving(ServeSettings(SMALL_MODEL, label_studio_files=str(SAMPLE_IMAGES))) as client:
        yield client


def test_health_answers_at_once_and_setup_maps_labels_by_name(client):
    began = time.perf_counter()
    health = client.get('/label-studio/health')
    assert health.status_code == 200 and health.json()['status'] == 'UP'
    assert time.perf_counter() - began < 0.5
    setup = client.post('/label-studio/setup', json={'project': '1.1', 'schema': BRUSHES.format(ALL)})
    assert setup.status_code == 200 and setup.json()['model_version'] == 'solov2-ShapesR18-shapes_r18.pdparams'
    refused = client.post('/label-studio/setup', json={'schema': BRUSHES.format('<Label value="dog"/>')})
    assert refused.status_code == 400
    assert "labels this model has no class of: dog; the model's classes: circle, square" in refused.json()['error']


def test_predict_answers_the_segmenters_instances_of_the_configs_labels(client):
    picture = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[0]
    truth = Segmenter(SMALL_MODEL)(str(picture))
    only = truth.names[0]
    answer = client.post('/label-studio/predict', json={'tasks': [{'id': 7, 'data': {'image': picture.name}}],
                                                         'label_config': BRUSHES.format(f'<Label value="{only}"/>')})
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()['results']
    wanted = [instance for instance in truth if instance.name == only]
    assert [one['value']['brushlabels'] for one in prediction['result']] == [[only]] * len(wanted)
    for one, instance in zip(prediction['result'], wanted):
        assert (decode_brush(one['value']['rle'], *instance.image_size) == instance.mask).all()
        assert one['score'] == pytest.approx(instance.score, abs=1e-4)
    assert np.isclose(prediction['score'], np.mean([i.score for i in wanted]), atol=1e-3)


@pytest.mark.parametrize('where, error', [
    ('../README.md', 'task 1: its picture ../README.md is not a file in the folder of pictures this service reads'),
    ('/etc/hostname', 'is not a file in the folder'),
    ('/data/upload/1/a.jpg', 'this service was not given its address (label_studio_url)'),
    ('http://169.254.169.254/latest', 'was not given its address')])
def test_predict_reads_no_picture_outside_what_the_operator_gave(client, where, error):
    answer = client.post('/label-studio/predict', json={'tasks': [{'id': 1, 'data': {'image': where}}],
                                                         'label_config': BRUSHES.format(ALL)})
    assert answer.status_code == 400 and error in answer.json()['error']


def test_the_webhook_trains_nothing_and_says_so(client):
    assert client.post('/label-studio/webhook', json={'action': 'ANNOTATION_CREATED'}).json()['status'] == 'ignored'
    training = client.post('/label-studio/webhook', json={'action': 'START_TRAINING'})
    assert training.status_code == 501 and 'solov2 labelstudio2coco' in training.json()['error']
    assert client.post('/label-studio/train', json={}).status_code == 501
    assert client.get('/label-studio/versions').json() == {'versions': ['solov2-ShapesR18-shapes_r18.pdparams']}
    assert client.post('/label-studio/predict', content=b'not json').status_code == 400


def test_the_token_comes_from_the_environment_never_a_flag(monkeypatch):
    from solov2.tools import serve
    monkeypatch.setenv('LABEL_STUDIO_API_KEY', 'a-token')
    assert serve.settings_of(serve.parse_args(['--backend', 'dygraph'])).label_studio_token == 'a-token'
    with pytest.raises(SystemExit):
        serve.parse_args(['--label-studio-token', 'a-token'])


def test_a_task_that_fails_fails_its_batch_naming_it(client):
    tasks = [{'id': 1, 'data': {'image': 'shapes_000023.jpg'}}, {'id': 2, 'data': {'image': 'missing.jpg'}},
             {'id': 3, 'data': {}}]
    answer = client.post('/label-studio/predict', json={'tasks': tasks, 'label_config': BRUSHES.format(ALL)})
    assert answer.status_code == 400 and answer.json()['error'].startswith(('task 2: its picture missing.jpg',
                                                                            'task 3: it has no picture'))
    assert client.get('/label-studio/health').status_code == 200
