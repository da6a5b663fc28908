"""Tests for tools/make_shapes_dataset.py (small runs at 128 px)."""

import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

from solov2.data.coco import CocoDataset, segmentation_to_mask
from solov2.data.transforms import read_image
from solov2.tools.make_shapes_dataset import CLASS_NAMES, MIN_VISIBLE, exact_polygons, main

pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

ARGS = ['--train', '12', '--val', '4', '--size', '128', '--seed', '3']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two identical small runs."""
    outs = [tmp_path_factory.mktemp(f'shapes{i}') for i in range(2)]
    for out in outs:
        main(['--out', str(out), *ARGS])
    return outs


@pytest.fixture(scope='module')
def cocos(runs):
    return {split: COCO(str(runs[0] / 'annotations' / f'instances_{split}.json')) for split in ('train', 'val')}


def test_runs_are_byte_identical(runs):
    first, second = runs
    files = sorted(p.relative_to(first) for p in first.rglob('*') if p.is_file())
    assert len(files) == 12 + 4 + 3
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_other_seed_differs(runs, tmp_path):
    main(['--out', str(tmp_path), *ARGS[:-1], '4'])
    name = 'annotations/instances_train.json'
    assert (tmp_path / name).read_bytes() != (runs[0] / name).read_bytes()


def test_layout_and_categories(runs, cocos):
    assert (runs[0] / 'classes.txt').read_text().split() == list(CLASS_NAMES)
    for split, count in (('train', 12), ('val', 4)):
        coco = cocos[split]
        assert len(coco.imgs) == count
        assert len(coco.anns) == len(coco.dataset['annotations'])  # unique annotation ids
        assert [(c['id'], c['name']) for c in coco.dataset['categories']] == list(enumerate(CLASS_NAMES, 1))
        for info in coco.imgs.values():
            image = read_image(runs[0] / split / info['file_name'])
            assert image.shape == (128, 128, 3) == (info['height'], info['width'], 3)


def test_annotation_kinds_present(cocos):
    anns = [a for coco in cocos.values() for a in coco.dataset['annotations']]
    polygons = [a for a in anns if isinstance(a['segmentation'], list)]
    compressed = [a for a in anns if not a['iscrowd'] and isinstance(a['segmentation'], dict)]
    crowd = [a for a in anns if a['iscrowd']]
    assert polygons and compressed and crowd
    assert all(isinstance(a['segmentation']['counts'], str) for a in compressed)
    assert all(isinstance(a['segmentation']['counts'], list) for a in crowd)
    assert all(len(poly) >= 6 for a in polygons for poly in a['segmentation'])


def test_bbox_and_area_match_decoded_mask(cocos):
    for coco in cocos.values():
        for ann in coco.dataset['annotations']:
            mask = coco.annToMask(ann)
            rle = mask_util.encode(np.asfortranarray(mask))
            assert ann['bbox'] == mask_util.toBbox(rle).tolist()
            assert ann['area'] == int(mask.sum())
            assert ann['iscrowd'] or ann['area'] >= MIN_VISIBLE


def test_empty_images_exist(cocos):
    for coco in cocos.values():
        assert any(not coco.imgToAnns[image_id] for image_id in coco.imgs)


def test_instances_do_not_overlap(runs):
    dataset = CocoDataset(runs[0] / 'annotations' / 'instances_train.json', runs[0] / 'train')
    for index, sample in enumerate(dataset):
        height, width = sample['image'].shape[:2]
        crowds = [segmentation_to_mask(a['segmentation'], height, width)
                  for a in dataset.coco.imgToAnns[dataset.image_ids[index]] if a['iscrowd']]
        total = sample['masks'].sum(axis=0, dtype=np.int32) + sum(crowds, np.zeros((height, width), np.int32))
        assert total.max(initial=0) <= 1


def test_exact_polygons_reject_holes():
    ring = np.zeros((20, 20), dtype=np.uint8)
    ring[4:16, 4:16] = 1
    assert exact_polygons(ring) == [[4.25, 4.25, 4.25, 15.75, 15.75, 15.75, 15.75, 4.25]]
    ring[8:12, 8:12] = 0
    assert exact_polygons(ring) is None


@pytest.mark.parametrize('flag, value, least', [('--size', '32', 64), ('--train', '-1', 0), ('--val', '-2', 0)])
def test_a_bad_count_is_refused_under_its_flag(tmp_path, capsys, flag, value, least):
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path / 'out'), flag, value])
    assert capsys.readouterr().err.startswith(f'error: argument {flag}: takes a whole number of at least {least}, '
                                              f'not {value} (')
    assert not (tmp_path / 'out').exists()
