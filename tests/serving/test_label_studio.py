"""The service's Label Studio ML backend routes (serving/label_studio.py) without Label Studio: health, setup's
mapping, predictions of pictures read from the operator's folder (and no other), a failed task's empty result and
logged reason, the webhook answered honestly. A real Label Studio drives them in test_label_studio_server.py."""
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from solov2 import Segmenter
from solov2.core.paths import SAMPLE_IMAGES
from solov2.data.label_studio import decode_brush
from solov2.serving.uncertainty import uncertainty
from tests.serving.running import SMALL_MODEL, ServeSettings, serving

BRUSHES = ('<View><Image name="image" value="$image"/><BrushLabels name="label" toName="image">{}</BrushLabels>'
           '</View>')
ALL = ''.join(f'<Label value="{name}"/>' for name in ('circle', 'square', 'triangle', 'star'))


MIXED = ('<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">{}</BrushLabels>'
         '<PolygonLabels name="polygon" toName="image">{}</PolygonLabels></View>')


@pytest.fixture(scope='module')
def pictures(tmp_path_factory):
    """The sample pictures, a file that is not a picture beside them."""
    folder = tmp_path_factory.mktemp('pictures')
    for path in Path(SAMPLE_IMAGES).glob('*.jpg'):
        shutil.copy(path, folder / path.name)
    (folder / 'notes.jpg').write_text('not a picture')
    return folder


@pytest.fixture(scope='module')
def client(pictures):
    with serving(ServeSettings(SMALL_MODEL, label_studio_files=str(pictures))) as client:
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
    assert "has no label of this model's classes (circle, square" in refused.json()['error']


def test_labels_a_team_writes_map_to_the_classes(client, caplog):
    """Case aside, a label the model lacks left to people (named), predicted_values mapping another name."""
    team = ''.join(f'<Label value="{name}"/>' for name in ('Circle', 'Square', 'Triangle', 'Star', 'hexagon'))
    with caplog.at_level(logging.INFO, 'solov2.serving.label_studio'):
        setup = client.post('/label-studio/setup', json={'project': '3.1', 'schema': BRUSHES.format(team)})
    assert setup.status_code == 200 and setup.json()['labels_not_predicted'] == ['hexagon']
    assert 'labels hexagon are no class of this model' in caplog.text
    picture = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[0]
    truth = Segmenter(SMALL_MODEL)(str(picture))
    mapped = '<Label value="Round" predicted_values="circle"/><Label value="Box" predicted_values="square"/>'
    for labels, names in ((team, {name: name.capitalize() for name in truth.names}),
                          (mapped, {'circle': 'Round', 'square': 'Box'})):
        answer = client.post('/label-studio/predict', json={'tasks': [{'id': 1, 'data': {'image': picture.name}}],
                                                             'label_config': BRUSHES.format(labels)})
        (prediction,) = answer.json()['results']
        assert [one['value']['brushlabels'][0] for one in prediction['result']] == [
            names[name] for name in truth.names if name in names]
    wrong = client.post('/label-studio/setup', json={'schema': BRUSHES.format(
        '<Label value="Round" predicted_values="circle,disc"/>')})
    assert wrong.status_code == 400 and 'predicted_values naming classes this model lacks: disc' in wrong.text


@pytest.mark.parametrize('prefer, kind', [('PolygonLabels', 'polygonlabels'), ('BrushLabels', 'brushlabels')])
def test_a_config_with_brushes_and_polygons_predicts_the_tag_chosen(pictures, prefer, kind):
    labels = '<Label value="circle"/><Label value="square"/><Label value="triangle"/><Label value="star"/>'
    settings = ServeSettings(SMALL_MODEL, label_studio_files=str(pictures), label_studio_tag=prefer)
    with serving(settings) as client:
        assert client.post('/label-studio/setup', json={'schema': MIXED.format(labels, labels)}).status_code == 200
        answer = client.post('/label-studio/predict', json={
            'tasks': [{'id': 1, 'data': {'image': 'shapes_000023.jpg'}}], 'label_config': MIXED.format(labels, labels)})
    (prediction,) = answer.json()['results']
    assert prediction['result'] and {one['type'] for one in prediction['result']} == {kind}
    assert {one['from_name'] for one in prediction['result']} == {kind[:-6] if kind == 'brushlabels' else 'polygon'}


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
    candidates = Segmenter(SMALL_MODEL)(str(picture), min_score=0)       # the score: its uncertainty
    assert np.isclose(prediction['score'], uncertainty(candidates.scores.tolist()), atol=1e-3)


