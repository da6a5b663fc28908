"""Label Studio's formats (data/label_studio.py): the brush RLE read and written as Label Studio's own
converter (label_studio_sdk, in Label Studio's venv: SOLOV2_LABEL_STUDIO_VENV) writes and reads it; the
labelling config's tag mapped to the model's classes."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from solov2.core.errors import InputError
from solov2.data.label_studio import class_indices, decode_brush, encode_brush, field_bits, label_tag, points_polygon

VENV_PYTHON = Path(os.environ.get('SOLOV2_LABEL_STUDIO_VENV', '')) / 'bin' / 'python'
THEIRS = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
job = json.load(sys.stdin)
decoded = [np.asarray(decode_rle(rle)).reshape(h, w, 4)[:, :, 3].astype(int).ravel().tolist()
           for rle, (h, w) in zip(job["rles"], job["sizes"])]
encoded = [[int(byte) for byte in mask2rle(np.asarray(mask, np.uint8) * 255)] for mask in job["masks"]]
json.dump({"decoded": decoded, "encoded": encoded}, sys.stdout)
"""


def masks():
    """Masks of every kind of run: noise, empty, full, sparse dots, a block, runs over 2**16 bytes."""
    rng = np.random.default_rng(0)
    block = np.zeros((200, 300), bool)
    block[50:120, 30:250] = True
    return [rng.random((37, 53)) > 0.5, np.zeros((20, 30), bool), np.ones((300, 400), bool),
            rng.random((64, 64)) > 0.97, block]


def test_brush_rle_round_trips():
    for mask in masks():
        assert (decode_brush(encode_brush(mask), *mask.shape) == mask).all()


@pytest.mark.skipif(not VENV_PYTHON.is_file() and not os.environ.get('SOLOV2_REQUIRE_SYSTEM_PACKAGES'),
                    reason='Label Studio is not installed: SOLOV2_LABEL_STUDIO_VENV names its venv (.ci/run)')
def test_brush_rle_is_label_studios_own():
    """Label Studio's converter decodes what encode_brush writes, and decode_brush reads what it encodes."""
    shapes = [mask.shape for mask in masks()]
    job = {'rles': [encode_brush(mask) for mask in masks()], 'sizes': shapes,
           'masks': [mask.astype(int).tolist() for mask in masks()]}
    answer = subprocess.run([str(VENV_PYTHON), '-c', THEIRS], input=json.dumps(job), capture_output=True, text=True,
                            check=True, timeout=120)
    theirs = json.loads(answer.stdout)
    for mask, decoded, encoded in zip(masks(), theirs['decoded'], theirs['encoded']):
        assert (np.asarray(decoded).reshape(mask.shape) > 0).tolist() == mask.tolist()
        assert (decode_brush(encoded, *mask.shape) == mask).all()


def test_a_bad_brush_rle_is_refused_before_its_size_is_allocated():
    rle = encode_brush(np.ones((10, 10), bool))
    with pytest.raises(InputError, match='holds 400 bytes, not the 20x10x4'):
        decode_brush(rle, 20, 10)
    with pytest.raises(InputError, match='ends before its data'):
        decode_brush(rle[:8], 10, 10)
    with pytest.raises(InputError, match='list of bytes'):
        decode_brush('abc', 10, 10)


def test_polygon_points_are_percent_of_the_picture():
    assert points_polygon([[50, 25], [100, 25], [100, 100]], 200, 400) == [200, 50, 400, 50, 400, 200]
    with pytest.raises(InputError, match='at least 3'):
        points_polygon([[1, 2], [3, 4]], 10, 10)


