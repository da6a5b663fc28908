"""The service as the ML backend of a real Label Studio (docs/label_studio.md): Label Studio (its own venv,
``SOLOV2_LABEL_STUDIO_VENV``, as .ci/run installs it; SQLite in a temporary folder, 127.0.0.1 only; legacy
tokens off, as it starts by default: the service and the test hold a personal access token) gets a polygon
project (both tags, the labels a team writes) and a brush project over the sample pictures, connects the service
through its own API, retrieves the predictions, and stores what the Segmenter answers; a label added keeps the
backend connected; a task whose picture is missing or not a picture is the only one without a prediction; the
projects' corrected exports convert to COCO and fine-tune. Skipped without that venv unless
SOLOV2_REQUIRE_SYSTEM_PACKAGES is set (CI)."""
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2 import Segmenter
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.data.coco import segmentation_to_rle
from solov2.data.label_studio import decode_brush, points_polygon
from solov2.tools import labelstudio2coco, train
from tests.helpers import REPO_DIR, TINY_TRAINING, free_port
from tests.serving.running import SMALL_MODEL, ServeSettings, httpx, serving

VENV = os.environ.get('SOLOV2_LABEL_STUDIO_VENV', '')
LABEL_STUDIO = Path(VENV) / 'bin' / 'label-studio'
REQUIRED = bool(os.environ.get('SOLOV2_REQUIRE_SYSTEM_PACKAGES'))
pytestmark = pytest.mark.skipif(not LABEL_STUDIO.is_file() and not REQUIRED,
                                reason='Label Studio is not installed: SOLOV2_LABEL_STUDIO_VENV names its venv '
                                       '(.ci/run installs one)')
USER, PASSWORD = 'ci@example.com', 'a-password-1'
PICTURES = sorted((REPO_DIR / 'images').glob('*.jpg'))
CONFIG = ('<View><Image name="image" value="$image"/><{tag} name="label" toName="image">{labels}</{tag}></View>')
MIXED = ('<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">{labels}</BrushLabels>'
         '<PolygonLabels name="label" toName="image">{labels}</PolygonLabels>'
         '<RectangleLabels name="box" toName="image" smart="true">{labels}</RectangleLabels></View>')   # polygons
TEAM = ('Circle', 'Square', 'Triangle', 'Star', 'hexagon')     # the model's classes but for case, and one it lacks
START_S = 300                                     # the first start migrates its SQLite database (about 60 s here)


class PersonalToken(httpx.Auth):
    """Label Studio's personal access token as its API takes it: exchanged at /api/token/refresh/ for an access
    token sent as ``Bearer``, exchanged again on a 401 (access tokens last 5 minutes)."""
    requires_request_body = True

    def __init__(self, base_url: str, token: str):
        self.base_url, self.token, self.access = base_url, token, ''

    def auth_flow(self, request):
        for attempt in range(2):
            if attempt or not self.access:
                self.access = httpx.post(f'{self.base_url}/api/token/refresh/', json={'refresh': self.token}
                                         ).raise_for_status().json()['access']
            request.headers['Authorization'] = f'Bearer {self.access}'
            response = yield request
            if response.status_code != 401:
                return


def personal_access_token(base_url: str) -> str:
    """A personal access token made as a person makes one: logged in, Account & Settings' "Create" button."""
    with httpx.Client(base_url=base_url, timeout=60) as browser:
        browser.get('/user/login/').raise_for_status()
        browser.post('/user/login/', data={'email': USER, 'password': PASSWORD,
                                           'csrfmiddlewaretoken': browser.cookies['csrftoken']},
                     headers={'Referer': f'{base_url}/user/login/'})
        return browser.post('/api/token/', headers={'X-CSRFToken': browser.cookies['csrftoken'],
                                                    'Referer': f'{base_url}/'}).raise_for_status().json()['token']


