"""``Instances`` on hand-built results: length, iteration, indexing by int, slice, boolean
mask and indices, the picture size, polygons, ``to_dict`` and COCO records as demo.py writes
them."""
import json
import typing

import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2.api import InputError, Instance, Instances
from solov2.data.masks import CroppedMasks
from solov2.data.results import MASK_FIELDS, RECORD_FIELDS

# pycocotools' decode triggers a NumPy 2 copy-keyword DeprecationWarning internally.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')
NAMES = ('cat', 'dog', 'bird')


@pytest.fixture
def three():
    """Three instances on a 6 x 8 picture: a dog (0.9), a cat (0.6) in two parts, a bird (0.2)."""
    masks = np.zeros((3, 6, 8), dtype=bool)
    masks[0, 1:4, 1:5] = True
    masks[1, 0, 6] = masks[1, 4:6, 6:8] = True
    masks[2, 5, 0] = True
    boxes = np.array([[1, 1, 5, 4], [6, 0, 8, 6], [0, 5, 1, 6]], dtype=np.int64)
    return Instances(CroppedMasks.from_dense(masks, boxes), np.array([1, 0, 2]), np.array([0.9, 0.6, 0.2], np.float32),
                     NAMES)


def test_len_iteration_and_one_instance(three):
    assert len(three) == 3 and three.image_size == (6, 8)
    items = list(three)
    assert all(isinstance(item, Instance) for item in items)
    assert [(i.name, i.label, i.box) for i in items] == [('dog', 1, (1, 1, 5, 4)), ('cat', 0, (6, 0, 8, 6)),
                                                         ('bird', 2, (0, 5, 1, 6))]
    assert items[1].score == pytest.approx(0.6) and isinstance(items[1].score, float)
    np.testing.assert_array_equal(three[1].mask, three.masks[1])
    assert three[-1].name == 'bird' and three[np.int64(0)].name == 'dog'
    assert 'dog' in repr(three[0]) and '12 pixels' in repr(three[0])
    with pytest.raises(IndexError):
        three[3]
    with pytest.raises(IndexError):
        three[-4]


def test_slices_masks_and_indices_give_instances(three):
    confident = three[three.scores > 0.5]
    assert isinstance(confident, Instances) and confident.names == ['dog', 'cat']
    np.testing.assert_array_equal(confident.masks, three.masks[:2])
    np.testing.assert_array_equal(confident.boxes, three.boxes[:2])
    assert three[1:].names == ['cat', 'bird'] and three[::-1].names == ['bird', 'cat', 'dog']
    assert three[[2, 0]].names == ['bird', 'dog'] and three[np.array([-1])].names == ['bird']
    assert three[[True, False, True]].names == ['dog', 'bird']
    nothing = three[three.scores > 1]
    assert len(nothing) == 0 and nothing.image_size == (6, 8) and nothing.class_names == NAMES
    assert len(three[[]]) == 0
    assert three.filter(min_score=0.5).names == ['dog', 'cat']      # filter is the same selection


@pytest.mark.parametrize('index', [np.array([True, False]), 'dog', [0.5], np.zeros((2, 2), np.int64)])
def test_other_indices_are_one_input_error(three, index):
    with pytest.raises(InputError, match='index Instances with an int, a slice, a boolean mask of length 3'):
        three[index]


def test_an_index_past_the_end_is_an_index_error(three):
    with pytest.raises(IndexError, match='outside the 3 instances'):
        three[[0, 3]]


def test_polygons_are_picture_coordinates_one_per_part_worth_drawing(three):
    """Pixel x spans [x, x + 1] (as COCO fills polygons): the outlines run a quarter pixel inside; the
    cat's one-pixel speck beside its 2x2 part is kept, as it sets the top of the cat's box (the polygons
    span the box), a one-pixel mask is its own polygon."""
    polygons = three.polygons()
    assert [len(parts) for parts in polygons] == [1, 2, 1]
    corners = [sorted(map(tuple, part.tolist())) for parts in polygons for part in parts]
    assert corners == [[(1.25, 1.25), (1.25, 3.75), (4.75, 1.25), (4.75, 3.75)],
                       [(6.25, 4.25), (6.25, 5.75), (7.75, 4.25), (7.75, 5.75)],
                       [(6.25, 0.25), (6.25, 0.75), (6.75, 0.25), (6.75, 0.75)],
                       [(0.25, 5.25), (0.25, 5.75), (0.75, 5.25), (0.75, 5.75)]]
    assert three[three.scores > 1].polygons() == []


