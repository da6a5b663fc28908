"""Tests for tools/labelme2coco.py on hand-built labelme files."""

import base64
import io
import json
import math

import cv2
import numpy as np
import PIL.Image
import pytest

from solov2.data.coco import CocoDataset, read_class_names, segmentation_to_mask
from solov2.tools.labelme2coco import convert, main

pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

H, W = 60, 80


def shape(label, points, shape_type='polygon', group_id=None):
    return {'label': label, 'points': points, 'shape_type': shape_type, 'group_id': group_id, 'flags': {}}


def write_labelme(folder, stem, shapes, image=True, image_data=None):
    """folder/stem.json pointing at folder/stem.png (written unless `image` is False)."""
    if image:
        cv2.imwrite(str(folder / f'{stem}.png'), np.full((H, W, 3), 90, dtype=np.uint8))
    doc = {'version': '5.2.1', 'flags': {}, 'shapes': shapes, 'imagePath': f'{stem}.png',
           'imageData': image_data, 'imageHeight': H, 'imageWidth': W}
    (folder / f'{stem}.json').write_text(json.dumps(doc))


@pytest.fixture
def labelme_dir(tmp_path):
    folder = tmp_path / 'labelme'
    folder.mkdir()
    write_labelme(folder, 'one', [
        shape('zebra', [[10, 10], [30, 10], [30, 20], [10, 20]]),
        shape('ant', [[45, 35], [5, 5]], 'rectangle'),
        shape('cat', [[50, 30], [50, 40]], 'circle'),
    ])
    write_labelme(folder, 'two', [
        shape('cat', [[0, 0], [10, 0], [10, 10], [0, 10]], group_id=1),
        shape('ant', [[40, 40], [60, 40], [50, 50]]),
        shape('cat', [[20, 0], [25, 0], [25, 4], [20, 4]], group_id=1),
    ])
    return folder


def by_image(coco):
    """{file_name: [(category name, area, bbox, polygon count)]}."""
    names = {c['id']: c['name'] for c in coco['categories']}
    files = {img['id']: img['file_name'] for img in coco['images']}
    out = {name: [] for name in files.values()}
    for ann in coco['annotations']:
        out[files[ann['image_id']]].append(
            (names[ann['category_id']], ann['area'], ann['bbox'], len(ann['segmentation']))
        )
    return out


def test_shapes_areas_and_groups(labelme_dir):
    coco = convert(labelme_dir)
    assert [img['file_name'] for img in coco['images']] == ['one.png', 'two.png']
    assert all((img['height'], img['width']) == (H, W) for img in coco['images'])
    one, two = by_image(coco)['one.png'], by_image(coco)['two.png']
    assert one[0] == ('zebra', 200, [10.0, 10.0, 20.0, 10.0], 1)
    assert one[1] == ('ant', 40 * 30, [5.0, 5.0, 40.0, 30.0], 1)  # corners given in either order
    name, area, bbox, _ = one[2]
    assert name == 'cat' and abs(area - math.pi * 100) < 0.05 * math.pi * 100
    assert all(abs(a - b) <= 1 for a, b in zip(bbox, [40, 20, 20, 20]))
    assert two[0] == ('cat', 100 + 20, [0.0, 0.0, 25.0, 10.0], 2)  # group_id 1: one instance
    name, area, _, _ = two[1]
    assert name == 'ant' and abs(area - 100) <= 10  # triangle 20 x 10 / 2
    assert len(coco['annotations']) == 5 and all(a['iscrowd'] == 0 for a in coco['annotations'])


def test_classes_sorted_or_from_list(labelme_dir):
    coco = convert(labelme_dir)
    assert [(c['id'], c['name']) for c in coco['categories']] == [(1, 'ant'), (2, 'cat'), (3, 'zebra')]
    coco = convert(labelme_dir, ['zebra', 'cat', 'ant', 'unused'])
    assert [(c['id'], c['name']) for c in coco['categories']] == [
        (1, 'zebra'), (2, 'cat'), (3, 'ant'), (4, 'unused')]
    assert [a['category_id'] for a in coco['annotations']] == [1, 3, 2, 2, 3]


