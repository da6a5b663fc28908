"""COCO files as other tools write them (tests/fixtures/interop: rebuilt after public bug reports of pycocotools,
detectron2 and mmdetection), read as those tools mean them and scored alike by both evaluators: pycocotools alone
(the default install) and faster-coco-eval."""
import contextlib
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solov2.data import scoring
from solov2.data.coco import load_coco
from solov2.data.error_analysis import analyze_errors
from solov2.data.results import instances_to_coco
from solov2.data.scoring import coco_stats, matched_results, per_class_ap, run_cocoeval
from solov2.tools import eval as eval_cli

INTEROP = Path(__file__).resolve().parents[1] / 'fixtures' / 'interop'
EVALUATORS = ('pycocotools', 'faster-coco-eval')


def use_evaluator(monkeypatch, name):
    """Score with pycocotools alone (faster-coco-eval looked for and not found, as in the default install) or
    with faster-coco-eval (skipped where it is not installed)."""
    if name == 'pycocotools':
        monkeypatch.setattr(scoring, 'find_spec', lambda module: None)
    else:
        pytest.importorskip('faster_coco_eval')


def _square(height, width, y, x, size):
    mask = np.zeros((height, width), bool)
    mask[y:y + size, x:x + size] = True
    return mask


def _random_set(seed=0, images=12):
    """A COCO dataset of 2 categories and ~3 squares an image with ids 1.., and result records (jittered copies,
    a false positive each, a tenth of the classes swapped): AP far from 0 and 1."""
    rng = np.random.default_rng(seed)
    height, width = 48, 64
    annotations, records = [], []
    for image_id in range(1, images + 1):
        for _ in range(int(rng.integers(1, 5))):
            size = int(rng.integers(6, 20))
            y, x = (int(v) for v in rng.integers(0, (height - size, width - size)))
            category = int(rng.integers(1, 3))
            mask = _square(height, width, y, x, size)
            gt = instances_to_coco(image_id, mask[None], np.array([0]), np.array([1.0]), [category])[0]
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id, 'category_id': category,
                                'segmentation': gt['segmentation'], 'area': int(mask.sum()), 'bbox': gt['bbox'],
                                'iscrowd': 0})
            moved = np.roll(mask, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
            records += instances_to_coco(image_id, np.stack([moved, np.roll(mask, 11, axis=1)]), np.array([0, 0]),
                                         rng.random(2), [category if rng.random() < 0.9 else 3 - category])
    dataset = {'images': [{'id': i, 'file_name': f'{i}.png', 'height': height, 'width': width}
                          for i in range(1, images + 1)], 'annotations': annotations,
               'categories': [{'id': c, 'name': 'ab'[c - 1], 'supercategory': 's'} for c in (1, 2)]}
    return dataset, records


def _renumbered(dataset, records, image_of, category_of, annotation_of):
    """The set and its records with the ids mapped by the three functions (each of the file's id)."""
    dataset = copy.deepcopy(dataset)
    for image in dataset['images']:
        image['id'] = image_of(image['id'])
    for category in dataset['categories']:
        category['id'] = category_of(category['id'])
    for ann in dataset['annotations']:
        ann.update(id=annotation_of(ann['id']), image_id=image_of(ann['image_id']),
                   category_id=category_of(ann['category_id']))
    return dataset, [{**r, 'image_id': image_of(r['image_id']), 'category_id': category_of(r['category_id'])}
                     for r in records]


def _without(dataset, *keys):
    dataset = copy.deepcopy(dataset)
    for ann in dataset['annotations']:
        for key in keys:
            ann.pop(key)
    return dataset


def battery():
    """(name, dataset, records) of each way a writer numbers or leaves out fields, all of one random set: each
    must score as the plain set does."""
    plain, records = _random_set()
    cases = [('as written', plain, records)]
    for keys in (('iscrowd',), ('area',), ('bbox',), ('iscrowd', 'area', 'bbox')):
        cases.append((f"no {', '.join(keys)}", _without(plain, *keys), records))
    numberings = {'annotation ids from 0': (lambda i: i, lambda c: c, lambda a: a - 1),
                  'image, category and annotation ids from 0': (lambda i: i - 1, lambda c: c - 1, lambda a: a - 1),
                  'negative ids': (lambda i: -i, lambda c: -c, lambda a: -a),
                  'large ids, out of order': (lambda i: 10 ** 12 - 7 * i, lambda c: 900 - c, lambda a: 2 ** 40 + a)}
    for name, (image_of, category_of, annotation_of) in numberings.items():
        cases.append((name, *_renumbered(plain, records, image_of, category_of, annotation_of)))
    return cases


def _score(monkeypatch, evaluator, tmp_path, dataset, records):
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(dataset))
    with monkeypatch.context() as patch:
        use_evaluator(patch, evaluator)
        scored = run_cocoeval(load_coco(path), records)
        assert (type(scored) is COCOeval) == (evaluator == 'pycocotools')
        return np.asarray(scored.stats), per_class_ap(scored)


