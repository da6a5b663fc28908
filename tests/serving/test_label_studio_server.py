"""The service as the ML backend of a real Label Studio (docs/label_studio.md): Label Studio (its own venv,
``SOLOV2_LABEL_STUDIO_VENV``, as .ci/run installs it; SQLite in a temporary folder, 127.0.0.1 only) gets a
polygon project and a brush project over the sample pictures, connects the service through its own API,
retrieves the predictions, and stores what the Segmenter answers; the projects' corrected exports convert to
COCO and fine-tune. Skipped without that venv unless SOLOV2_REQUIRE_SYSTEM_PACKAGES is set (CI)."""
import contextlib
import json
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
TOKEN = 'solov2' + '0' * 34                       # the first user's legacy API token, given at the start
PICTURES = sorted((REPO_DIR / 'images').glob('*.jpg'))
CONFIG = ('<View><Image name="image" value="$image"/><{tag} name="label" toName="image">{labels}</{tag}></View>')
START_S = 300                                     # the first start migrates its SQLite database (about 60 s here)


@pytest.fixture(scope='module')
def label_studio(tmp_path_factory):
    """A running Label Studio's API client (its data under a temporary folder); stopped after the module."""
    assert LABEL_STUDIO.is_file(), f'SOLOV2_LABEL_STUDIO_VENV={VENV!r} has no bin/label-studio: install it (.ci/run)'
    data, port = tmp_path_factory.mktemp('label_studio'), free_port()
    env = {**os.environ, 'LABEL_STUDIO_BASE_DATA_DIR': str(data), 'ML_BLOCK_LOCAL_IP': 'false',
           'SSRF_PROTECTION_ENABLED': 'false', 'PYTHONWARNINGS': 'ignore'}
    log = (data / 'log.txt').open('wb')
    process = subprocess.Popen([str(LABEL_STUDIO), 'start', '--no-browser', '--data-dir', str(data),
                                '--internal-host', '127.0.0.1', '--port', str(port), '--username', 'ci@example.com',
                                '--password', 'a-password-1', '--user-token', TOKEN, '--enable-legacy-api-token'],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f'http://127.0.0.1:{port}', headers={'Authorization': f'Token {TOKEN}'},
                          timeout=120)
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if client.get('/api/projects').status_code == 200:
                    break
            time.sleep(1)
        else:
            pytest.fail(f'Label Studio did not start: {(data / "log.txt").read_text(errors="replace")[-2000:]}')
        client.data_dir = data
        yield client
    finally:
        client.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


@pytest.fixture(scope='module')
def backend(label_studio):
    """The ML backend address of the service (the shipped model), fetching pictures from ``label_studio``."""
    settings = ServeSettings(SMALL_MODEL, label_studio_url=str(label_studio.base_url).rstrip('/'),
                             label_studio_token=TOKEN)
    with serving(settings) as client:
        began = time.perf_counter()
        assert client.get('/label-studio/health').json()['status'] == 'UP'
        took = time.perf_counter() - began
        assert took < 1, 'Label Studio waits 1 s for /health'
        print(f'\nGET /label-studio/health answered in {took * 1000:.1f} ms')
        yield str(client.base_url).rstrip('/') + '/label-studio'


@pytest.fixture(scope='module')
def segmenter():
    """The Segmenter the service runs: its instances are the truth the stored predictions are held to."""
    with Segmenter(SMALL_MODEL) as model:
        yield model


def project_with_predictions(label_studio, backend, tag: str, class_names) -> tuple[int, list]:
    """(a new project labelling the sample pictures with ``tag``, its ML backend the service; its tasks with
    the predictions Label Studio retrieved and stored)."""
    labels = ''.join(f'<Label value="{name}"/>' for name in class_names)
    project = label_studio.post('/api/projects', json={'title': tag, 'label_config': CONFIG.format(
        tag=tag, labels=labels)}).raise_for_status().json()['id']
    files = [(f'file{index}', (path.name, path.read_bytes(), 'image/jpeg')) for index, path in enumerate(PICTURES)]
    label_studio.post(f'/api/projects/{project}/import', files=files).raise_for_status()
    connected = label_studio.post('/api/ml', json={'url': backend, 'project': project, 'title': 'solov2'}).json()
    assert connected['readable_state'] == 'Connected', connected
    label_studio.post('/api/dm/actions', params={'id': 'retrieve_tasks_predictions', 'project': project},
                      json={'selectedItems': {'all': True, 'excluded': []}}).raise_for_status()
    tasks = label_studio.get('/api/tasks', params={'project': project, 'fields': 'all'}).json()['tasks']
    stored = [label_studio.get('/api/predictions', params={'task': task['id']}).json() for task in tasks]
    return project, list(zip(tasks, stored))