@pytest.fixture(scope='module')
def label_studio(tmp_path_factory):
    """A running Label Studio's API client, with a personal access token (its data under a temporary folder);
    stopped after the module."""
    assert LABEL_STUDIO.is_file(), f'SOLOV2_LABEL_STUDIO_VENV={VENV!r} has no bin/label-studio: install it (.ci/run)'
    data, port = tmp_path_factory.mktemp('label_studio'), free_port()
    env = {**os.environ, 'LABEL_STUDIO_BASE_DATA_DIR': str(data), 'ML_BLOCK_LOCAL_IP': 'false',
           'SSRF_PROTECTION_ENABLED': 'false', 'PYTHONWARNINGS': 'ignore'}
    log = (data / 'log.txt').open('wb')
    process = subprocess.Popen([str(LABEL_STUDIO), 'start', '--no-browser', '--data-dir', str(data),
                                '--internal-host', '127.0.0.1', '--port', str(port), '--username', USER,
                                '--password', PASSWORD], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    base_url, client = f'http://127.0.0.1:{port}', None
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f'{base_url}/health').status_code == 200:
                    break
            time.sleep(1)
        else:
            pytest.fail(f'Label Studio did not start: {(data / "log.txt").read_text(errors="replace")[-2000:]}')
        token = personal_access_token(base_url)
        client = httpx.Client(base_url=base_url, auth=PersonalToken(base_url, token), timeout=120)
        client.data_dir, client.token = data, token
        yield client
    finally:
        if client is not None:
            client.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


@pytest.fixture(scope='module')
def backend(label_studio):
    """The ML backend address of the service (the shipped model), fetching pictures from ``label_studio`` with
    the personal access token."""
    settings = ServeSettings(SMALL_MODEL, label_studio_url=str(label_studio.base_url).rstrip('/'),
                             label_studio_token=label_studio.token)
    with serving(settings) as client:
        began = time.perf_counter()
        health = client.get('/label-studio/health').json()
        took = time.perf_counter() - began
        assert health['status'] == 'UP' and health['label_studio']['token'] == 'personal access token', health
        assert 'problem' not in health['label_studio'], health
        assert took < 1, 'Label Studio waits 1 s for /health'
        print(f'\nGET /label-studio/health answered in {took * 1000:.1f} ms')
        yield str(client.base_url).rstrip('/') + '/label-studio'


@pytest.fixture(scope='module')
def segmenter():
    """The Segmenter the service runs: its instances are the truth the stored predictions are held to."""
    with Segmenter(SMALL_MODEL) as model:
        yield model


def new_project(label_studio, config: str, files=(), tasks=()) -> int:
    """A new project of ``config`` with ``files`` [(name, bytes)] uploaded and ``tasks`` (data dicts) imported."""
    project = label_studio.post('/api/projects', json={'title': 'solov2 test', 'label_config': config}
                                ).raise_for_status().json()['id']
    if files:
        uploads = [(f'file{index}', (name, data, 'image/jpeg')) for index, (name, data) in enumerate(files)]
        label_studio.post(f'/api/projects/{project}/import', files=uploads).raise_for_status()
    if tasks:
        label_studio.post(f'/api/projects/{project}/import', json=list(tasks)).raise_for_status()
    return project


def connect(label_studio, backend, project: int) -> int:
    """The id of the service connected as ``project``'s ML backend (Label Studio calls /health and /setup), its
    interactive pre-annotations on."""
    connected = label_studio.post('/api/ml', json={'url': backend, 'project': project, 'title': 'solov2',
                                                   'is_interactive': True}).json()
    assert connected['readable_state'] == 'Connected', connected
    return connected['id']


def retrieved(label_studio, project: int) -> list:
    """[(task, its stored predictions)] of ``project`` after *Retrieve Predictions* on all its tasks."""
    label_studio.post('/api/dm/actions', params={'id': 'retrieve_tasks_predictions', 'project': project},
                      json={'selectedItems': {'all': True, 'excluded': []}}).raise_for_status()
    tasks = label_studio.get('/api/tasks', params={'project': project, 'fields': 'all'}).json()['tasks']
    stored = [label_studio.get('/api/predictions', params={'task': task['id']}).json() for task in tasks]
    return list(zip(tasks, stored))


