"""Every picture read against an annotation has its size as read (EXIF orientation applied, as training reads it)
checked against the width and height the annotation gives it, in one line naming the picture and both sizes before
the work starts (eval once scored such a set, its AP halved); a region drawn on the upright picture of an
EXIF-turned phone photo converts (labelstudio2coco once refused it, and the regions of the service's own backend)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from solov2.data.transforms import picture_size, read_image
from solov2.tools import browse, labelme2coco, labelstudio2coco
from solov2.tools import eval as eval_cli

PHONE = Path(__file__).resolve().parents[1] / 'fixtures' / 'interop' / 'exif_label_studio'
STORED = (160, 96)          # the phone photo's (height, width) as stored; EXIF orientation 6 shows it 96 x 160


def one_error(capsys, *fragments):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert 'Traceback' not in err and len(lines) == 1, err
    assert all(fragment in lines[0] for fragment in fragments), (lines[0], fragments)


def test_picture_size_applies_exif_and_reads_past_a_large_exif_block(tmp_path):
    assert picture_size(PHONE / 'labelstudio_upload' / 'phone.jpg') == (96, 160)
    assert read_image(PHONE / 'labelstudio_upload' / 'phone.jpg').shape[:2] == (96, 160)
    exif = Image.Exif()
    exif[0x0112] = 8
    exif[0x010E] = 'x' * 40000                   # an image description: the header lies past 4 KiB
    path = tmp_path / 'big_exif.jpg'
    Image.new('RGB', (30, 20)).save(path, exif=exif.tobytes())
    assert path.read_bytes().find(b'\xff\xc0') > 1 << 12
    assert picture_size(path) == (30, 20) == read_image(path).shape[:2]
    assert picture_size(tmp_path / 'absent.jpg') is None


@pytest.fixture()
def stated_as_stored(tmp_path):
    """A COCO set whose one image is the phone photo, its size stated as stored (the EXIF turn unread)."""
    (tmp_path / 'images').mkdir()
    shutil.copy(PHONE / 'labelstudio_upload' / 'phone.jpg', tmp_path / 'images')
    square = [20, 20, 60, 20, 60, 60, 20, 60]
    (tmp_path / 'gt.json').write_text(json.dumps({
        'images': [{'id': 1, 'file_name': 'phone.jpg', 'height': STORED[0], 'width': STORED[1]}],
        'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'segmentation': [square]}],
        'categories': [{'id': 1, 'name': 'square'}]}))
    return tmp_path


def test_eval_and_browse_refuse_a_picture_of_another_size_first(stated_as_stored, capsys, monkeypatch):
    from solov2.core.paths import CACHE_ENV
    monkeypatch.setenv(CACHE_ENV, str(stated_as_stored / 'cache'))
    ann, images = str(stated_as_stored / 'gt.json'), str(stated_as_stored / 'images')
    says = (f'picture {images}/phone.jpg is 160x96 as read (EXIF orientation applied), but {ann} says image 1 is '
            '96x160')
    assert eval_cli.main(['--weights', 'shipped/shapes_r18', '--ann', ann, '--images', images]) == 2
    one_error(capsys, says)
    assert not (stated_as_stored / 'cache').exists()           # refused before anything was exported
    assert browse.main([ann, images, '--output', str(stated_as_stored / 'out')]) == 2
    one_error(capsys, says)
    assert not (stated_as_stored / 'out').exists()


def test_labelme2coco_refuses_shapes_drawn_on_another_size(tmp_path, capsys):
    (tmp_path / 'lm').mkdir()
    shutil.copy(PHONE / 'labelstudio_upload' / 'phone.jpg', tmp_path / 'lm')
    doc = {'shapes': [{'label': 'square', 'points': [[20, 20], [60, 60]], 'shape_type': 'rectangle'}],
           'imagePath': 'phone.jpg', 'imageHeight': STORED[0], 'imageWidth': STORED[1], 'imageData': None}
    (tmp_path / 'lm' / 'phone.json').write_text(json.dumps(doc))
    assert labelme2coco.main([str(tmp_path / 'lm'), str(tmp_path / 'out.json')]) == 2
    one_error(capsys, 'phone.json: its picture', 'is 160x96 as read', 'drawn on a 96x160 one')
    doc.update(imageHeight=96, imageWidth=160)                 # as labelme itself states it (upright)
    (tmp_path / 'lm' / 'phone.json').write_text(json.dumps(doc))
    assert labelme2coco.main([str(tmp_path / 'lm'), str(tmp_path / 'out.json')]) == 0


def _converted(export, tmp_path):
    out = tmp_path / 'coco' / 'instances.json'
    assert labelstudio2coco.main([str(export), str(out), '--images', str(PHONE / 'labelstudio_upload')]) == 0
    coco = json.loads(out.read_text())
    (image,), (ann,) = coco['images'], coco['annotations']
    assert (image['width'], image['height']) == (160, 96)
    assert ann['bbox'] == [20.0, 20.0, 40.0, 40.0]


def test_a_label_studio_region_on_an_exif_turned_photo_converts(tmp_path):
    """Label Studio's export of a polygon drawn on the upright photo (tests/fixtures/interop)."""
    _converted(PHONE / 'export_polygon.json', tmp_path)