def test_to_dict_is_json_and_decodes_back(three):
    as_dict = json.loads(json.dumps(three.to_dict()))
    assert as_dict['image_size'] == [6, 8] and as_dict['class_names'] == list(NAMES)
    first = as_dict['instances'][0]
    assert {k: first[k] for k in ('label', 'name', 'box')} == {'label': 1, 'name': 'dog', 'box': [1, 1, 5, 4]}
    assert first['score'] == pytest.approx(0.9)
    for item, mask in zip(as_dict['instances'], three.masks):
        rle = {'size': item['mask']['size'], 'counts': item['mask']['counts'].encode()}
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), mask)


def test_coco_records_are_those_of_demo_save_json(three):
    """With the file name, ``to_coco`` writes what ``demo.py --save-json`` writes (file and
    category names included; tests/api/test_api.py runs the demo's stages);
    ``category_ids`` maps labels to a dataset's ids."""
    records = three.to_coco(4, file_name='pets.jpg')
    assert [(r['file_name'], r['category_name'], r['category_id']) for r in records] == [
        ('pets.jpg', 'dog', 2), ('pets.jpg', 'cat', 1), ('pets.jpg', 'bird', 3)]
    mapped = three.to_coco(4, category_ids=[17, 18, 5])
    assert [(r['category_id'], r['category_name']) for r in mapped] == [(18, 'dog'), (17, 'cat'), (5, 'bird')]
    assert 'file_name' not in mapped[0]


def kinds(value):
    """The JSON shape of ``value``: each dict's keys with their values' shapes, a list's item
    shapes, a leaf's exact type (int is not float, str is not None)."""
    if isinstance(value, dict):
        return {key: kinds(item) for key, item in value.items()}
    if isinstance(value, list):
        return [kinds(item) for item in value]
    return type(value).__name__


RLE = {'size': ['int', 'int'], 'counts': 'str'}


def declared(value, kind) -> bool:
    """``value`` is of the declared JSON type ``kind`` exactly (int is not bool or numpy's;
    ``list[int]``: a list of such ints)."""
    if typing.get_origin(kind) is None:
        return type(value) is kind
    return type(value) is typing.get_origin(kind) and all(declared(item, typing.get_args(kind)[0]) for item in value)


@pytest.mark.parametrize('form, mask', [('rle', MASK_FIELDS[0]), ('polygons', MASK_FIELDS[1]), ('none', None)])
def test_to_dict_gives_the_declared_record_and_coco_records_keep_their_keys_and_types(three, form, mask):
    """The outputs users parse are what ``data.results`` declares: a key it does not declare, a
    missing one or a numpy number in ``to_dict()`` fails here (the service answers
    ``to_dict()``: its schema, made from the declaration, forbids other keys,
    tests/serving/test_contract.py); the COCO records are pinned."""
    fields = [(key, kind) for key, kind, _ in RECORD_FIELDS] + ([] if mask is None else [mask[1:3]])
    as_dict = three.to_dict(form)
    assert kinds({**as_dict, 'instances': []}) == {'image_size': ['int', 'int'], 'class_names': ['str'] * 3,
                                                   'instances': []}
    assert len(as_dict['instances']) == 3
    for record in as_dict['instances']:
        assert list(record) == [key for key, _ in fields]
        assert all(declared(record[key], kind) for key, kind in fields), record
        assert form != 'rle' or kinds(record['mask']) == RLE
    record = {'image_id': 'int', 'category_id': 'int', 'segmentation': RLE, 'score': 'float', 'bbox': ['float'] * 4,
              'file_name': 'str', 'category_name': 'str'}
    assert kinds(three.to_coco(4, file_name='pets.jpg')) == [record] * 3


def test_each_instance_has_its_records_fields(three):
    """``Instance`` gives each field of the record ``to_dict()`` answers, with its value."""
    for one, record in zip(three, three.to_dict(masks='none')['instances'], strict=True):
        assert json.loads(json.dumps({key: getattr(one, key) for key in record})) == record


CONFIG0_FEAT, CONFIG0_PICTURE = (200, 336), (800, 1333)   # mask_feat of an 800x1333 picture (padded 800x1344)


