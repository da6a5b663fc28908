"""eval.py and data/scoring.py on hand-built ground truth with hand-computed AP."""
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from solov2.data import scoring
from solov2.data.coco import load_coco
from solov2.data.results import instances_to_coco
from solov2.data.scoring import coco_stats, evaluate_segm, per_class_ap, run_cocoeval
from solov2.tools import eval as eval_cli
from tests.helpers import make_tiny_shapes
from tests.pictures import large_jpeg

H, W = 40, 50


def _square(y, x, size=10):
    mask = np.zeros((H, W), bool)
    mask[y:y + size, x:x + size] = True
    return mask


GT = [(1, 1, _square(5, 5)), (1, 2, _square(20, 30)), (2, 1, _square(10, 20))]  # image, category, mask


@pytest.fixture()
def gt_file(tmp_path):
    images = [{'id': i, 'file_name': f'{i}.jpg', 'height': H, 'width': W} for i in (1, 2)]
    annotations = []
    for index, (image_id, category, mask) in enumerate(GT, start=1):
        record = instances_to_coco(image_id, mask[None], np.array([0]), np.array([1.0]), [category])[0]
        annotations.append({'id': index, 'image_id': image_id, 'category_id': category,
                            'segmentation': record['segmentation'], 'area': int(mask.sum()),
                            'bbox': record['bbox'], 'iscrowd': 0})
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps({'images': images, 'annotations': annotations,
                                'categories': [{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}]}))
    return str(path)


def _records(shift=0):
    records = []
    for image_id, category, mask in GT:
        moved = np.roll(mask, shift, axis=1)
        records += instances_to_coco(image_id, moved[None], np.array([0]), np.array([0.9]), [category])
    return records


def test_perfect_predictions_score_one(gt_file):
    stats = evaluate_segm(load_coco(gt_file), _records())
    assert stats['AP'] == pytest.approx(1.0) and stats['AP50'] == pytest.approx(1.0)
    box = evaluate_segm(load_coco(gt_file), _records(), 'bbox')
    assert box['AP'] == pytest.approx(1.0)


def test_shifted_masks_give_the_hand_computed_ap(gt_file, monkeypatch):
    """Each mask shifted by 2 px: IoU = 8*10 / (12*10) = 0.667, a match at the IoU
    thresholds 0.50, 0.55, 0.60 and 0.65 only -> AP = 4/10, AP50 = 1, AP75 = 0."""
    stats = evaluate_segm(load_coco(gt_file), _records(shift=2))
    assert stats['AP'] == pytest.approx(0.4, abs=1e-6)
    assert stats['AP50'] == pytest.approx(1.0) and stats['AP75'] == pytest.approx(0.0)
    monkeypatch.setattr(scoring, 'find_spec', lambda name: None)     # pycocotools, also where faster-coco-eval is
    reference = coco_stats(run_cocoeval(load_coco(gt_file), _records(shift=2)))
    assert reference['AP'] == pytest.approx(0.4, abs=1e-6)