def test_the_service_backends_region_on_an_exif_turned_photo_converts(tmp_path):
    """The brush region the service's Label Studio backend makes for the photo (serving/label_studio.py: on the
    answer's image_size), then labelstudio2coco."""
    from solov2 import Segmenter
    from solov2.core.paths import SHIPPED_WEIGHTS
    from solov2.data.label_studio import encode_brush, label_tag, region
    with Segmenter(SHIPPED_WEIGHTS, backend='dygraph') as segmenter:
        height, width = segmenter(str(PHONE / 'labelstudio_upload' / 'phone.jpg'), min_score=0).to_dict()['image_size']
    tag = label_tag('<View><Image name="image" value="$image"/><BrushLabels name="label" toName="image">'
                    '<Label value="brick"/></BrushLabels></View>')
    mask = np.zeros((height, width), bool)
    mask[20:60, 20:60] = True
    task = {'id': 1, 'data': {'image': '/data/upload/1/0a1b2c3d-phone.jpg'}, 'annotations': [{'id': 1, 'result': [
        dict(region(tag, 'brick', 1.0, height, width, {'format': 'rle', 'rle': encode_brush(mask)}), id='x')]}]}
    (tmp_path / 'brush.json').write_text(json.dumps([task]))
    _converted(tmp_path / 'brush.json', tmp_path)


def test_a_json_min_export_of_an_exif_turned_photo_converts_as_its_json_export(tmp_path):
    """Label Studio's JSON-MIN export flattens each task's regions into it (no data, no annotations): once every
    task was 'without an annotation' and an empty COCO file was written; now it converts as the JSON export does,
    on the upright picture."""
    task = json.loads((PHONE / 'export_polygon.json').read_text())[0]
    region = task['annotations'][0]['result'][0]
    flat = {'id': task['id'], 'image': task['data']['image'], 'annotator': 1, 'annotation_id': 1,
            'label': [{**region['value'], 'original_width': region['original_width'],
                       'original_height': region['original_height']}]}
    (tmp_path / 'min.json').write_text(json.dumps([flat]))
    _converted(tmp_path / 'min.json', tmp_path)


def test_quantize_measures_its_ap_on_pictures_of_their_stated_size(stated_as_stored):
    pytest.importorskip('openvino', reason='INT8 quantization needs requirements-deploy.txt')
    from solov2.model.inference.quantize import load_annotated
    with pytest.raises(ValueError, match='phone.jpg is 160x96 as read'):
        load_annotated(str(stated_as_stored / 'gt.json'), str(stated_as_stored / 'images'), ['square'])