def _config0_soft_masks(count: int = 100) -> np.ndarray:
    """[count, 200, 336] float32 soft masks of round objects of radius 3 to 24 feature pixels
    (12 to 96 picture pixels), as config 0 gives for an 800x1333 picture."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:CONFIG0_FEAT[0], :CONFIG0_FEAT[1]].astype(np.float32)
    soft = np.empty((count, *CONFIG0_FEAT), np.float32)
    for i in range(count):
        y, x, radius = rng.uniform(30, 170), rng.uniform(30, 306), rng.uniform(3, 24)
        soft[i] = 1 / (1 + np.exp(np.minimum((np.hypot(ys - y, xs - x) - radius) / 2, 50)))
    return soft


def stored_bytes(use) -> tuple:
    """(bytes a stored config-0-size result of 100 instances holds after ``use(result)``, as
    tracemalloc counts what stays allocated once everything but the result is gone; the
    result). The soft masks are made while traced, so a result that keeps them counts them."""
    import gc
    import tracemalloc

    from solov2.model.inference.postprocess import paste_in_boxes
    paste_in_boxes(np.zeros((1, *CONFIG0_FEAT), np.float32), CONFIG0_PICTURE, CONFIG0_PICTURE)   # the axes' cache
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]

        def made():
            soft = _config0_soft_masks()
            scores = np.linspace(0.9, 0.05, len(soft)).astype(np.float32)
            result = Instances(paste_in_boxes(soft, CONFIG0_PICTURE, CONFIG0_PICTURE), np.arange(len(soft)) % 3,
                               scores, NAMES)
            use(result)
            return result
        result = made()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


USES = {'nothing': lambda r: None, 'crops': lambda r: r.crops.crops, 'one mask': lambda r: r[3].mask,
        'masks': lambda r: r.masks,
        'to_coco': lambda r: r.to_coco(1), 'draw': lambda r: r.draw(np.zeros((*CONFIG0_PICTURE, 3), np.uint8)),
        'a selection': lambda r: r[r.scores > 0.5].polygons()}


@pytest.mark.parametrize('use', list(USES))
def test_a_stored_result_costs_what_its_objects_cost_not_its_soft_masks(use):
    """A result keeps no soft mask [N, Hf, Wf] (27 MB here): each mask keeps the part of its
    soft mask its paste reads until pasted, then its crop alone, so whatever was read a
    stored result holds about its objects' crops (1.5 MB here), not the picture's size
    (and the [N, H, W] masks once ``masks`` asked for them)."""
    held, result = stored_bytes(USES[use])
    objects = sum(crop.nbytes for crop in result.crops.crops)      # every crop made now, after the count
    soft = 100 * _config0_soft_masks(1).nbytes
    assert soft > 25_000_000 and 0 < objects < soft / 10
    shown = result.masks.nbytes if use == 'masks' else 0             # [N, H, W] bool asked for: kept
    assert held < 2 * objects + shown + 200_000, f'{use}: {held} bytes held for {objects} bytes of crops'


ADDED_FIELD = """
import dataclasses
import numpy as np
from solov2.data import results
results.RECORD_FIELDS += (('area', int, 'its pixels'),)         # as a contributor adds a field
made = results.instance_records
results.instance_records = lambda masks, *args, **kwargs: [
    {**record, 'area': int(masks.crop(index).sum())} for index, record in enumerate(made(masks, *args, **kwargs))]
from solov2.api import Instance, Instances
from solov2.data.masks import CroppedMasks
masks = np.zeros((1, 6, 8), dtype=bool)
masks[0, 1:4, 1:5] = True
one = Instances(CroppedMasks.from_dense(masks, np.array([[1, 1, 5, 4]])), np.array([1]), np.array([0.9]), ('a', 'b'))[0]
print([field.name for field in dataclasses.fields(Instance)], one.area, one.name, one.box)
"""


def test_a_field_added_to_the_record_reaches_every_answer_and_the_instance(three, monkeypatch):
    """The record (``RECORD_FIELDS``, made by ``instance_records``) drives the answers: a field added
    there (here ``area``, as a contributor would) reaches ``to_dict()`` and the COCO records with no
    other change, and ``Instance``'s fields are the record's (between the crop and the picture's size),
    so it has the new one too (a fresh interpreter: they are read when ``Instance`` is made)."""
    import dataclasses
    import subprocess
    import sys

    from solov2.data import results
    from tests.helpers import REPO_DIR
    assert [field.name for field in dataclasses.fields(Instance)] == \
        ['crop', *(key for key, _, _ in RECORD_FIELDS), 'image_size']
    made = results.instance_records

    def with_area(masks, *args, **kwargs):
        return [{**record, 'area': int(masks.crop(index).sum())} for index, record in
                enumerate(made(masks, *args, **kwargs))]
    monkeypatch.setattr(results, 'instance_records', with_area)
    monkeypatch.setattr('solov2.api.instances.instance_records', with_area)
    assert [one['area'] for one in three.to_dict()['instances']] == [12, 5, 1]
    assert [one['area'] for one in three.to_coco(1)] == [12, 5, 1]
    done = subprocess.run([sys.executable, '-c', ADDED_FIELD], capture_output=True, text=True, cwd=REPO_DIR,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split('\n')[-2] == \
        "['crop', 'label', 'name', 'score', 'box', 'area', 'image_size'] 12 b (1, 1, 5, 4)"