def test_unknown_labels_listed(labelme_dir):
    with pytest.raises(ValueError, match=r"'ant'.*'zebra'") as info:
        convert(labelme_dir, ['cat'])
    assert 'one.json' in str(info.value)


def test_bad_json_names_file(labelme_dir):
    (labelme_dir / 'broken.json').write_text('{oops')
    with pytest.raises(ValueError, match='broken.json'):
        convert(labelme_dir)


def test_missing_image_names_file(labelme_dir):
    (labelme_dir / 'two.png').unlink()
    with pytest.raises(ValueError, match=r'two\.json.*two\.png'):
        convert(labelme_dir)


def test_group_with_mixed_labels(labelme_dir):
    write_labelme(labelme_dir, 'three', [
        shape('cat', [[0, 0], [9, 0], [9, 9]], group_id=4), shape('ant', [[20, 0], [29, 0], [29, 9]], group_id=4)])
    with pytest.raises(ValueError, match=r'three\.json.*group_id 4'):
        convert(labelme_dir)


def mask_shape(label, box_mask, x0, y0, group_id=None):
    """A labelme mask shape as labelme 5.x saves it: the box's two corners and a 1-bit PNG of the box."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(box_mask).save(buffer, format='PNG')
    height, width = box_mask.shape
    return dict(shape(label, [[x0, y0], [x0 + width - 1, y0 + height - 1]], 'mask', group_id),
                mask=base64.b64encode(buffer.getvalue()).decode('ascii'))


def test_a_mask_shape_becomes_the_rle_of_its_pixels_and_merges_with_its_group(tmp_path):
    """labelme's mask shape (a PNG over its box) is the instance's exact pixels, as COCO RLE that the
    training data reads back; grouped with a polygon, one RLE of both; a box that runs past the image
    is clipped; a PNG not of its box's size is one error naming the file."""
    ell = np.zeros((6, 10), bool)
    ell[:, :2] = ell[4:, :] = True                     # an L: 12 + 16 pixels
    write_labelme(tmp_path, 'one', [mask_shape('cat', ell, 5, 7),
                                    shape('dog', [[40, 40], [50, 40], [50, 50], [40, 50]], group_id=3),
                                    mask_shape('dog', np.ones((4, 4), bool), 60, 10, group_id=3),
                                    mask_shape('cat', np.ones((5, 5), bool), W - 2, H - 3)])
    coco = convert(tmp_path)
    cat, dog, corner = coco['annotations']
    assert (cat['area'], cat['bbox'], cat['segmentation']['size']) == (28, [5.0, 7.0, 10.0, 6.0], [H, W])
    want = np.zeros((H, W), bool)
    want[7:13, 5:15] = ell
    assert (segmentation_to_mask(cat['segmentation'], H, W).astype(bool) == want).all()
    assert dog['area'] == 100 + 16 and dog['bbox'] == [40.0, 10.0, 24.0, 40.0]
    assert corner['area'] == 2 * 3 and corner['bbox'] == [W - 2.0, H - 3.0, 2.0, 3.0]
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'coco.json').write_text(json.dumps(coco))              # what training reads back
    masks = CocoDataset(tmp_path / 'out' / 'coco.json', tmp_path, class_names=['cat', 'dog'])[0]['masks']
    assert (masks[0].astype(bool) == want).all() and [m.sum() for m in masks] == [28, 116, 6]
    write_labelme(tmp_path, 'two', [dict(mask_shape('cat', ell, 5, 7), points=[[5, 7], [15, 12]])])
    with pytest.raises(ValueError, match=r"two\.json: bad shape: mask 'cat' is not a PNG of its box 11x6"):
        convert(tmp_path)
    write_labelme(tmp_path, 'two', [dict(mask_shape('cat', ell, 5, 7), mask='not base64!')])
    with pytest.raises(ValueError, match=r'two\.json: bad shape: .*base64'):
        convert(tmp_path)


def test_unsupported_shape_type(labelme_dir):
    write_labelme(labelme_dir, 'three', [shape('cat', [[0, 0], [9, 9]], 'line')])
    with pytest.raises(ValueError, match=r"three\.json.*'line'"):
        convert(labelme_dir)