def _random_set(tmp_path, images=12, seed=0):
    """(annotation file, result records): random boxes as masks, crowds and small objects
    among them, detections jittered from them plus false positives."""
    rng = np.random.default_rng(seed)
    annotations, records = [], []
    for image_id in range(1, images + 1):
        for _ in range(4):
            y, x, h, w = rng.integers(0, 30), rng.integers(0, 40), rng.integers(4, 20), rng.integers(4, 20)
            mask = np.zeros((H, W), bool)
            mask[y:y + h, x:x + w] = True
            category = int(rng.integers(1, 3))
            record = instances_to_coco(image_id, mask[None], np.array([0]), np.array([1.0]), [category])[0]
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id, 'category_id': category,
                                'segmentation': record['segmentation'], 'area': int(mask.sum()),
                                'bbox': record['bbox'], 'iscrowd': int(rng.random() < 0.1)})
            moved = np.roll(mask, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
            records += instances_to_coco(image_id, np.stack([moved, np.roll(mask, 9, axis=1)]), np.array([0, 0]),
                                         rng.random(2), [category if rng.random() < 0.9 else 3 - category])
    path = tmp_path / 'random.json'
    path.write_text(json.dumps({'images': [{'id': i, 'file_name': f'{i}.jpg', 'height': H, 'width': W}
                                           for i in range(1, images + 1)], 'annotations': annotations,
                                'categories': [{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}]}))
    return str(path), records


@pytest.mark.parametrize('iou_type', ['segm', 'bbox'])
def test_faster_coco_eval_gives_the_numbers_of_pycocotools(tmp_path, iou_type, monkeypatch):
    """faster-coco-eval, the scorer when installed, against pycocotools, the reference: the
    12 numbers and every class's AP to 1e-6."""
    faster_type = pytest.importorskip('faster_coco_eval').COCOeval_faster
    ann, records = _random_set(tmp_path)
    faster = run_cocoeval(load_coco(ann), records, iou_type)
    monkeypatch.setattr(scoring, 'find_spec', lambda name: None)     # as where it is not installed
    reference = run_cocoeval(load_coco(ann), records, iou_type)
    assert type(faster) is faster_type and type(reference) is COCOeval
    assert 0.1 < reference.stats[0] < 0.9
    assert np.abs(np.asarray(faster.stats) - np.asarray(reference.stats)).max() <= 1e-6
    assert per_class_ap(faster) == pytest.approx(per_class_ap(reference), abs=1e-6)


def test_per_class_ap(gt_file):
    records = _records()
    records = [r for r in records if not (r['category_id'] == 2)]   # miss class 2 entirely
    by_class = per_class_ap(run_cocoeval(load_coco(gt_file), records))
    assert by_class[1] == pytest.approx(1.0) and by_class[2] == pytest.approx(0.0)


def test_a_metric_pycocotools_cannot_measure_prints_as_n_a():
    """pycocotools gives -1 for APl and ARl when no object is large: printed 'n/a', not -100.00."""
    stats = dict.fromkeys(scoring.STAT_NAMES, 0.5) | {'APl': -1.0, 'ARl': -1.0}
    head, values = eval_cli.format_stats('mask AP (%)', stats).splitlines()[1:]
    shown = dict(zip(head.split(), values.split()))
    assert shown['APl'] == shown['ARl'] == 'n/a' and shown['AP'] == '50.00' and '-100' not in values


def test_no_records_gives_zeros(gt_file):
    assert set(evaluate_segm(load_coco(gt_file), []).values()) == {0.0}


def test_cli_rescoring_and_classwise(gt_file, tmp_path, capsys):
    results = tmp_path / 'segm.json'
    results.write_text(json.dumps(_records(shift=2)))
    assert eval_cli.main(['--config', '9', '--ann', gt_file, '--json-only', str(results),
                          '--classwise', '--save-json', str(tmp_path / 'copy.json')]) == 0
    out = capsys.readouterr().out
    assert ' 40.00' in out and 'per-class mask AP' in out
    assert (tmp_path / 'classwise_ap.png').is_file() and (tmp_path / 'copy.json').is_file()


def test_cli_rescoring_without_a_config_names_the_flag(gt_file, tmp_path, capsys):
    """No --config and no --weights: the line names --config (before: 'pass config= (the weights have no
    sidecar ...)', though no weights were given)."""
    results = tmp_path / 'segm.json'
    results.write_text(json.dumps(_records(shift=2)))
    assert eval_cli.main(['--ann', gt_file, '--json-only', str(results)]) == 2
    assert capsys.readouterr().err == ('error: --json-only needs --config N, the config the results were predicted '
                                       'with (its classes and val set), or the --weights whose sidecar names it\n')


def test_cli_classwise_chart_goes_to_chart_or_nowhere(gt_file, tmp_path, capsys, monkeypatch):
    """--chart PATH writes the chart there (and implies --classwise); --classwise alone
    prints the table and a hint, and writes nothing into the current folder."""
    results, here = tmp_path / 'segm.json', tmp_path / 'here'
    results.write_text(json.dumps(_records(shift=2)))
    here.mkdir()
    monkeypatch.chdir(here)
    base = ['--config', '9', '--ann', gt_file, '--json-only', str(results)]
    assert eval_cli.main([*base, '--classwise']) == 0
    out = capsys.readouterr().out
    assert 'per-class mask AP' in out and '(--chart PATH to save the bar chart)' in out
    assert list(here.iterdir()) == []
    chart = tmp_path / 'charts' / 'ap.png'
    assert eval_cli.main([*base, '--chart', str(chart)]) == 0
    assert 'per-class mask AP' in capsys.readouterr().out and chart.is_file()
    assert list(here.iterdir()) == []


def test_cli_writes_the_ap_to_visualdl(gt_file, tmp_path):
    LogReader = pytest.importorskip('visualdl', reason='needs VisualDL (requirements-test.txt)').LogReader
    results, vdl = tmp_path / 'segm.json', tmp_path / 'vdl'
    results.write_text(json.dumps(_records(shift=2)))
    assert eval_cli.main(['--config', '9', '--ann', gt_file, '--json-only', str(results), '--classwise',
                          '--vdl-dir', str(vdl), '--vdl-step', '300']) == 0
    (log_file,) = vdl.iterdir()
    reader = LogReader(file_path=str(log_file))
    ap = reader.get_data('scalar', 'eval/AP')
    assert [r.id for r in ap] == [300] and ap[0].value == pytest.approx(0.4)
    assert any(tag.startswith('eval_class/') for tag in reader.get_tags()['scalar'])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert eval_cli.main(['--config', '9', '--ann', str(tmp_path / 'missing.json'), '--weights', 'x']) == 2
    assert eval_cli.main(['--weights', str(tmp_path / 'nosidecar.pdparams')]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith('error: ') for e in errors)


# ---- categories matched by name, inputs checked before any export ------------------------------

def _image_set(tmp_path, names=('circle', 'square'), annotated=('square',)):
    """tmp_path/set.json + tmp_path/images/{1,2}.png: categories ``names``, one square mask of
    each ``annotated`` class on image 1."""
    import cv2
    (tmp_path / 'images').mkdir(parents=True)
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / 'images' / f'{i}.png'), np.zeros((H, W, 3), np.uint8))
    annotations = [{'id': k + 1, 'image_id': 1, 'category_id': names.index(n) + 1, 'iscrowd': 0,
                    'segmentation': instances_to_coco(1, _square(5 + 10 * k, 5)[None], np.array([0]),
                                                      np.array([1.0]), [1])[0]['segmentation'],
                    'area': 100, 'bbox': [5, 5 + 10 * k, 10, 10]} for k, n in enumerate(annotated)]
    path = tmp_path / 'set.json'
    path.write_text(json.dumps({'images': [{'id': i, 'file_name': f'{i}.png', 'height': H, 'width': W} for i in (1, 2)],
                                'annotations': annotations,
                                'categories': [{'id': i + 1, 'name': n} for i, n in enumerate(names)]}))
    return str(path), str(tmp_path / 'images')


