"""solov2 labelstudio2coco: a Label Studio JSON export (polygons and brushes, several labels, tasks without an
annotation, pictures of any size) -> COCO; a task whose picture is missing is named. Label Studio's own export
goes through it in tests/serving/test_label_studio_server.py."""
import json
import shutil

import numpy as np
import pycocotools.mask as mask_util
import pytest

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


def json_min(tasks):
    """The JSON-MIN export of JSON ``tasks`` as Label Studio's converter writes it (label_studio_sdk's
    convert_to_json_min: a record per annotation, the data fields at the top, each tag's regions' values with
    their labels and the picture's size, no type, id or parentID)."""
    records = []
    for task in tasks:
        kept = [one for one in task['annotations'] if not one.get('was_cancelled')]
        for annotation in kept or [{}]:
            record = {**task['data'], 'id': task['id']}
            for result in annotation.get('result', []):
                value = {**result['value'], 'original_width': result.get('original_width'),
                         'original_height': result.get('original_height')}
                if result['type'] == 'choices':
                    record['choice'] = result['value']['choices'][0]
                    continue
                record.setdefault(result['from_name'], []).append(value)
            records.append({**record, 'annotator': 1, 'annotation_id': annotation.get('id'), 'created_at': '',
                            'updated_at': '', 'lead_time': 1.0})
    return records


def test_a_json_min_export_converts_to_the_same_coco(tmp_path, capsys):
    path, pictures, _ = export(tmp_path)
    assert labelstudio2coco.main([str(path), str(tmp_path / 'a' / 'out.json'), '--images', str(pictures)]) == 0
    minimal = tmp_path / 'min.json'
    minimal.write_text(json.dumps(json_min(json.loads(path.read_text()))))
    assert labelstudio2coco.main([str(minimal), str(tmp_path / 'b' / 'out.json'), '--images', str(pictures)]) == 0
    converted = [json.loads((tmp_path / name / 'out.json').read_text()) for name in 'ab']
    assert converted[0] == converted[1]
    assert capsys.readouterr().out.count('left out: 1 tasks without an annotation') == 2


def test_nothing_empty_is_written(tmp_path, capsys):
    path, pictures, _ = export(tmp_path)
    tasks = json.loads(path.read_text())
    out = tmp_path / 'coco' / 'train.json'
    path.write_text(json.dumps([dict(task, annotations=[]) for task in tasks]))
    assert labelstudio2coco.main([str(path), str(out), '--images', str(pictures)]) == 2
    assert "none of the export's 3 tasks has an annotation: nothing to convert" in capsys.readouterr().err
    path.write_text(json.dumps([tasks[1]]))                     # one picture with no object, no class list
    assert labelstudio2coco.main([str(path), str(out), '--images', str(pictures)]) == 2
    assert 'no class to write' in capsys.readouterr().err
    assert not out.parent.exists()


def test_the_picture_is_the_configs_variable_whatever_else_a_task_holds(tmp_path, capsys):
    path, pictures, _ = export(tmp_path)
    tasks = json.loads(path.read_text())
    for task in tasks:
        task['data'] = {'img': task['data']['image'], 'caption': 'a photo', 'source': 'camera 2'}
    path.write_text(json.dumps(tasks))
    assert labelstudio2coco.main([str(path), str(tmp_path / 'a.json'), '--images', str(pictures)]) == 0
    assert labelstudio2coco.main([str(path), str(tmp_path / 'b.json'), '--images', str(pictures),
                                  '--image-key', 'caption']) == 2
    assert '--image-key' not in capsys.readouterr().out
    for task in tasks:
        task['data']['thumbnail'] = task['data']['img']
    path.write_text(json.dumps(tasks))
    assert labelstudio2coco.main([str(path), str(tmp_path / 'c.json'), '--images', str(pictures)]) == 2
    assert 'which of its data fields (img, caption, source, thumbnail) is the picture? give --image-key' in \
        capsys.readouterr().err
    assert labelstudio2coco.main([str(path), str(tmp_path / 'c.json'), '--images', str(pictures),
                                  '--image-key', 'img']) == 0


def test_the_parts_of_one_object_are_one_instance(tmp_path):
    """Polygons whose parentID names a polygon of their label join its instance; people's regions stay one each."""
    path, pictures, _ = export(tmp_path)
    tasks = json.loads(path.read_text())
    star = tasks[0]['annotations'][0]['result'][0]
    part = dict(star, id='b', parentID='a', value={**star['value'], 'points': [[50, 50], [60, 50], [60, 70]]})
    drawn = dict(star, id='c', value={**star['value'], 'points': [[70, 10], [80, 10], [80, 30]]})
    other = dict(part, id='d', value={**part['value'], 'polygonlabels': ['circle']})
    tasks[0]['annotations'][0]['result'] = [dict(star, id='a'), part, drawn, other]
    path.write_text(json.dumps(tasks))
    out = tmp_path / 'coco' / 'train.json'
    assert labelstudio2coco.main([str(path), str(out), '--images', str(pictures)]) == 0
    coco = json.loads(out.read_text())
    names = {c['id']: c['name'] for c in coco['categories']}
    assert [(names[a['category_id']], len(a['segmentation'])) for a in coco['annotations']] == [
        ('star', 2), ('star', 1), ('circle', 1)]


def test_a_validation_set_is_split_off_the_same_each_run(tmp_path, capsys):
    path, pictures, _ = export(tmp_path)
    out, val = tmp_path / 'annotations' / 'instances_train.json', tmp_path / 'annotations' / 'instances_val.json'
    for _ in range(2):
        assert labelstudio2coco.main([str(path), str(out), '--images', str(pictures), '--val', str(val)]) == 0
        train, held = json.loads(out.read_text()), json.loads(val.read_text())
        assert len(train['images']) == len(held['images']) == 1 and train['categories'] == held['categories']
        assert {a['image_id'] for a in held['annotations']} <= {held['images'][0]['id']}
        out.unlink()
        val.unlink()
    assert '(validation)' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        labelstudio2coco.parse_args([str(path), str(out), '--images', str(pictures), '--val-fraction', '1'])