def test_embedded_image_data_is_extracted(tmp_path):
    folder = tmp_path / 'labelme'
    folder.mkdir()
    _, png = cv2.imencode('.png', np.full((H, W, 3), 200, dtype=np.uint8))
    data = base64.b64encode(png.tobytes()).decode('ascii')
    write_labelme(folder, 'embedded', [shape('cat', [[1, 1], [9, 1], [9, 9]])], image=False, image_data=data)
    with pytest.raises(ValueError, match='--copy-images'):
        convert(folder)
    coco = convert(folder, copy_dir=tmp_path / 'images')
    assert coco['images'][0]['file_name'] == 'embedded.png'
    assert (tmp_path / 'images' / 'embedded.png').read_bytes() == png.tobytes()


def test_cli_writes_coco_and_classes(labelme_dir, tmp_path, capsys):
    (tmp_path / 'classes.txt').write_text('cat\nant\nzebra\n')
    out = tmp_path / 'out' / 'train.json'
    main([str(labelme_dir), str(out), '--classes', str(tmp_path / 'classes.txt'),
          '--copy-images', str(tmp_path / 'images')])
    assert '2 images, 5 instances, 3 classes' in capsys.readouterr().out
    assert (out.parent / 'classes.txt').read_text() == 'cat\nant\nzebra\n'
    dataset = CocoDataset(out, tmp_path / 'images', class_names=read_class_names(out.parent / 'classes.txt'))
    sample = dataset[0]
    assert sample['labels'].tolist() == [2, 1, 0]
    assert sample['masks'][0].sum() == 200 and sample['masks'][1].sum() == 1200


def test_cli_reports_errors(labelme_dir, tmp_path, capsys):
    (tmp_path / 'classes.txt').write_text('cat\n')
    assert main([str(labelme_dir), str(tmp_path / 'out.json'), '--classes', str(tmp_path / 'classes.txt')]) == 2
    assert capsys.readouterr().err.startswith('error: labels not in the class list')
    assert not (tmp_path / 'out.json').exists()


def test_splits_converted_into_one_folder_share_the_first_class_list(labelme_dir, tmp_path, capsys):
    """The validation split lacks a class: it keeps the training split's ids and says what it
    lacks; a class list that differs from the one already there is refused, not written."""
    val = tmp_path / 'val'
    val.mkdir()
    write_labelme(val, 'three', [shape('cat', [[1, 1], [9, 1], [9, 9]])])
    out = tmp_path / 'coco'
    assert main([str(labelme_dir), str(out / 'train.json')]) == 0
    assert main([str(val), str(out / 'val.json')]) == 0
    printed = capsys.readouterr().out
    assert f'{out / "classes.txt"} (kept); no instance of ant, zebra' in printed
    train, val_coco = (json.loads((out / f'{n}.json').read_text()) for n in ('train', 'val'))
    assert val_coco['categories'] == train['categories'] and val_coco['annotations'][0]['category_id'] == 2
    assert (out / 'classes.txt').read_text() == 'ant\ncat\nzebra\n'
    (tmp_path / 'other.txt').write_text('cat\n')
    assert main([str(val), str(out / 'val2.json'), '--classes', str(tmp_path / 'other.txt')]) == 2
    assert 'lists other classes (ant, cat, zebra) than --classes' in capsys.readouterr().err
    assert not (out / 'val2.json').exists() and (out / 'classes.txt').read_text() == 'ant\ncat\nzebra\n'
    assert main([str(val), str(tmp_path / 'apart' / 'val.json'), '--classes', str(out / 'train.json')]) == 0
    assert (tmp_path / 'apart' / 'classes.txt').read_text() == 'ant\ncat\nzebra\n'      # from the COCO file


def test_a_label_outside_the_list_already_there_names_the_list_and_the_way_out(labelme_dir, tmp_path, capsys):
    val = tmp_path / 'val'
    val.mkdir()
    write_labelme(val, 'three', [shape('cat', [[1, 1], [9, 1], [9, 9]])])
    assert main([str(val), str(tmp_path / 'coco' / 'val.json')]) == 0
    assert main([str(labelme_dir), str(tmp_path / 'coco' / 'train.json')]) == 2
    error = capsys.readouterr().err
    assert 'labels not in the class list' in error and 'pass --classes with every class, or delete it' in error
    assert "'ant' (e.g. one.json)" in error and not (tmp_path / 'coco' / 'train.json').exists()
