"""``CroppedMasks``: crops to tight boxes, indexing, pasting on demand; and the crops path of
COCO records, RLE and polygons equal to the full-mask path."""
import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2.data.masks import CroppedMasks, as_cropped, mask_to_box, masks_to_boxes
from solov2.data.polygons import mask_polygons
from solov2.data.results import encode_crop_rle, instances_to_coco

# pycocotools' encode triggers a NumPy 2 copy-keyword DeprecationWarning internally.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


def _random_masks(rng, count=9, size=(37, 53)):
    """[count, H, W] bool: noise in random windows, blocks on the edges, one whole-picture
    mask, one empty."""
    masks = np.zeros((count, *size), dtype=bool)
    for mask in masks[2:]:
        y0, x0 = rng.integers(0, size[0]), rng.integers(0, size[1])
        y1, x1 = rng.integers(y0, size[0]) + 1, rng.integers(x0, size[1]) + 1
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.uniform(0.2, 1.0)
    masks[1] = rng.random(size) < 0.7
    masks[2, :, :4] = True
    masks[-1] = False
    return masks


def test_from_dense_keeps_tight_crops_and_pastes_back():
    masks = _random_masks(np.random.default_rng(0))
    cropped = CroppedMasks.from_dense(masks)
    assert len(cropped) == 9 and cropped.shape == masks.shape and cropped.image_size == (37, 53)
    np.testing.assert_array_equal(cropped.boxes, masks_to_boxes(masks))
    for crop, box, mask in zip(cropped.crops, cropped.boxes, masks):
        assert crop.shape == (box[3] - box[1], box[2] - box[0])
        assert mask_to_box(crop) in (None, (0, 0, crop.shape[1], crop.shape[0]))      # tight
    assert cropped.crops[-1].shape == (0, 0) and tuple(cropped.boxes[-1]) == (0, 0, 0, 0)
    dense = np.asarray(cropped)
    assert dense.dtype == bool and dense.shape == masks.shape
    np.testing.assert_array_equal(dense, masks)
    np.testing.assert_array_equal(np.asarray(cropped, dtype=np.uint8), masks.astype(np.uint8))
    np.testing.assert_array_equal(cropped[3], masks[3])
    np.testing.assert_array_equal(np.stack(list(cropped)), masks)


def test_selection_gives_new_cropped_masks():
    masks = _random_masks(np.random.default_rng(1))
    cropped = CroppedMasks.from_dense(masks)
    keep = np.array([True, False] * 4 + [True])
    for index, want in ((slice(2, 5), masks[2:5]), (keep, masks[keep]), (np.array([4, 0, -1]), masks[[4, 0, -1]]),
                        ([], masks[:0])):
        part = cropped[index]
        assert isinstance(part, CroppedMasks) and part.image_size == cropped.image_size
        np.testing.assert_array_equal(np.asarray(part), want)
    assert np.asarray(CroppedMasks([], np.zeros((0, 4)), (4, 5))).shape == (0, 4, 5)
    assert as_cropped(cropped) is cropped


def test_a_crop_that_does_not_fit_its_box_is_refused():
    with pytest.raises(ValueError, match='does not fit'):
        CroppedMasks([np.ones((2, 3), bool)], [[0, 0, 2, 2]], (5, 5))
    with pytest.raises(ValueError, match='2 crops but 1 boxes'):
        CroppedMasks([np.ones((1, 1), bool)] * 2, [[0, 0, 1, 1]], (5, 5))


