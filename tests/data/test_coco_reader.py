"""Tests for data.coco on a hand-built COCO file."""

import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2.core.errors import InputError
from solov2.data.coco import CocoDataset, read_class_names, segmentation_to_mask
from solov2.data.results import crop_run_lengths

pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

H, W = 20, 30


def compressed_rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask))
    return {'size': [H, W], 'counts': rle['counts'].decode('ascii')}


def uncompressed_rle(mask):
    return {'size': [H, W], 'counts': crop_run_lengths(mask, (0, 0, W, H), (H, W)).tolist()}


def box_mask(y0, y1, x0, x1):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


POLYGON_PIXELS = box_mask(3, 8, 2, 12)  # polygon corners (2, 3) - (12, 8)
RLE_PIXELS = box_mask(10, 18, 5, 9)
RLE_PIXELS[12, 20:25] = 1
UNCOMPRESSED_PIXELS = box_mask(1, 4, 20, 28)
CROWD_PIXELS = box_mask(14, 19, 14, 20)


def annotation(ann_id, image_id, category_id, segmentation, iscrowd=0):
    return {'id': ann_id, 'image_id': image_id, 'category_id': category_id,
            'segmentation': segmentation, 'iscrowd': iscrowd, 'area': 0, 'bbox': [0, 0, 0, 0]}