def test_the_config_maps_to_the_models_classes_by_name():
    config = ('<View><Image name="img" value="$picture"/><BrushLabels name="mask" toName="img">'
              '<Label value="Square"/><Label value="circle"/><Label value="hexagon"/></BrushLabels></View>')
    tag = label_tag(config)
    assert (tag.kind, tag.name, tag.to_name, tag.data_key, tag.type) == ('brush', 'mask', 'img', 'picture',
                                                                        'brushlabels')
    mapping = class_indices(tag, ('circle', 'square', 'triangle'))
    assert mapping.labels == {1: 'Square', 0: 'circle'} and mapping.unmatched == ('hexagon',)
    with pytest.raises(InputError, match="no label of this model's classes"):
        class_indices(tag, ('dog',))
    twice = label_tag(config.replace('hexagon', 'CIRCLE'))
    with pytest.raises(InputError, match="the labels 'circle' and 'CIRCLE' both stand for the class 'circle'"):
        class_indices(twice, ('circle', 'square'))
    mapped = label_tag(config.replace('value="hexagon"', 'value="Shape" predicted_values="triangle, star"'))
    assert class_indices(mapped, ('circle', 'square', 'triangle', 'star')).labels == {
        1: 'Square', 0: 'circle', 2: 'Shape', 3: 'Shape'}
    with pytest.raises(InputError, match='predicted_values naming classes this model lacks: star'):
        class_indices(mapped, ('circle', 'square', 'triangle'))
    with pytest.raises(InputError, match='has 0 PolygonLabels or BrushLabels tags'):
        label_tag('<View><Image name="i" value="$image"/></View>')
    with pytest.raises(InputError, match='not XML'):
        label_tag('<View>')
    with pytest.raises(InputError, match='toName naming an Image'):
        label_tag('<View><PolygonLabels name="p" toName="x"><Label value="a"/></PolygonLabels></View>')


def test_a_config_with_both_tags_gives_the_one_asked_for():
    both = ('<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"><Label value="a"/></BrushLabels>'
            '<PolygonLabels name="p" toName="i"><Label value="a"/></PolygonLabels></View>')
    assert label_tag(both).name == 'p' and label_tag(both, 'BrushLabels').name == 'b'
    with pytest.raises(InputError, match=r'has 3 PolygonLabels or BrushLabels tags \(2 PolygonLabels\)'):
        label_tag(both.replace('</View>', '<PolygonLabels name="q" toName="i"><Label value="a"/></PolygonLabels>'
                                          '</View>'))


def test_words_given_one_by_one_decode():
    """A chunk of words given one by one (flag 0), as Label Studio's editor writes short runs: 2 pixels, the
    first's alpha 255, the second's 0."""
    header = [(8, 32), (7, 5)] + [(bits - 1, 4) for bits in (3, 4, 8, 16)]
    chunk = [(0, 1), (0, 2), (7, 3)] + [(word, 8) for word in (1, 2, 3, 255, 9, 9, 9, 0)]
    numbers, widths = zip(*(header + chunk))
    rle = np.packbits(field_bits(np.asarray(numbers), np.asarray(widths))).tolist()
    assert decode_brush(rle, 1, 2).tolist() == [[True, False]]


def test_a_prompt_chooses_the_candidate_that_best_fills_its_box_or_holds_its_points():
    from solov2.data.label_studio import Prompt, prompt_of, prompted_instance
    from solov2.data.masks import CroppedMasks
    masks = np.zeros((3, 100, 200), bool)
    masks[0, 10:50, 10:50] = True              # a square
    masks[1, 10:50, 10:90] = True              # a wider one holding it
    masks[2, 60:90, 100:190] = True
    crops, scores = CroppedMasks.from_dense(masks), np.array([0.6, 0.9, 0.5])
    assert prompted_instance(crops, scores, Prompt((5, 10, 25, 50), (), None)) == 0      # x 10-50, y 10-50 px
    assert prompted_instance(crops, scores, Prompt((5, 10, 45, 50), (), None)) == 1      # x 10-90
    assert prompted_instance(crops, scores, Prompt((5, 10, 20, 50), (), None)) == 0      # x 10-40: box IoU x score
    assert prompted_instance(crops, scores, Prompt(None, ((10, 30, True),), None)) == 1  # the best scoring there
    assert prompted_instance(crops, scores, Prompt(None, ((10, 30, True), (40, 30, False)), None)) == 0
    assert prompted_instance(crops, scores, Prompt(None, ((99, 5, True),), None)) is None
    assert prompted_instance(crops, scores, Prompt((99, 0, 100, 1), (), None)) is None
    tag = label_tag('<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"><Label value="a"/>'
                    '</BrushLabels></View>')
    drawn = {'to_name': 'i', 'type': 'rectanglelabels', 'value': {'x': 1, 'y': 2, 'width': 3, 'height': 4,
                                                                 'rectanglelabels': ['a']}}
    assert prompt_of({'result': [drawn]}, tag) == Prompt((1.0, 2.0, 4.0, 6.0), (), 'a')
    assert prompt_of(None, tag) is None and prompt_of({'result': [dict(drawn, to_name='j')]}, tag) is None
    with pytest.raises(InputError, match='has no numbers x, y, width, height'):
        prompt_of({'result': [dict(drawn, value={'x': 'a'})]}, tag)