def project_with_predictions(label_studio, backend, config: str) -> tuple[int, int, list]:
    """(a new project of ``config`` over the sample pictures, its ML backend the service; the backend's id; its
    tasks with the predictions Label Studio retrieved and stored)."""
    project = new_project(label_studio, config, [(path.name, path.read_bytes()) for path in PICTURES])
    return project, connect(label_studio, backend, project), retrieved(label_studio, project)


def region_masks(prediction: dict) -> list:
    """[(label, [H, W] bool)] of a stored prediction, one an instance: a polygon's parts (regions whose parentID
    names its first) merged."""
    instances, first = [], {}
    for one in prediction['result']:
        height, width, value = one['original_height'], one['original_width'], one['value']
        if one['type'] == 'brushlabels':
            mask = decode_brush(value['rle'], height, width)
        else:
            mask = mask_util.decode(segmentation_to_rle([points_polygon(value['points'], height, width)],
                                                        height, width)).astype(bool)
        label = value[one['type']][0]
        if one.get('parentID') in first:
            place = first[one['parentID']]
            instances[place] = (label, instances[place][1] | mask)
        else:
            first[one['id']] = len(instances)
            instances.append((label, mask))
    return instances


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def check_stored(tasks, segmenter, least_iou: float) -> list:
    """Each task's one stored prediction holds the Segmenter's instances of its picture: classes equal (the
    labels as the team wrote them), each mask's IoU at least ``least_iou``; a line a picture for the run's
    report."""
    table, by_name = [], {path.name: path for path in PICTURES}
    for task, predictions in tasks:
        assert len(predictions) == 1 and predictions[0]['model_version'].startswith('solov2-'), predictions
        picture = by_name[task['data']['image'].rsplit('-', 1)[-1]]      # uploads are named '<8 hex>-<name>'
        truth = segmenter(str(picture))
        stored = region_masks(predictions[0])
        assert [label.casefold() for label, _ in stored] == truth.names, picture.name
        ious = [iou(mask, instance.mask) for (_, mask), instance in zip(stored, truth)]
        assert min(ious, default=1) >= least_iou, (picture.name, ious)
        table.append(f'{picture.name}: {len(stored)} instances ({len(predictions[0]["result"])} regions), IoU '
                     f'least {min(ious, default=1):.4f} mean {np.mean(ious) if ious else 1:.4f}')
    return table


def accept_all_but_one(label_studio, tasks) -> None:
    """A person accepting each prediction as the task's annotation, the last task left unannotated."""
    for task, predictions in tasks[:-1]:
        label_studio.post(f'/api/tasks/{task["id"]}/annotations', json={
            'result': predictions[0]['result'], 'was_cancelled': False}).raise_for_status()


def exported_coco(label_studio, project: int, tasks, tmp_path, capsys) -> tuple[Path, Path, Path]:
    """(the project's JSON export converted by ``solov2 labelstudio2coco``, its pictures' folder, the export)."""
    export = tmp_path / 'export.json'
    export.write_bytes(label_studio.get(f'/api/projects/{project}/export', params={
        'exportType': 'JSON', 'download_all_tasks': 'true'}).raise_for_status().content)
    assert len(json.loads(export.read_text())) == len(tasks)
    pictures, coco = label_studio.data_dir / 'media' / 'upload' / str(project), tmp_path / 'coco' / 'train.json'
    (tmp_path / 'empty').mkdir()
    assert labelstudio2coco.main([str(export), str(coco), '--images', str(tmp_path / 'empty')]) == 2
    assert f'{len(tasks) - 1} tasks have no picture in' in capsys.readouterr().err
    assert labelstudio2coco.main([str(export), str(coco), '--images', str(pictures)]) == 0
    line = capsys.readouterr().out
    with capsys.disabled():
        print(line)
    assert f'{len(tasks) - 1} images' in line and 'left out: 1 tasks without an annotation' in line
    return coco, pictures, export