def test_the_battery_scores_alike_under_both_evaluators(tmp_path, monkeypatch):
    """Every file of the battery gives the 12 numbers of the plain file under pycocotools alone and under
    faster-coco-eval (per-class AP under the file's own category ids)."""
    pytest.importorskip('faster_coco_eval')
    _, plain, records = battery()[0]
    reference, _ = _score(monkeypatch, 'pycocotools', tmp_path, plain, records)
    assert 0.1 < reference[0] < 0.9
    for name, dataset, its_records in battery():
        for evaluator in EVALUATORS:
            stats, by_class = _score(monkeypatch, evaluator, tmp_path, dataset, its_records)
            np.testing.assert_allclose(stats, reference, atol=1e-12, err_msg=f'{name}, {evaluator}')
            assert sorted(by_class) == sorted(c['id'] for c in dataset['categories']), name


@pytest.mark.parametrize('evaluator', EVALUATORS)
@pytest.mark.parametrize('ann', ['missing_fields/gt_no_iscrowd.json', 'missing_fields/gt_no_area.json',
                                 'missing_fields/gt_no_iscrowd_no_area.json', 'id_zero/gt_annotation_id0.json',
                                 'id_zero/gt_annotation_id1.json'])
def test_interop_files_score_100_under_both_evaluators(ann, evaluator, monkeypatch, capsys):
    """tests/fixtures/interop: COCO ground truth without iscrowd or area (once 'a bug in the toolkit:
    KeyError' under pycocotools alone), an annotation of id 0 (once 0.00 with no word): 100.00 each."""
    use_evaluator(monkeypatch, evaluator)
    folder = INTEROP / Path(ann).parent
    assert eval_cli.main(['--config', '9', '--ann', str(INTEROP / ann), '--images', str(folder / 'images'),
                          '--json-only', str(folder / 'results.json'), '--device', 'cpu', '--classwise']) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[out.splitlines().index('mask AP (%)') + 2].split()[:3] == ['100.00'] * 3


def test_what_cannot_be_meant_is_one_line_naming_the_record(tmp_path, capsys):
    plain, records = _random_set(images=2)
    (tmp_path / 'images').mkdir()
    cases = [
        (lambda d: d['annotations'][1].update(id=d['annotations'][0]['id']),
         f"two annotations have id {plain['annotations'][0]['id']}"),
        (lambda d: d['images'][1].update(id=1), 'two images have id 1'),
        (lambda d: d['categories'][1].update(id=1), 'two categories have id 1'),
        (lambda d: d['annotations'][0].update(image_id=7), 'annotation 1 is on unknown image 7'),
        (lambda d: d['annotations'][0].update(category_id=3), 'annotation 1 has unknown category 3'),
        (lambda d: d['images'][0].update(id='1'), "image {'id': '1'"),
        (lambda d: d['annotations'][0].update(id='1'), "annotation {'id': '1'"),
        (lambda d: d['annotations'][0].update(image_id='1'), "annotation 1 has image_id '1'"),
    ]
    for edit, fragment in cases:
        dataset = copy.deepcopy(plain)
        edit(dataset)
        (tmp_path / 'gt.json').write_text(json.dumps(dataset))
        assert eval_cli.main(['--weights', 'shipped/shapes_r18', '--ann', str(tmp_path / 'gt.json'),
                              '--images', str(tmp_path / 'images')]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error: ')]
        assert len(errors) == 1 and fragment in errors[0], (errors, fragment)


def test_error_analysis_reads_ids_as_names_and_supercategories_as_given():
    """The error analysis numbers by position (an annotation of id 0 is found) and forgives a confusion as
    similar only between categories with the same real supercategory; none: Sim is Loc, said."""
    plain, records = _random_set()
    renumbered, moved = _renumbered(plain, records, lambda i: i - 1, lambda c: c - 1, lambda a: a - 1)
    ap = {}
    for name, dataset, its in (('plain', plain, records), ('from 0', renumbered, moved)):
        for supercategory in ('s', '', None):
            for category in dataset['categories']:
                category.pop('supercategory', None)
                if supercategory is not None:
                    category['supercategory'] = supercategory
            coco = _coco(dataset)
            analysis = analyze_errors(coco, its)
            ap[name, supercategory] = analysis.overall().mean(axis=1)
            assert analysis.similar == (supercategory == 's')
    np.testing.assert_allclose(ap['plain', 's'], ap['from 0', 's'])
    np.testing.assert_allclose(ap['plain', ''], ap['from 0', None])
    sim, loc, oth = 3, 2, 4
    shared, none = ap['plain', 's'], ap['plain', '']
    assert shared[sim] == pytest.approx(shared[oth]) and shared[oth] > shared[loc]
    assert none[sim] == pytest.approx(none[loc]) and none[loc] < none[oth]


def _coco(dataset):
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_results_are_matched_by_the_names_they_carry(tmp_path):
    """Records that carry file_name / category_name are matched by them whatever their ids (the toolkit's own
    number images from 0 and classes in the model's order); bare ids by id; a name the file lacks is one line."""
    plain, records = _random_set(images=3)
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(plain))
    coco = load_coco(path)
    named = [{**r, 'image_id': r['image_id'] - 1, 'file_name': f"photos/{r['image_id']}.png",
              'category_id': 3 - r['category_id'], 'category_name': 'ab'[r['category_id'] - 1]} for r in records]
    assert [(r['image_id'], r['category_id']) for r in matched_results(coco, named, 'r.json')] == \
        [(r['image_id'], r['category_id']) for r in records]
    assert coco_stats(run_cocoeval(coco, matched_results(coco, named, 'r.json'))) == \
        coco_stats(run_cocoeval(coco, records))
    with pytest.raises(ValueError, match="result 0 names image 'x.png' .* does not have of that name"):
        matched_results(coco, [{**named[0], 'file_name': 'x.png'}], 'r.json')
    with pytest.raises(ValueError, match="result 0 names category 'c'"):
        matched_results(coco, [{**named[0], 'category_name': 'c'}], 'r.json')
    with pytest.raises(ValueError, match='result 0 has image 0, which the annotation file does not have'):
        matched_results(coco, [{**records[0], 'image_id': 0}], 'r.json')


