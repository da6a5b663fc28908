"""tools/browse.py: a dataset's own annotations drawn as predictions are drawn (the same fill, outline and
caption, the class name alone), from a COCO file and its pictures or from a labelme folder."""
import json

import cv2
import numpy as np

from solov2.data.coco import segmentation_to_mask
from solov2.data.transforms import read_image
from solov2.data.visualize import draw_bgr
from solov2.tools import browse
from tests.helpers import make_labelme_folder, make_tiny_shapes


def test_a_coco_split_is_drawn_as_predictions_are_with_names_for_captions(tmp_path, capsys):
    shapes = make_tiny_shapes(tmp_path / 'shapes')
    ann = shapes / 'annotations' / 'instances_train.json'
    out = tmp_path / 'drawn'
    assert browse.main([str(ann), str(shapes / 'train'), '--output', str(out), '--limit', '2']) == 0
    printed = capsys.readouterr().out
    coco = json.loads(ann.read_text())
    first = next(i for i in coco['images'][:2] if any(a['image_id'] == i['id'] for a in coco['annotations']))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i['file_name'][:-4]}.jpg" for i in coco['images'][:2])
    assert '2 pictures drawn in' in printed and 'instances per class: circle ' in printed
    annotations = [a for a in coco['annotations'] if a['image_id'] == first['id']]
    rgb = np.ascontiguousarray(read_image(shapes / 'train' / first['file_name']))
    plain = rgb[..., ::-1].astype(int)              # BGR, before draw_bgr draws on rgb in place
    masks = np.stack([segmentation_to_mask(a['segmentation'], first['height'], first['width']) for a in annotations])
    want = draw_bgr(rgb, masks.astype(bool), np.array([a['category_id'] - 1 for a in annotations]),
                    np.ones(len(annotations)), ['circle', 'square', 'triangle', 'star'], 0.0, show_scores=False)
    got = cv2.imread(str(out / f"{first['file_name'][:-4]}.jpg"))
    inside = masks.any(axis=0)
    off, undrawn = (float(np.median(np.abs(got.astype(int) - other).max(axis=-1)[inside])) for other in (want, plain))
    assert off <= 6 and undrawn > 4 * off, (off, undrawn)       # the same drawing, through JPEG
    assert f"{first['file_name']}: {len(annotations)} instances" in printed


def test_a_labelme_folder_is_drawn_and_bad_calls_end_in_one_line(tmp_path, capsys):
    folder = make_labelme_folder(tmp_path / 'labelme', 2, ('brick', 'egg'), seed=1)
    assert browse.main([str(folder), '--output', str(tmp_path / 'out')]) == 0
    assert len(list((tmp_path / 'out').glob('*.jpg'))) == 2 and 'instances per class: brick ' in capsys.readouterr().out
    assert browse.main([str(folder / 'x.json')]) == 2
    assert 'give the folder of the pictures' in capsys.readouterr().err
    assert browse.main([str(folder), '--output', str(folder)]) == 2
    assert "is the pictures' folder" in capsys.readouterr().err