def json_min_coco(label_studio, project: int, pictures: Path, tmp_path, capsys) -> dict:
    """The project's JSON-MIN export converted by ``solov2 labelstudio2coco``."""
    export, coco = tmp_path / 'export_min.json', tmp_path / 'min' / 'train.json'
    export.write_bytes(label_studio.get(f'/api/projects/{project}/export', params={
        'exportType': 'JSON_MIN', 'download_all_tasks': 'true'}).raise_for_status().content)
    assert labelstudio2coco.main([str(export), str(coco), '--images', str(pictures)]) == 0
    capsys.readouterr()
    return json.loads(coco.read_text())


@pytest.mark.parametrize('tag, least_iou', [('PolygonLabels', 0.9), ('BrushLabels', 0.95)])
def test_label_studio_stores_the_segmenters_instances_and_its_export_fine_tunes(
        label_studio, backend, segmenter, tag, least_iou, tmp_path, capsys):
    """The polygon project: both tags (polygons predicted), the team's labels; the brush one: the model's."""
    polygons = tag == 'PolygonLabels'
    labels = ''.join(f'<Label value="{name}"/>' for name in (TEAM if polygons else segmenter.class_names))
    config = MIXED.format(labels=labels) if polygons else CONFIG.format(tag=tag, labels=labels)
    project, ml, tasks = project_with_predictions(label_studio, backend, config)
    assert len(tasks) == len(PICTURES)
    table = check_stored(tasks, segmenter, least_iou)
    with capsys.disabled():                         # what the run shows (-s): the stored predictions against the truth
        print(f'\n{tag} project (labelling config: {config}): '
              f'Label Studio stored {len(tasks)} predictions\n  ' + '\n  '.join(table))
    if polygons:
        drawn = a_box_drawn_returns_its_instance(label_studio, ml, tasks, segmenter)
        with capsys.disabled():
            print(drawn)
        a_label_added_keeps_pre_annotation_on(label_studio, project, ml, config)
    accept_all_but_one(label_studio, tasks)
    coco, pictures, export = exported_coco(label_studio, project, tasks, tmp_path, capsys)
    converted = json.loads(coco.read_text())
    names = {c['id']: c['name'] for c in converted['categories']}
    for image in converted['images']:             # the instances trained on are the Segmenter's, one an instance
        truth = segmenter(str(pictures / image['file_name']))
        mine = [a for a in converted['annotations'] if a['image_id'] == image['id']]
        assert [names[a['category_id']].casefold() for a in mine] == truth.names, image['file_name']
    minimal = json_min_coco(label_studio, project, pictures, tmp_path, capsys)
    if polygons:                                # JSON-MIN keeps no parentID: each part an instance
        assert minimal['images'] == converted['images']
        assert len(minimal['annotations']) == sum(len(a['segmentation']) for a in converted['annotations'])
        return                                  # one fine-tune is enough: the brush export's
    assert minimal == converted
    dataset = tmp_path / 'mine'                 # docs/label_studio.md's loop: a validation split, then train.py
    assert labelstudio2coco.main([str(export), str(dataset / 'annotations' / 'instances_train.json'), '--images',
                                  str(pictures), '--val', str(dataset / 'annotations' / 'instances_val.json')]) == 0
    run = tmp_path / 'run'
    assert train.main(['--weights', SHIPPED_WEIGHTS, '--output', str(run), '--max-iters', '3', '--opt',
                       f'dataset_dir={dataset}', f'train_images={pictures}', f'val_images={pictures}',
                       *TINY_TRAINING, 'warmup_iters=1']) == 0
    assert (run / 'last' / 'model.pdparams').is_file()


