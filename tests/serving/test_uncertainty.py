"""Each Label Studio prediction's ``score`` is the picture's uncertainty (serving/uncertainty.py): ordered by it,
highest first, the pictures with the candidates the model can least tell come first."""
from pathlib import Path

import pytest

from solov2 import Segmenter
from solov2.core.paths import SAMPLE_IMAGES
from solov2.serving.uncertainty import uncertainty
from tests.serving.running import SMALL_MODEL, ServeSettings, serving

PICTURES = sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))
CONFIG = ('<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
          + ''.join(f'<Label value="{name}"/>' for name in ('circle', 'square', 'triangle', 'star'))
          + '</PolygonLabels></View>')


@pytest.mark.parametrize('scores, expected', [
    ([], 1.0),                    # nothing found: a person must look
    ([0.99, 0.02], 0.04),         # sure either way
    ([0.99, 0.5], 1.0),           # one it cannot tell decides
    ([0.9, 0.3], 0.6),
    ([0.7], 0.6)])
def test_uncertainty_is_one_minus_the_least_margin(scores, expected):
    assert uncertainty(scores) == pytest.approx(expected)


def test_sorting_by_prediction_score_puts_the_least_sure_pictures_first():
    segmenter = Segmenter(SMALL_MODEL)
    expected = {path.name: uncertainty(segmenter(str(path), min_score=0).scores.tolist()) for path in PICTURES}
    tasks = [{'id': index, 'data': {'image': path.name}} for index, path in enumerate(PICTURES)]
    with serving(ServeSettings(SMALL_MODEL, label_studio_files=SAMPLE_IMAGES)) as client:
        answer = client.post('/label-studio/predict', json={'tasks': tasks, 'label_config': CONFIG}).json()
    scores = {path.name: one['score'] for path, one in zip(PICTURES, answer['results'])}
    assert scores == pytest.approx(expected, abs=1e-3)
    assert len(set(scores.values())) == len(PICTURES)          # each picture its own place in the order
    for one in answer['results']:            # the regions still those shown (from SHOWN_MIN_SCORE)
        assert all(region['score'] >= 0.3 for region in one['result'])