def test_a_file_of_missing_fields_trains_its_evaluation(tmp_path):
    """The reader fills iscrowd, area and bbox for every command: the evaluation inside training too."""
    from solov2.model.inference.predicting import evaluation_dataset
    folder = tmp_path / 'set'
    shutil.copytree(INTEROP / 'missing_fields', folder)
    dataset = evaluation_dataset(str(folder / 'gt_no_iscrowd_no_area.json'), str(folder / 'images'), ['square'])
    ann = dataset.coco.dataset['annotations'][0]
    assert (ann['iscrowd'], ann['area'], ann['bbox']) == (0, 576.0, [12.0, 16.0, 24.0, 24.0])
    assert len(dataset[0]['labels']) == 1


def test_training_reads_its_val_set_before_its_first_step(tmp_path):
    """What training's evaluation scores is read, normalised and checked before a step is taken: a val set with
    two annotations of one id is one line before anything is trained (once found at the first evaluation), one
    without iscrowd and area trains and scores."""
    from solov2.api import TrainOptions, train
    from tests.helpers import TINY_TRAINING, make_tiny_shapes
    shapes = make_tiny_shapes(tmp_path / 'shapes')
    val = shapes / 'annotations' / 'instances_val.json'
    dataset = json.loads(val.read_text())
    started = []
    options = TrainOptions(config=9, output=str(tmp_path / 'run'), max_iters=1, device='cpu',
                           overrides=(f'dataset_dir={shapes}', *TINY_TRAINING))
    val.write_text(json.dumps({**dataset, 'annotations': dataset['annotations'] + dataset['annotations'][:1]}))
    with pytest.raises(ValueError, match=f"two annotations have id {dataset['annotations'][0]['id']}"):
        train(options, on_start=lambda trainer, out: started.append(out))
    assert not started and not (tmp_path / 'run' / 'last').exists()
    val.write_text(json.dumps(_without(dataset, 'iscrowd', 'area')))
    assert train(options).best_ap is not None


def test_an_image_without_a_size_is_measured_on_its_polygons(tmp_path):
    dataset = {'images': [{'id': 0, 'file_name': 'a.png'}], 'categories': [{'id': 0, 'name': 'square'}],
               'annotations': [{'id': 0, 'image_id': 0, 'category_id': 0,
                                'segmentation': [[12, 16, 36, 16, 36, 40, 12, 40], [1, 2]]}]}
    (tmp_path / 'gt.json').write_text(json.dumps(dataset))
    ann = load_coco(tmp_path / 'gt.json').dataset['annotations'][0]
    assert (ann['iscrowd'], ann['area'], ann['bbox']) == (0, 576.0, [12.0, 16.0, 24.0, 24.0])


def test_images_without_a_size_take_their_pictures_or_are_one_line(tmp_path, capsys):
    """Ground truth whose images give no height and width (pycocotools rasterises polygons at them: once 'a bug
    in the toolkit: KeyError') is scored with the pictures' sizes when eval.py has the pictures, else refused."""
    folder = INTEROP / 'missing_fields'
    dataset = json.loads((folder / 'gt_no_iscrowd_no_area.json').read_text())
    for image in dataset['images']:
        del image['height'], image['width']
    (tmp_path / 'gt.json').write_text(json.dumps(dataset))
    base = ['--config', '9', '--ann', str(tmp_path / 'gt.json'), '--json-only', str(folder / 'results.json'),
            '--device', 'cpu']
    assert eval_cli.main(base) == 2
    err = capsys.readouterr().err
    assert 'error: the annotation file gives image 1 (a.png) no integer height and width' in err
    assert 'Traceback' not in err
    assert eval_cli.main([*base, '--images', str(folder / 'images')]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[out.index('mask AP (%)') + 2].split()[0] == '100.00'