def test_a_set_lacking_classes_is_scored_on_the_classes_it_has(tmp_path, caplog):
    from solov2.model.inference.predicting import evaluation_dataset
    ann, images = _image_set(tmp_path)
    caplog.set_level('INFO', logger='solov2.model.inference')
    dataset = evaluation_dataset(ann, images, ('circle', 'square', 'triangle', 'star'))
    assert dataset.label_to_category_id == [1, 2, None, None]
    assert caplog.messages == [f'{ann} has no annotations of circle, triangle, star: scored on square']
    masks = np.stack([_square(5, 5), _square(20, 20)])
    records = instances_to_coco(1, masks, np.array([1, 3]), np.array([0.9, 0.8]), dataset.label_to_category_id)
    assert [r['category_id'] for r in records] == [2]                              # the star has no category
    assert evaluate_segm(dataset.coco, records)['AP'] == pytest.approx(1.0)


def test_eval_checks_the_set_before_exporting_and_names_what_is_wrong(tmp_path, capsys, monkeypatch):
    from solov2.core.paths import CACHE_ENV, SHIPPED_WEIGHTS
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    ann, images = _image_set(tmp_path / 'set')
    ours, other = _image_set(tmp_path / 'ours', names=('brick', 'egg'), annotated=('egg',))
    (tmp_path / 'elsewhere').mkdir()
    nosidecar = tmp_path / 'nosidecar.pdparams'
    nosidecar.write_bytes(open(SHIPPED_WEIGHTS, 'rb').read())
    weights = ['--weights', SHIPPED_WEIGHTS]
    cases = [
        (weights + ['--ann', ann, '--images', str(tmp_path / 'elsewhere')],
         f'the images folder {tmp_path / "elsewhere"} lacks 2 of the 2 images {ann} lists (e.g. 1.png)'),
        (weights + ['--ann', ours, '--images', other],
         f"{ours} has none of the model's classes (circle, square, triangle, star); it has brick, egg"),
        (weights + ['--ann', ann, '--images', images, '--opt', 'num_classes=2'],
         'hold 4 classes (circle, square, triangle, star), not num_classes=2'),
        (['--weights', str(nosidecar), '--config', '5', '--ann', ann, '--images', images],
         'do not fit config 5', 'they fit config 9 — pass config=9'),
        (['--weights', str(nosidecar), '--ann', ann, '--images', images],
         'has no sidecar .json naming its config: they fit config 9'),
    ]
    for argv, *fragments in cases:
        assert eval_cli.main(argv) == 2, argv
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error: ')]
        assert len(errors) == 1 and all(f in errors[0] for f in fragments), (errors, fragments)
    assert not (tmp_path / 'cache').exists()                       # nothing was exported
    (Path(images) / '2.png').write_bytes(b'not a picture')
    assert eval_cli.main(weights + ['--ann', ann, '--images', images, '--backend', 'dygraph']) == 2
    printed = capsys.readouterr().err
    assert f'unread: 2.png (image 2): cannot read image {images}/2.png' in printed
    assert '1 of 2 images could not be read (listed above), so none was scored; pass --save-json PATH' in printed