def test_coco_records_rle_and_polygons_from_crops_equal_the_full_masks():
    """Records from the crops are those of the [N, H, W] masks (and of pycocotools on them);
    polygons of a crop are those of its full mask."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        masks = _random_masks(rng, size=tuple(int(v) for v in rng.integers(1, 60, 2)))
        labels, scores = rng.integers(0, 3, len(masks)), rng.random(len(masks)).astype(np.float32)
        cropped = CroppedMasks.from_dense(masks)
        from_crops = instances_to_coco(5, cropped, labels, scores, [1, None, 3], file_name='a.jpg',
                                       class_names=['a', 'b', 'c'])
        assert from_crops == instances_to_coco(5, masks, labels, scores, [1, None, 3], file_name='a.jpg',
                                               class_names=['a', 'b', 'c'])
        for crop, box, mask in zip(cropped.crops, cropped.boxes, masks):
            want = mask_util.encode(np.asfortranarray(mask.view(np.uint8)))
            assert encode_crop_rle(crop, box, mask.shape)['counts'] == want['counts'].decode('ascii')
            whole = mask_polygons(mask, (0, 0, mask.shape[1], mask.shape[0]))
            assert [p.tolist() for p in mask_polygons(crop, box)] == [p.tolist() for p in whole]


def _counting_lazy(masks):
    """A lazy ``CroppedMasks`` of full masks [N, H, W] and the list of the indices it made."""
    made, boxes = [], masks_to_boxes(masks)

    def make(i):
        made.append(i)
        x0, y0, x1, y1 = boxes[i]
        return masks[i, y0:y1, x0:x1].copy(), boxes[i]
    return CroppedMasks.lazy(list(range(len(masks))), make, masks.shape[1:], lambda i: boxes[i]), made


def test_a_lazy_mask_is_made_once_when_first_read():
    masks = _random_masks(np.random.default_rng(3))
    lazy, made = _counting_lazy(masks)
    assert len(lazy) == len(masks) and lazy.shape == masks.shape and made == []
    np.testing.assert_array_equal(lazy[-2], masks[-2])
    assert lazy.box(-2) == mask_to_box(masks[-2])
    lazy.crop(4)
    chosen = lazy[np.array([4, 2, 7])]
    np.testing.assert_array_equal(chosen.crop(0), lazy.crop(4))
    assert made == [len(masks) - 2, 4]                    # made before the selection: shared, not made again
    np.testing.assert_array_equal(np.asarray(lazy), masks)
    np.testing.assert_array_equal(lazy.boxes, masks_to_boxes(masks))
    assert sorted(made) == list(range(len(masks)))
    np.testing.assert_array_equal(chosen.crop(1), masks[2][slice(*chosen.box(1)[1::2]), slice(*chosen.box(1)[::2])])
    with pytest.raises(IndexError):
        lazy.crop(len(masks))


def test_drawing_and_records_equal_eager_and_drawing_makes_only_what_it_draws():
    from solov2.data.visualize import draw_instances
    masks = _random_masks(np.random.default_rng(4))
    scores = np.linspace(0.9, 0.1, len(masks)).astype(np.float32)
    labels = np.arange(len(masks)) % 3
    image = np.random.default_rng(5).integers(0, 255, (*masks.shape[1:], 3), dtype=np.uint8)
    lazy, made = _counting_lazy(masks)
    drawn = draw_instances(image, lazy, labels, scores, ['a', 'b', 'c'], score_threshold=0.5)
    assert sorted(made) == list(np.flatnonzero(scores >= 0.5))
    np.testing.assert_array_equal(drawn, draw_instances(image, masks, labels, scores, ['a', 'b', 'c'], 0.5))
    ids = [1, 2, 3]
    assert instances_to_coco(1, lazy, labels, scores, ids) == instances_to_coco(1, masks, labels, scores, ids)


def test_a_selection_kept_alone_holds_only_its_own_masks_sources():
    """``result[keep]`` stored and the result dropped: the unselected masks' sources (soft-mask
    windows in a real result) are freed with the parent, and the selected ones once read."""
    import gc
    import weakref

    class Source:
        def __init__(self, mask):
            self.mask = mask
    masks = _random_masks(np.random.default_rng(5))
    sources = [Source(mask) for mask in masks]
    alive = [weakref.ref(source) for source in sources]
    lazy = CroppedMasks.lazy(sources, lambda source: (source.mask[slice(*_rows_cols(source.mask)[0]),
                                                                   slice(*_rows_cols(source.mask)[1])],
                                                      mask_to_box(source.mask) or (0, 0, 0, 0)), masks.shape[1:],
                              lambda source: mask_to_box(source.mask) or (0, 0, 0, 0))
    del sources
    chosen = lazy[np.array([1, 3])]
    del lazy
    gc.collect()
    assert [i for i, ref in enumerate(alive) if ref() is not None] == [1, 3]
    np.testing.assert_array_equal(np.asarray(chosen), masks[[1, 3]])
    gc.collect()
    assert all(ref() is None for ref in alive)


def _rows_cols(mask):
    """(rows, columns) half-open ranges of ``mask``'s tight box ((0, 0) each when empty)."""
    x0, y0, x1, y1 = mask_to_box(mask) or (0, 0, 0, 0)
    return (y0, y1), (x0, x1)