@pytest.mark.parametrize('where, error', [
    ('../README.md', 'task 1: its picture ../README.md is not a file in the folder of pictures this service reads'),
    ('/etc/hostname', 'is not a file in the folder'),
    ('/data/upload/1/a.jpg', 'this service was not given its address (label_studio_url)'),
    ('http://169.254.169.254/latest', 'was not given its address')])
def test_predict_reads_no_picture_outside_what_the_operator_gave(client, where, error):
    answer = client.post('/label-studio/predict', json={'tasks': [{'id': 1, 'data': {'image': where}}],
                                                         'label_config': BRUSHES.format(ALL)})
    assert answer.status_code == 200 and answer.json()['results'] == [[]]
    (failed,) = answer.json()['errors']
    assert failed['task'] == 1 and error in 'task 1: ' + failed['error']


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


def test_every_task_that_can_be_answered_is_and_a_failed_one_is_logged(client, caplog):
    """6 tasks, one picture missing and one not a picture: 4 predictions, 2 empty lists (Label Studio stores
    none of those), each failure's task and reason logged at WARNING with the request id."""
    names = ['shapes_000023.jpg', 'missing.jpg', 'shapes_000042.jpg', 'notes.jpg', 'shapes_000057.jpg',
             'shapes_wide.jpg']
    tasks = [{'id': 10 + index, 'data': {'image': name}} for index, name in enumerate(names)]
    with caplog.at_level(logging.WARNING, 'solov2.serving.label_studio'):
        answer = client.post('/label-studio/predict', json={'tasks': tasks, 'label_config': BRUSHES.format(ALL)},
                             headers={'X-Request-ID': 'six-tasks'})
    assert answer.status_code == 200
    results = answer.json()['results']
    assert [bool(result) for result in results] == [True, False, True, False, True, True]
    assert all(result['result'] for result in results if result)
    assert [error['task'] for error in answer.json()['errors']] == [11, 13]
    lines = [record.getMessage() for record in caplog.records if 'not predicted' in record.getMessage()]
    assert len(lines) == 2 and all(line.startswith('six-tasks Label Studio task 1') for line in lines)
    assert any('task 11 (missing.jpg) not predicted (400): its picture missing.jpg is not a file' in line
               for line in lines)
    assert any('task 13 (notes.jpg) not predicted (400)' in line for line in lines)


def test_a_refusal_is_logged_with_its_request_id(client, caplog):
    with caplog.at_level(logging.WARNING, 'solov2.serving.label_studio'):
        client.post('/label-studio/setup', json={'schema': '<View>'}, headers={'X-Request-ID': 'bad-setup'})
        client.post('/label-studio/webhook', content=b'not json', headers={'X-Request-ID': 'bad-hook'})
    assert 'bad-setup Label Studio /label-studio/setup refused 400: the labelling config is not XML' in caplog.text
    assert 'bad-hook Label Studio /label-studio/webhook refused 400: the body is not a JSON object' in caplog.text


def test_predict_answers_the_workers_bytes(client, monkeypatch):
    """The prediction is made of the ``Instances`` in the service's worker (no JSON of them read back) and the
    route answers its bytes: FastAPI encodes no dict on the event loop."""
    import fastapi.routing

    from solov2.api.instances import Instances
    from solov2.serving import label_studio
    made, encoded = [], []
    real_prediction, real_serialize = label_studio.prediction, fastapi.routing.serialize_response

    def prediction(instances, **kwargs):
        made.append(type(instances))
        return real_prediction(instances, **kwargs)

    async def serialize_response(*args, **kwargs):
        encoded.append(kwargs.get('response_content'))
        return await real_serialize(*args, **kwargs)
    monkeypatch.setattr(label_studio, 'prediction', prediction)
    monkeypatch.setattr(fastapi.routing, 'serialize_response', serialize_response)
    answer = client.post('/label-studio/predict', json={'tasks': [{'id': 1, 'data': {'image': 'shapes_wide.jpg'}}],
                                                         'label_config': BRUSHES.format(ALL)})
    assert answer.status_code == 200 and answer.json()['results'][0]['result']
    assert made == [Instances] and encoded == []