def test_fast_decode_predicts_a_large_jpeg_set_on_its_pictures_grid(tmp_path):
    """``eval.py --fast-decode`` end to end: two 1280 x 1280 JPEGs (decoded at 1/4 for config 9's
    320 input) give records on their whole grid, nearly those of the whole decoding, not the same."""
    from solov2.core.paths import SHIPPED_WEIGHTS
    shapes = make_tiny_shapes(tmp_path / 'shapes')
    ann = json.loads((shapes / 'annotations' / 'instances_val.json').read_text())
    (tmp_path / 'large').mkdir()
    for image in ann['images']:
        (tmp_path / 'large' / image['file_name']).write_bytes(large_jpeg(shapes / 'val' / image['file_name'], 10))
        image['width'], image['height'] = image['width'] * 10, image['height'] * 10
    ann['annotations'] = []
    (tmp_path / 'large.json').write_text(json.dumps(ann))
    found = {}
    for name, flags in (('whole', []), ('fast', ['--fast-decode'])):
        assert eval_cli.main(['--weights', SHIPPED_WEIGHTS, '--backend', 'dygraph', '--device', 'cpu', '--threads', '1',
                              '--ann', str(tmp_path / 'large.json'), '--images', str(tmp_path / 'large'),
                              '--predict-only', str(tmp_path / f'{name}.json'), *flags]) == 0
        found[name] = [r for r in json.loads((tmp_path / f'{name}.json').read_text()) if r['score'] >= 0.3]
    assert {tuple(r['segmentation']['size']) for r in found['fast']} == {(1280, 1280)}
    assert abs(len(found['fast']) - len(found['whole'])) <= 1 and found['fast'] != found['whole']


def test_pictures_that_cannot_be_read_are_named_and_the_others_results_kept(tmp_path, capsys):
    """Two broken pictures among three good ones: every picture is predicted, the good ones' records
    are written (--save-json, --predict-only), equal to those of a set without the broken ones; the
    broken ones are named each on a line; nothing is scored, and the exit is 2."""
    import cv2

    from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
    (tmp_path / 'images').mkdir()
    entries = []
    for image_id, source in enumerate(sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[:5], start=1):
        name = f'{image_id}.jpg'
        if image_id in (2, 4):
            (tmp_path / 'images' / name).write_bytes(b'not a picture')
        else:
            (tmp_path / 'images' / name).write_bytes(source.read_bytes())
        height, width = cv2.imread(str(source)).shape[:2]
        entries.append({'id': image_id, 'file_name': name, 'height': height, 'width': width})
    categories = [{'id': 1, 'name': 'circle'}, {'id': 2, 'name': 'square'}]
    for name, images in (('all', entries), ('good', [e for e in entries if e['id'] not in (2, 4)])):
        (tmp_path / f'{name}.json').write_text(json.dumps({'images': images, 'annotations': [],
                                                           'categories': categories}))
    run = ['--weights', SHIPPED_WEIGHTS, '--backend', 'dygraph', '--threads', '1', '--images', str(tmp_path / 'images')]
    good = ['--ann', str(tmp_path / 'good.json'), '--predict-only', str(tmp_path / 'good.out')]
    assert eval_cli.main(run + good) == 0
    expected = json.loads((tmp_path / 'good.out').read_text())
    assert {r['image_id'] for r in expected} == {1, 3, 5}
    capsys.readouterr()
    for flag in ('--save-json', '--predict-only'):
        out = tmp_path / f'all{flag}.json'
        assert eval_cli.main(run + ['--ann', str(tmp_path / 'all.json'), flag, str(out)]) == 2
        assert json.loads(out.read_text()) == expected
        printed = capsys.readouterr()
        unread = [line for line in printed.err.splitlines() if line.startswith('unread: ')]
        assert [line.split()[1] for line in unread] == ['2.jpg', '4.jpg'], printed.err
        error, = [line for line in printed.err.splitlines() if line.startswith('error: ')]
        assert '2 of 5 images could not be read (listed above)' in error and f'other 3 are in {out}' in error
        assert ('none was scored' in error) == (flag == '--save-json') and 'mask AP' not in printed.out
