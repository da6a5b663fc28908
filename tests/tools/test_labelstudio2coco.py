"""solov2 labelstudio2coco: a Label Studio JSON export (polygons and brushes, several labels, tasks without an
annotation, pictures of any size) -> COCO; a task whose picture is missing is named. Label Studio's own export
goes through it in tests/serving/test_label_studio_server.py."""
import json
import shutil

import numpy as np
import pycocotools.mask as mask_util

from solov2.data.label_studio import encode_brush
from solov2.tools import labelstudio2coco
from tests.helpers import REPO_DIR

WIDE = REPO_DIR / 'images' / 'shapes_wide.jpg'          # 512 x 256
SQUARE = REPO_DIR / 'images' / 'shapes_000023.jpg'      # 256 x 256


def region(kind, label, value, width, height):
    return {'type': kind, 'from_name': 'label', 'to_name': 'image', 'original_width': width,
            'original_height': height, 'value': {**value, kind: [label]}}


def export(tmp_path):
    """An export of 4 tasks: polygon + brush on the wide picture, an empty annotation on the square one (a
    cancelled one beside it), one without annotation; the pictures as Label Studio names uploads."""
    pictures = tmp_path / 'upload'
    pictures.mkdir()
    shutil.copy(WIDE, pictures / '0a1b2c3d-shapes_wide.jpg')
    shutil.copy(SQUARE, pictures / 'shapes_000023.jpg')
    brush = np.zeros((256, 512), bool)
    brush[10:20, 400:450] = True
    results = [region('polygonlabels', 'star', {'points': [[10, 10], [20, 10], [20, 30]], 'closed': True}, 512, 256),
               region('brushlabels', 'circle', {'format': 'rle', 'rle': encode_brush(brush)}, 512, 256),
               {'type': 'choices', 'value': {'choices': ['good']}}]
    tasks = [{'id': 1, 'data': {'image': '/data/upload/3/0a1b2c3d-shapes_wide.jpg'},
              'annotations': [{'id': 5, 'result': results, 'was_cancelled': False}]},
             {'id': 2, 'data': {'image': '/data/upload/3/shapes_000023.jpg'},
              'annotations': [{'id': 8, 'result': [], 'was_cancelled': False},
                              {'id': 9, 'result': results, 'was_cancelled': True}]},
             {'id': 3, 'data': {'image': '/data/upload/3/none.jpg'}, 'annotations': []}]
    path = tmp_path / 'export.json'
    path.write_text(json.dumps(tasks))
    return path, pictures, brush


def test_an_export_converts_to_coco(tmp_path, capsys):
    path, pictures, brush = export(tmp_path)
    out = tmp_path / 'coco' / 'train.json'
    assert labelstudio2coco.main([str(path), str(out), '--images', str(pictures)]) == 0
    assert capsys.readouterr().out.endswith(
        'left out: 1 tasks without an annotation, 1 choices regions\n')
    coco = json.loads(out.read_text())
    assert [(i['file_name'], i['width'], i['height']) for i in coco['images']] == [
        ('0a1b2c3d-shapes_wide.jpg', 512, 256), ('shapes_000023.jpg', 256, 256)]
    names = {c['id']: c['name'] for c in coco['categories']}
    assert sorted(names.values()) == ['circle', 'star'] and (out.parent / 'classes.txt').is_file()
    star, circle = coco['annotations']
    assert names[star['category_id']] == 'star' and star['segmentation'] == [[51.2, 25.6, 102.4, 25.6, 102.4, 76.8]]
    assert names[circle['category_id']] == 'circle' and circle['bbox'] == [400.0, 10.0, 50.0, 10.0]
    assert (mask_util.decode(circle['segmentation']).astype(bool) == brush).all()


def test_a_missing_picture_names_its_task(tmp_path, capsys):
    path, pictures, _ = export(tmp_path)
    (pictures / 'shapes_000023.jpg').unlink()
    assert labelstudio2coco.main([str(path), str(tmp_path / 'out.json'), '--images', str(pictures)]) == 2
    err = capsys.readouterr().err
    assert '1 tasks have no picture in' in err and 'task 2 (/data/upload/3/shapes_000023.jpg)' in err
    assert not (tmp_path / 'out.json').exists()
    tasks = json.loads(path.read_text())
    tasks[0]['annotations'][0]['result'][0]['value']['polygonlabels'] = ['dog']
    path.write_text(json.dumps(tasks[:1]))
    (tmp_path / 'classes.txt').write_text('star\ncircle\n')
    assert labelstudio2coco.main([str(path), str(tmp_path / 'out.json'), '--images', str(pictures)]) == 2
    assert 'labels not in the class list' in capsys.readouterr().err
