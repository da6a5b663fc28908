"""The Python API (solov2.api): Segmenter on a path, arrays of either channel order, a folder
stream and a video, Instances' helpers, evaluate() against eval.py, and bad input in one line."""
import logging
import threading

import cv2
import numpy as np
import pytest

from solov2.api import InputError, Instances, Segmenter, evaluate
from solov2.api.segmenter import instances_of
from solov2.config import get_config, with_overrides
from solov2.data.results import instances_to_coco, write_json
from solov2.data.transforms import read_image
from solov2.data.visualize import draw_instances
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.pipeline import Predictor
from solov2.tools import eval as eval_cli
from solov2.tools.demo_outputs import DrawOptions, run_images
from solov2.tools.make_shapes_dataset import generate_split
from tests.helpers import REPO_DIR

ROOT = REPO_DIR
WEIGHTS = str(ROOT / 'weights' / 'shapes_r18.pdparams')
IMAGES = sorted((ROOT / 'images').glob('*.jpg'))


@pytest.fixture(scope='module')
def seg():
    return Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=2)


def _same(a: Instances, b: Instances):
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_config_comes_from_the_sidecar(seg):
    assert seg.number == 9 and seg.class_names == tuple(get_config(9).class_names)
    assert 'config=9' in repr(seg) and 'dygraph' in repr(seg)


def test_path_bgr_and_rgb_arrays_give_the_predictor_s_instances(seg):
    rgb = read_image(IMAGES[0])
    want = Predictor(DygraphBackend(get_config(9), WEIGHTS, 'cpu')).detect(rgb)      # seg's device
    from_path = seg(IMAGES[0], min_score=0)
    _same(from_path, instances_of(seg.class_names, want))
    _same(seg(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), min_score=0), from_path)        # BGR is the default
    _same(seg(rgb, channels='rgb', min_score=0), from_path)
    assert from_path.masks.shape[1:] == rgb.shape[:2] and from_path.masks.dtype == bool