@pytest.fixture
def coco_dir(tmp_path):
    """tmp_path/ann.json + tmp_path/images/{a,b,c}.png; categories given out of id order."""
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ('a', 'b', 'c'):
        cv2.imwrite(str(images / f'{name}.png'), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    dataset = {
        'images': [{'id': 10 + i, 'file_name': f'{n}.png', 'height': H, 'width': W} for i, n in enumerate('abc')],
        'categories': [{'id': 7, 'name': 'dog'}, {'id': 3, 'name': 'cat'}, {'id': 5, 'name': 'cow'}],
        'annotations': [
            annotation(1, 10, 7, [[2, 3, 12, 3, 12, 8, 2, 8]]),
            annotation(2, 10, 3, compressed_rle(RLE_PIXELS)),
            annotation(3, 10, 5, uncompressed_rle(UNCOMPRESSED_PIXELS)),
            annotation(4, 10, 3, uncompressed_rle(CROWD_PIXELS), iscrowd=1),
            annotation(5, 10, 7, [[-9, -9, -5, -9, -5, -5]]),  # outside the image: empty mask
            annotation(6, 12, 7, uncompressed_rle(CROWD_PIXELS), iscrowd=1),
        ],
    }
    (tmp_path / 'ann.json').write_text(json.dumps(dataset))
    return tmp_path


def load(coco_dir, **kwargs):
    return CocoDataset(coco_dir / 'ann.json', coco_dir / 'images', **kwargs)


def rewrite(coco_dir, edit):
    path = coco_dir / 'ann.json'
    dataset = json.loads(path.read_text())
    edit(dataset)
    path.write_text(json.dumps(dataset))


def test_sample_format_and_pixels(coco_dir):
    dataset = load(coco_dir)
    assert len(dataset) == 3
    sample = dataset[0]
    assert set(sample) == {'image', 'masks', 'labels', 'image_id', 'file_name'}
    expected_image = cv2.imread(str(coco_dir / 'images' / 'a.png'))[:, :, ::-1]
    np.testing.assert_array_equal(sample['image'], expected_image)
    assert sample['image'].dtype == np.uint8 and sample['image'].shape == (H, W, 3)
    assert sample['masks'].dtype == np.uint8 and sample['masks'].shape == (3, H, W)
    np.testing.assert_array_equal(sample['masks'][0], POLYGON_PIXELS)
    np.testing.assert_array_equal(sample['masks'][1], RLE_PIXELS)
    np.testing.assert_array_equal(sample['masks'][2], UNCOMPRESSED_PIXELS)
    assert sample['labels'].dtype == np.int64
    assert sample['labels'].tolist() == [2, 0, 1]  # ids 3, 5, 7 -> labels 0, 1, 2
    assert sample['image_id'] == 10 and sample['file_name'] == 'a.png'


def test_crowd_is_not_an_instance(coco_dir):
    """Crowd regions are no instances (and no step reads them: the reader does not decode them)."""
    dataset = load(coco_dir)
    sample = dataset[0]
    assert len(sample['masks']) == len(sample['labels']) == 3 and dataset.num_instances == 3
    assert not (sample['masks'].astype(bool) & CROWD_PIXELS.astype(bool)).any()
    assert len(dataset[2]['masks']) == 0       # image 12 has only a crowd region


def test_empty_image_has_empty_arrays(coco_dir):
    sample = load(coco_dir)[1]
    assert sample['image_id'] == 11
    assert sample['masks'].shape == (0, H, W) and sample['masks'].dtype == np.uint8
    assert sample['labels'].shape == (0,) and sample['labels'].dtype == np.int64


def test_keep_empty_false_skips_images_without_instances(coco_dir):
    dataset = load(coco_dir, keep_empty=False)
    assert dataset.image_ids == [10]  # 11 has nothing, 12 only a crowd region


def test_label_mapping_by_category_id(coco_dir):
    dataset = load(coco_dir)
    assert dataset.label_to_category_id == [3, 5, 7]
    assert dataset.class_names == ['cat', 'cow', 'dog']


def test_label_mapping_by_class_names(coco_dir):
    dataset = load(coco_dir, class_names=['dog', 'cow', 'cat'])
    assert dataset.label_to_category_id == [7, 5, 3]
    assert dataset.class_names == ['dog', 'cow', 'cat']
    assert dataset[0]['labels'].tolist() == [0, 2, 1]


def test_label_mapping_from_classes_file(coco_dir):
    (coco_dir / 'classes.txt').write_text('cow\n\ndog\ncat\n')
    assert read_class_names(coco_dir / 'classes.txt') == ['cow', 'dog', 'cat']
    dataset = load(coco_dir, class_names=read_class_names(coco_dir / 'classes.txt'))
    assert dataset.label_to_category_id == [5, 7, 3]
    assert dataset[0]['labels'].tolist() == [1, 2, 0]


def test_missing_class_name_is_named(coco_dir):
    with pytest.raises(ValueError, match='horse'):
        load(coco_dir, class_names=['dog', 'horse', 'cat', 'cow'])


def test_other_classes_say_how_to_train_on_the_file_s_own(coco_dir):
    """A COCO config on other data: the message names a few missing names, the file's own
    and how to take them (training picks the file's classes when none are given)."""
    coco_names = [f'thing{i}' for i in range(80)]
    with pytest.raises(InputError) as err:
        load(coco_dir, class_names=coco_names)
    message = str(err.value)
    assert 'thing0, thing1, thing2, thing3, thing4 and 75 more' in message and 'thing79' not in message
    assert '(it has: cat, cow, dog)' in message
    assert 'leave classes= and num_classes/class_names out' in message


def test_allow_missing_matches_the_classes_both_have(coco_dir):
    """Evaluation: a class the file lacks has no category (its results are left out), a
    category that is not a class is dropped with its annotations, and the classes without
    an instance are named."""
    dataset = load(coco_dir, class_names=['horse', 'dog', 'cat'], allow_missing=True)
    assert dataset.label_to_category_id == [None, 7, 3]
    assert dataset.other_categories == ['cow'] and sorted(dataset.coco.getCatIds()) == [3, 7]
    assert all(a['category_id'] in (3, 7) for a in dataset.coco.dataset['annotations'])
    assert 'horse' in dataset.classes_without_instances and 'dog' not in dataset.classes_without_instances
    assert dataset[0]['labels'].tolist() == [1, 2]                  # dog, cat; the cow is not a class


def test_class_names_from_a_coco_file_in_category_id_order(coco_dir):
    assert read_class_names(coco_dir / 'ann.json') == ['cat', 'cow', 'dog']


def test_an_annotation_without_a_pixel_is_said_once(coco_dir, caplog):
    def edit(dataset):
        dataset['annotations'].append(annotation(30, 11, 7, uncompressed_rle(np.zeros((H, W), np.uint8))))
    rewrite(coco_dir, edit)
    dataset = load(coco_dir)
    index = dataset.image_ids.index(11)
    for _ in range(2):
        assert not dataset[index]['labels'].size
    said = [r.message for r in caplog.records if 'no pixel' in r.message]
    assert said == ['annotation 30 of image 11 has no pixel in the image: left out']


def test_annotated_category_outside_class_names(coco_dir):
    with pytest.raises(ValueError, match="'cow'"):
        load(coco_dir, class_names=['dog', 'cat'])


def test_unknown_category_is_named(coco_dir):
    rewrite(coco_dir, lambda d: d['annotations'].append(annotation(9, 11, 42, [[1, 1, 5, 1, 5, 5]])))
    with pytest.raises(ValueError, match='unknown category 42'):
        load(coco_dir)


def test_missing_paths(coco_dir):
    with pytest.raises(ValueError, match='nope.json'):
        CocoDataset(coco_dir / 'nope.json', coco_dir / 'images')
    with pytest.raises(ValueError, match='no_images'):
        CocoDataset(coco_dir / 'ann.json', coco_dir / 'no_images')


def test_bad_annotation_json(coco_dir):
    (coco_dir / 'ann.json').write_text('{not json')
    with pytest.raises(ValueError, match='ann.json'):
        load(coco_dir)


def test_unreadable_image_names_path(coco_dir):
    (coco_dir / 'images' / 'b.png').write_bytes(b'not an image')
    dataset = load(coco_dir)
    with pytest.raises(ValueError, match='b.png'):
        dataset[1]
    (coco_dir / 'images' / 'c.png').unlink()
    with pytest.raises(ValueError, match='c.png'):
        dataset[2]


def test_image_size_mismatch(coco_dir):
    rewrite(coco_dir, lambda d: d['images'][0].update(height=H + 1))
    with pytest.raises(ValueError, match='a.png'):
        load(coco_dir)[0]


def test_unusable_annotations_are_skipped_and_reported(coco_dir, caplog):
    def edit(dataset):
        dataset['annotations'][1]['segmentation'].update(size=[H, W + 1])
        dataset['annotations'] += [
            {'id': 20, 'image_id': 11, 'category_id': 7, 'iscrowd': 0},            # no segmentation
            annotation(21, 11, 7, []), annotation(22, 11, 7, [[1, 2, 3, 4]]),      # empty, too short
            annotation(23, 11, 7, [[40, 30, 50, 30, 50, 40]]),                     # outside the image
            annotation(25, 11, 7, [['a', 1, 5, 1, 5, 5]]),                         # not numbers
        ]
    rewrite(coco_dir, edit)
    dataset = load(coco_dir)
    sample = dataset[0]
    assert len(sample['labels']) == 2 and not dataset[1]['labels'].size
    message = caplog.text
    assert 'skipped 7 of 11 annotations' in message
    assert '2 no segmentation (id 20, ' in message and '(id 25)' in message     # which ones, by id
    for reason in ('1 empty polygons', '2 no segmentation', '2 outside the image',
                   'malformed polygon', 'RLE of another size'):
        assert reason in message


def test_a_set_without_usable_instances_is_refused(coco_dir):
    rewrite(coco_dir, lambda d: [a.pop('segmentation') for a in d['annotations']])
    assert load(coco_dir).num_instances == 0
    with pytest.raises(ValueError, match='no usable instance in 3 images'):
        load(coco_dir, require_instances=True)


@pytest.mark.parametrize('edit, where', [
    (lambda d: d['categories'][0].update(id='7'), "category {'id': '7'"),
    (lambda d: d['annotations'][0].update(category_id='7'), "annotation 1 has category_id '7'"),
])
def test_string_category_ids_are_named(coco_dir, edit, where):
    rewrite(coco_dir, edit)
    with pytest.raises(ValueError) as err:
        load(coco_dir)
    assert where in str(err.value) and 'integers' in str(err.value)


def test_pixel_limit(coco_dir):
    with pytest.raises(ValueError, match='over the limit of 0.0001 MP'):
        load(coco_dir, max_pixels=100)[0]


def test_segmentation_to_mask_ignores_short_polygons():
    mask = segmentation_to_mask([[2, 3, 12, 3, 12, 8, 2, 8], [0, 0, 5, 5]], H, W)
    np.testing.assert_array_equal(mask, POLYGON_PIXELS)
    assert not segmentation_to_mask([], H, W).any()