def a_box_drawn_returns_its_instance(label_studio, ml: int, tasks, segmenter) -> str:
    """Interactive pre-annotation (the backend connected with *Interactive preannotations* on): a box drawn
    with the smart RectangleLabels tool around each instance of a sample picture comes back, through Label
    Studio's interactive request, as that instance's mask; the line that says so."""
    task = next(task for task, _ in tasks if task['data']['image'].endswith('shapes_wide.jpg'))
    truth = segmenter(str(REPO_DIR / 'images' / 'shapes_wide.jpg'))
    height, width = truth.image_size
    took, ious = [], []
    for instance in truth:
        x0, y0, x1, y1 = instance.box
        drawn = {'from_name': 'box', 'to_name': 'image', 'type': 'rectanglelabels', 'original_width': width,
                 'original_height': height, 'value': {
                     'x': max(0, x0 - 3) / width * 100, 'y': max(0, y0 - 3) / height * 100,
                     'width': (min(width, x1 + 3) - max(0, x0 - 3)) / width * 100,
                     'height': (min(height, y1 + 3) - max(0, y0 - 3)) / height * 100, 'rotation': 0,
                     'rectanglelabels': [instance.name.capitalize()]}}
        began = time.perf_counter()
        answer = label_studio.post(f'/api/ml/{ml}/interactive-annotating', json={
            'task': task['id'], 'context': {'result': [drawn]}}).raise_for_status().json()
        took.append(time.perf_counter() - began)
        ((label, mask),) = region_masks(answer['data'])
        ious.append(iou(mask, instance.mask))
        assert (label, ious[-1] >= 0.9) == (instance.name.capitalize(), True), ious[-1]
    return (f'{len(took)} boxes drawn on shapes_wide.jpg: each its instance (IoU least {min(ious):.4f}), answered '
            f'in {max(took) * 1000:.0f} ms at most through Label Studio')


def a_label_added_keeps_pre_annotation_on(label_studio, project: int, ml: int, config: str) -> None:
    """A label added to the connected project (before teaching the model a new class): the backend stays
    connected and a new task gets its prediction."""
    added = config.replace('<Label value="hexagon"/>', '<Label value="hexagon"/><Label value="pentagon"/>')
    label_studio.patch(f'/api/projects/{project}', json={'label_config': added}).raise_for_status()
    label_studio.post(f'/api/projects/{project}/import', files=[
        ('file', ('again.jpg', PICTURES[0].read_bytes(), 'image/jpeg'))]).raise_for_status()
    tasks = retrieved(label_studio, project)
    assert [len(stored) for _, stored in tasks] == [1] * len(tasks), 'a task without its prediction'
    state = label_studio.get(f'/api/ml/{ml}').json()
    assert state['readable_state'] == 'Connected', state
    label_studio.delete(f'/api/tasks/{tasks[-1][0]["id"]}').raise_for_status()


def test_a_task_that_fails_is_the_only_one_without_a_prediction(label_studio, backend, caplog):
    """6 tasks, one picture missing and one not a picture: 4 stored predictions, the 2 reasons in the log."""
    labels = ''.join(f'<Label value="{name}"/>' for name in TEAM)
    files = [(path.name, path.read_bytes()) for path in PICTURES[:4]] + [('notes.jpg', b'not a picture')]
    project = new_project(label_studio, CONFIG.format(tag='PolygonLabels', labels=labels), files)
    label_studio.post(f'/api/projects/{project}/import', json=[{'image': f'/data/upload/{project}/missing.jpg'}]
                      ).raise_for_status()
    connect(label_studio, backend, project)
    with caplog.at_level(logging.WARNING, 'solov2.serving.label_studio'):
        tasks = retrieved(label_studio, project)
    stored = {task['data']['image'].rsplit('/', 1)[-1].split('-', 1)[-1]: len(predictions)
              for task, predictions in tasks}
    assert stored == {**{path.name: 1 for path in PICTURES[:4]}, 'notes.jpg': 0, 'missing.jpg': 0}
    reasons = [record.getMessage() for record in caplog.records if 'not predicted' in record.getMessage()]
    assert len(reasons) == 2, reasons
    assert any('missing.jpg) not predicted (502): Label Studio answered' in line for line in reasons), reasons
    assert any('notes.jpg) not predicted (400)' in line for line in reasons), reasons