def test_instances_helpers(seg):
    result = seg(IMAGES[0])
    assert result.names == [seg.class_names[label] for label in result.labels]
    confident = result.filter(min_score=0.5)
    assert len(confident) == int((result.scores >= 0.5).sum()) and (confident.scores >= 0.5).all()
    name = result.names[0]
    only = result.filter(classes=[name])
    assert len(only) and set(only.names) == {name}
    with pytest.raises(InputError, match='unknown class'):
        result.filter(classes=['unicorn'])
    records = result.to_coco(image_id=7)
    assert records == instances_to_coco(7, result.masks, result.labels, result.scores, [1, 2, 3, 4],
                                        class_names=seg.class_names)
    rgb = read_image(IMAGES[0])
    drawn_rgb = result.draw(rgb, channels='rgb')
    np.testing.assert_array_equal(drawn_rgb, draw_instances(rgb, result.masks, result.labels, result.scores,
                                                            result.class_names, 0.3))
    drawn_bgr = result.draw(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(drawn_bgr, cv2.cvtColor(drawn_rgb, cv2.COLOR_RGB2BGR))


def test_the_demo_writes_the_picture_and_records_of_instances(seg, tmp_path):
    """demo.py's drawn picture and --save-json records are ``Instances.draw`` and ``to_coco``'s."""
    records, picture = [], tmp_path / 'drawn.png'
    run_images(seg.predictor, {IMAGES[0]: picture}, DrawOptions(records=records, warmup=0), [])
    result = seg(IMAGES[0], min_score=0)                                  # --save-json keeps every instance
    want = result.to_coco(1, file_name=IMAGES[0].name)                    # image ids from 1, as labelme2coco's
    assert [dict(r, score=0) for r in records] == [dict(r, score=0) for r in want] and len(want) > 0
    np.testing.assert_allclose([r['score'] for r in records], [r['score'] for r in want], rtol=1e-5)
    bgr = cv2.cvtColor(read_image(IMAGES[0]), cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(cv2.imread(str(picture)), result.draw(bgr))


def test_stream_of_a_folder_is_in_order_and_equals_one_by_one(seg):
    streamed = list(seg.stream(str(ROOT / 'images')))
    assert [source for source, _ in streamed] == IMAGES
    for source, result in streamed:
        _same(result, seg(source))


def test_stream_skips_an_unreadable_picture_with_a_warning(seg, tmp_path, caplog):
    bad = tmp_path / 'notes.jpg'
    bad.write_text('not a picture')
    array = cv2.imread(str(IMAGES[1]))
    with caplog.at_level(logging.WARNING, logger='solov2.api'):
        streamed = list(seg.stream([IMAGES[0], bad, array]))
    assert [type(source) for source, _ in streamed] == [type(IMAGES[0]), np.ndarray]
    _same(streamed[1][1], seg(IMAGES[1]))
    assert any('skipped' in r.message and 'notes.jpg' in r.message for r in caplog.records)


def test_stream_video_yields_every_frame_in_order(seg, tmp_path):
    path = tmp_path / 'clip.mp4'
    frames = [cv2.imread(str(p)) for p in IMAGES[:3]]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 5, (width, height))
    for frame in frames:
        writer.write(cv2.resize(frame, (width, height)))
    writer.release()
    seen = list(seg.stream_video(str(path)))
    assert [index for index, _, _ in seen] == [0, 1, 2]
    index, frame, result = seen[1]
    assert frame.shape == (height, width, 3)
    _same(result, seg(frame))
    assert len(list(seg.stream_video(str(path), max_frames=2))) == 2
    _, frame, few = next(seg.stream_video(str(path), score_threshold=0.6, max_instances=4))
    _same(few, seg(frame, score_threshold=0.6, max_instances=4))
    assert len(few) == 4
    _, frame, everything = next(seg.stream_video(str(path), min_score=0))
    _same(everything, seg(frame, min_score=0))
    assert len(everything) > len(seen[0][2])
    small = Segmenter(WEIGHTS, backend='dygraph', device='cpu', overrides={'max_image_pixels': 1000})
    with pytest.raises(InputError, match='frame 0 .*over'):              # frames go through the model's reader
        next(small.stream_video(str(path)))


def test_evaluate_equals_eval_py(seg, tmp_path, capsys):
    coco = generate_split(tmp_path, 'val', 12, 256, seed=777)
    ann = tmp_path / 'val.json'
    write_json(coco, str(ann))
    stats = evaluate(seg, str(ann), str(tmp_path / 'val'))
    assert set(stats) >= {'AP', 'AP50', 'AR100'} and 0 < stats['AP'] <= 100
    assert eval_cli.main(['--weights', WEIGHTS, '--backend', 'dygraph', '--ann', str(ann),
                          '--images', str(tmp_path / 'val')]) == 0
    printed = capsys.readouterr().out.split('mask AP (%)\n')[1].splitlines()[1].split()
    assert float(printed[0]) == pytest.approx(stats['AP'], abs=0.005)


def test_every_door_goes_through_the_predictors_loop(seg, tmp_path, monkeypatch):
    """One picture, a list, a stream, the demo, evaluation, training's evaluation and picture and
    'auto''s bf16 check each run ``Predictor.run_pictures``, the one loop (one picture: a list of one);
    a door that makes its own predictor closes it, so that no worker of it outlives the call."""
    from solov2.api.training import val_picture, validation_ap
    from solov2.model.distributed import SINGLE
    from solov2.model.inference.auto_backend import bf16_problem
    from solov2.model.runtime import Placement
    write_json(generate_split(tmp_path, 'val', 2, 64, seed=5), str(tmp_path / 'val.json'))
    cfg = with_overrides(seg.cfg, [f'dataset_dir={str(tmp_path)!r}', 'val_ann=val.json', 'val_images=val'])
    model, placement, loops, loop = seg.backend.model, Placement('cpu', 1), [], Predictor.run_pictures
    monkeypatch.setattr(Predictor, 'run_pictures', lambda self, items, *args, **kwargs: loops.append(self) or
                        loop(self, items, *args, **kwargs))
    doors = {'one picture': lambda: seg(IMAGES[0]), 'a list': lambda: seg(IMAGES[:2]),
             'a stream': lambda: list(seg.stream(IMAGES[:1])),
             'the demo': lambda: run_images(seg.predictor, {IMAGES[0]: tmp_path / 'a.jpg'}, DrawOptions(warmup=0), []),
             'evaluation': lambda: evaluate(seg, str(tmp_path / 'val.json'), str(tmp_path / 'val')),
             "training's evaluation": lambda: validation_ap(model, cfg, SINGLE, placement),
             "training's picture": lambda: val_picture(model, cfg, placement),
             "auto's bf16 check": lambda: bf16_problem(seg.backend, seg.backend, [IMAGES[0]])}
    for door, call in doors.items():
        before, threads = len(loops), set(threading.enumerate())
        call()
        assert len(loops) > before, door
        pools = seg.predictor.queue.threads
        for left in set(threading.enumerate()) - threads - pools:
            left.join(10)
            assert not left.is_alive(), (door, left.name)


def test_overrides_as_a_dict_or_a_list(seg):
    high = Segmenter(WEIGHTS, backend='dygraph', device='cpu', overrides={'score_threshold': 0.6})
    assert high.cfg.score_threshold == 0.6
    assert 0 < len(high(IMAGES[0], min_score=0)) < len(seg(IMAGES[0], min_score=0))   # fewer candidates pass
    assert Segmenter(WEIGHTS, backend='dygraph', device='cpu', overrides=['nms_pre=100']).cfg.nms_pre == 100


@pytest.mark.parametrize('call, message', [
    (lambda seg: seg(IMAGES[0], channels='bgra'), "channels must be 'bgr'"),
    (lambda seg: seg(np.zeros((8, 8, 2), np.uint8)), 'must be [H, W] grey, [H, W, 3] or [H, W, 4]'),
    (lambda seg: seg(np.zeros((8, 8, 3), np.float32)), 'must be [H, W] grey, [H, W, 3] or [H, W, 4]'),
    (lambda seg: list(seg.stream('no/such/folder')), 'no images found'),
    (lambda seg: list(seg.stream_video('no/such/clip.mp4')), 'video not found'),
])
def test_bad_input_is_one_input_error(seg, call, message):
    with pytest.raises(InputError, match=message.replace('[', r'\[').replace(']', r'\]')):
        call(seg)


@pytest.mark.parametrize('kwargs, message', [
    ({}, 'give weights='),
    ({'weights': 'no/such.pdparams'}, r'weights file not found: no/such.pdparams \(from /'),
    ({'weights': WEIGHTS, 'backend': 'tensorrt'}, "unknown backend 'tensorrt'"),
    ({'weights': WEIGHTS, 'precision': 'int8'}, "precision='int8' needs backend='openvino'"),
    ({'weights': WEIGHTS, 'overrides': 'score_threshold=0.2'}, 'takes a dict or a list'),
])
def test_bad_construction_is_one_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        Segmenter(**kwargs)


def test_the_training_picture_shows_an_image_with_objects(tmp_path):
    """The VisualDL picture's image: the first validation image that has an object (the
    shapes set's first image is empty), else the first one."""
    from solov2.api.training import first_val_image
    coco = generate_split(tmp_path, 'val', 3, 64, seed=5)
    assert not [a for a in coco['annotations'] if a['image_id'] == 1]       # shapes: image 1 is empty
    write_json(coco, str(tmp_path / 'val.json'))
    assert first_val_image(str(tmp_path / 'val.json'), str(tmp_path / 'val')).endswith('000001.jpg')
    coco['annotations'] = []
    write_json(coco, str(tmp_path / 'none.json'))
    assert first_val_image(str(tmp_path / 'none.json'), str(tmp_path / 'val')).endswith('000000.jpg')


def test_dir_and_star_import_list_the_api_without_loading_it():
    """``dir(solov2)`` and ``solov2.__all__`` list the API's names, and ``from solov2 import *``
    gives them all, while a bare ``import solov2`` (and ``dir``) still loads no Paddle."""
    import subprocess
    import sys
    code = ('import sys, solov2; names = set(dir(solov2)); assert "paddle" not in sys.modules; '
            'from solov2 import api; assert set(api.__all__) == set(solov2.__all__) <= names, names; '
            'star = {}; exec("from solov2 import *", star); assert set(api.__all__) <= set(star); '
            'assert star["Segmenter"] is api.Segmenter and not {"Path", "zlib"} & names; print("ok")')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == 'ok', done.stderr[-2000:]