def test_the_parts_of_one_polygon_instance_name_its_first(client):
    """Polygons: a region per part, the first part's id the parentID of the others; one region without a parent
    per instance of the Segmenter."""
    polygons = BRUSHES.replace('BrushLabels', 'PolygonLabels').format(ALL)
    names = sorted(path.name for path in Path(SAMPLE_IMAGES).glob('*.jpg'))
    tasks = [{'id': index, 'data': {'image': name}} for index, name in enumerate(names)]
    answer = client.post('/label-studio/predict', json={'tasks': tasks, 'label_config': polygons})
    segmenter, parts = Segmenter(SMALL_MODEL), 0
    for name, prediction in zip(names, answer.json()['results']):
        truth = segmenter(str(Path(SAMPLE_IMAGES) / name))
        firsts = {one['id']: one['value']['polygonlabels'] for one in prediction['result'] if 'parentID' not in one}
        assert sorted(label for (label,) in firsts.values()) == sorted(truth.names), name
        for one in prediction['result']:
            if 'parentID' in one:
                parts += 1
                assert firsts[one['parentID']] == one['value']['polygonlabels']
    assert parts > 0, 'no instance in several parts among the samples: this test no longer tests them'


def smart_box(instance, label: str, pad: int = 3) -> dict:
    """A box an annotator draws with a smart RectangleLabels tool around ``instance``, as Label Studio sends it."""
    height, width = instance.image_size
    x0, y0, x1, y1 = instance.box
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
    return {'from_name': 'box', 'to_name': 'image', 'type': 'rectanglelabels', 'original_width': width,
            'original_height': height, 'value': {'x': x0 / width * 100, 'y': y0 / height * 100,
                                                 'width': (x1 - x0) / width * 100, 'height': (y1 - y0) / height * 100,
                                                 'rotation': 0, 'rectanglelabels': [label]}}


def test_a_box_or_a_point_drawn_returns_the_mask_of_the_instance_it_holds(client):
    """Interactive pre-annotation: Label Studio's /predict with params.context holding a smart tool's region."""
    picture = Path(SAMPLE_IMAGES) / 'shapes_wide.jpg'
    truth = Segmenter(SMALL_MODEL)(str(picture))
    for instance in truth:
        label = instance.name.capitalize()
        ys, xs = np.nonzero(instance.crop)
        point = {'from_name': 'point', 'to_name': 'image', 'type': 'keypointlabels', 'is_positive': True,
                 'value': {'x': (instance.box[0] + xs[len(xs) // 2] + 0.5) / instance.image_size[1] * 100,
                           'y': (instance.box[1] + ys[len(ys) // 2] + 0.5) / instance.image_size[0] * 100,
                           'keypointlabels': [label]}}
        for drawn in (smart_box(instance, label), point):
            answer = client.post('/label-studio/predict', json={
                'tasks': [{'id': 1, 'data': {'image': picture.name}}], 'params': {'context': {'result': [drawn]}},
                'label_config': BRUSHES.format(ALL)})
            (prediction,) = answer.json()['results']
            (region,) = prediction['result']
            mask = decode_brush(region['value']['rle'], *instance.image_size)
            iou = (mask & instance.mask).sum() / (mask | instance.mask).sum()
            assert iou >= 0.9 and region['value']['brushlabels'] == [instance.name], (drawn['type'], iou)
    nowhere = {'from_name': 'point', 'to_name': 'image', 'type': 'keypointlabels', 'value': {'x': 0.1, 'y': 0.1}}
    answer = client.post('/label-studio/predict', json={
        'tasks': [{'id': 1, 'data': {'image': picture.name}}], 'params': {'context': {'result': [nowhere]}},
        'label_config': BRUSHES.format(ALL)})
    assert answer.json()['results'] == [{'result': [], 'score': 0.0, 'model_version': answer.json()['model_version']}]
