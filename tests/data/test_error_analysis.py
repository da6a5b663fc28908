"""The COCO error analysis of masks (data/error_analysis.py) on the shapes set, with results as SOLOv2 gives
them (each object found with its class, and found again, scored lower, as another class): right, they lose
nothing; two classes' predictions swapped, their AP moves from C50 into the class-confusion steps (Sim, Oth);
masks cut short, into localisation (Loc); eval.py --errors writes the charts and the table."""
import json

import numpy as np
import pytest

from solov2.data.coco import load_coco, segmentation_to_mask
from solov2.data.error_analysis import STEPS, analyze_errors, error_table
from solov2.data.results import encode_crop_rle
from solov2.tools import eval as eval_cli
from tests.helpers import make_tiny_shapes

C50, LOC, SIM, OTH, BG = (STEPS.index(step) for step in ('C50', 'Loc', 'Sim', 'Oth', 'BG'))


@pytest.fixture(scope='module')
def shapes_val(tmp_path_factory):
    root = make_tiny_shapes(tmp_path_factory.mktemp('shapes'), val=6)
    return root / 'annotations' / 'instances_val.json'


PARTNER = {1: 2, 2: 1, 3: 4, 4: 3}          # circle <-> square, triangle <-> star: the lower-scored duplicate's class


def perfect_records(coco, relabel=None, keep_rows=None):
    """Every object of ``coco`` as two results: its own mask (RLE) with its category (score 0.9) and with its
    ``PARTNER``'s (0.3); each category through ``relabel``, the mask cut to its first ``keep_rows`` share of
    rows when given."""
    records = []
    for annotation in coco.dataset['annotations']:
        image = coco.imgs[annotation['image_id']]
        mask = segmentation_to_mask(annotation['segmentation'], image['height'], image['width']).astype(bool)
        if keep_rows:
            rows = np.flatnonzero(mask.any(axis=1))
            mask[rows[0] + max(1, int(len(rows) * keep_rows)):] = False
        rle = encode_crop_rle(mask, (0, 0, image['width'], image['height']), mask.shape)
        for category, score in ((annotation['category_id'], 0.9), (PARTNER[annotation['category_id']], 0.3)):
            records.append({'image_id': image['id'], 'category_id': (relabel or {}).get(category, category),
                            'score': score, 'segmentation': rle})
    return records


def test_swapped_classes_move_ap_from_c50_into_class_confusion(shapes_val):
    coco = load_coco(shapes_val)
    counts = np.bincount([a['category_id'] for a in coco.dataset['annotations']], minlength=5)
    circle, square = 1, 2
    assert counts[circle] and counts[square]
    perfect = analyze_errors(coco, perfect_records(coco)).ap()
    assert np.allclose(perfect[:, perfect[1] == perfect[1]], 1.0)        # nothing lost at any step
    swapped = analyze_errors(coco, perfect_records(coco, {circle: square, square: circle}))
    ap = swapped.ap()
    for k in (circle - 1, square - 1):        # the other class's objects found first, at 0.9 ...
        assert ap[C50, k] == ap[LOC, k] < 0.8, (swapped.names[k], ap[:, k])
        assert ap[SIM, k] == ap[OTH, k] == pytest.approx(1.0), swapped.names[k]     # ... all of it class confusion
    assert np.allclose(ap[C50, 2:][counts[3:] > 0], 1.0)                # the other classes untouched
    overall = swapped.overall().mean(axis=1)
    assert overall[C50] < 0.9 and overall[SIM] == pytest.approx(1.0)
    assert 'overall' in error_table(swapped) and 'circle' in error_table(swapped)


def test_masks_cut_short_lose_their_ap_to_localisation(shapes_val):
    coco = load_coco(shapes_val)
    ap = analyze_errors(coco, perfect_records(coco, keep_rows=0.4)).overall().mean(axis=1)
    assert ap[C50] < 0.3 and ap[LOC] > ap[C50] + 0.5, ap


def test_eval_writes_the_charts_and_the_table(shapes_val, tmp_path, capsys):
    coco = load_coco(shapes_val)
    results = tmp_path / 'results.json'
    results.write_text(json.dumps(perfect_records(coco, {1: 2, 2: 1})))
    out = tmp_path / 'errors'
    assert eval_cli.main(['--config', '9', '--json-only', str(results), '--ann', str(shapes_val),
                          '--errors', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'error analysis: C75 precision at IoU 0.75' in printed and f'error analysis charts in {out}' in printed
    names = sorted(path.name for path in out.iterdir())
    assert 'errors_overall.png' in names and 'errors_circle.png' in names and 'errors.txt' in names
    assert (out / 'errors_overall.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