def region_masks(prediction: dict) -> list:
    """[(label, [H, W] bool)] of a stored prediction, one an instance: a polygon's parts (regions one after
    another with one label and score) merged."""
    instances, last = [], None
    for one in prediction['result']:
        height, width, value = one['original_height'], one['original_width'], one['value']
        if one['type'] == 'brushlabels':
            mask = decode_brush(value['rle'], height, width)
        else:
            mask = mask_util.decode(segmentation_to_rle([points_polygon(value['points'], height, width)],
                                                        height, width)).astype(bool)
        label = value[one['type']][0]
        if one['type'] == 'polygonlabels' and last == (label, one['score']):
            instances[-1] = (label, instances[-1][1] | mask)
        else:
            instances.append((label, mask))
        last = (label, one['score'])
    return instances


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def check_stored(tasks, segmenter, tag: str, least_iou: float) -> list:
    """Each task's one stored prediction holds the Segmenter's instances of its picture: classes equal, each
    mask's IoU at least ``least_iou``; a line a picture for the run's report."""
    table, by_name = [], {path.name: path for path in PICTURES}
    for task, predictions in tasks:
        assert len(predictions) == 1 and predictions[0]['model_version'].startswith('solov2-'), predictions
        picture = by_name[task['data']['image'].rsplit('-', 1)[-1]]      # uploads are named '<8 hex>-<name>'
        truth = segmenter(str(picture))
        stored = region_masks(predictions[0])
        assert [label for label, _ in stored] == truth.names, picture.name
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


def exported_coco(label_studio, project: int, tasks, tmp_path, capsys) -> tuple[Path, Path]:
    """(the project's JSON export converted by ``solov2 labelstudio2coco``, its pictures' folder)."""
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
    return coco, pictures


@pytest.mark.parametrize('tag, least_iou', [('PolygonLabels', 0.9), ('BrushLabels', 0.95)])
def test_label_studio_stores_the_segmenters_instances_and_its_export_fine_tunes(
        label_studio, backend, segmenter, tag, least_iou, tmp_path, capsys):
    project, tasks = project_with_predictions(label_studio, backend, tag, segmenter.class_names)
    assert len(tasks) == len(PICTURES)
    table = check_stored(tasks, segmenter, tag, least_iou)
    with capsys.disabled():                         # what the run shows (-s): the stored predictions against the truth
        print(f'\n{tag} project (labelling config: {CONFIG.format(tag=tag, labels="<Label .../> each class")}): '
              f'Label Studio stored {len(tasks)} predictions\n  ' + '\n  '.join(table))
    accept_all_but_one(label_studio, tasks)
    coco, pictures = exported_coco(label_studio, project, tasks, tmp_path, capsys)
    converted = json.loads(coco.read_text())
    for image in converted['images']:             # the instances trained on are the Segmenter's
        truth = segmenter(str(pictures / image['file_name']))
        mine = [a for a in converted['annotations'] if a['image_id'] == image['id']]
        names = {c['id']: c['name'] for c in converted['categories']}
        if tag == 'BrushLabels':
            assert [names[a['category_id']] for a in mine] == truth.names
    if tag == 'PolygonLabels':
        return                                  # one fine-tune is enough: the brush export's
    run = tmp_path / 'run'
    assert train.main(['--weights', SHIPPED_WEIGHTS, '--output', str(run), '--max-iters', '3', '--opt',
                       f'dataset_dir={coco.parent.parent}', 'train_ann=coco/train.json', f'train_images={pictures}',
                       'val_ann=coco/train.json', f'val_images={pictures}', *TINY_TRAINING]) == 0
    assert (run / 'last' / 'model.pdparams').is_file()
