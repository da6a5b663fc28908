"""Bad inputs a user could hand the commands: each ends in one line (``error: ...``, exit 2
for usage/input, 1 for a runtime failure, 130 for Ctrl-C) or a reported skip, never a
traceback, and no input file is modified (hashed before and after).

Most cases call ``main(argv)`` in-process (the same code path as the command, without the
2-3 s of importing Paddle again); a few run the real scripts through subprocess to check
what the user sees: the exit code and stderr.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest

from solov2 import Segmenter
from solov2.config import CONFIGS
from solov2.core.errors import InputError, LimitError, RunError
from solov2.data.files import write_image
from solov2.data.results import instances_to_coco
from solov2.model.inference.export import infer_cfg
from solov2.model.inference.onnxruntime_backend import OnnxBackend
from solov2.model.inference.paddle_inference_backend import InferenceBackend, parse_program
from solov2.model.inference.postprocess import InferenceParams
from solov2.tools import cli, demo, export_model, labelme2coco, postprocess_raw
from solov2.tools import eval as eval_cli
from solov2.tools.cli import set_status
from solov2.tools.demo_outputs import picture_names
from tests.helpers import REPO_DIR, alive, children, ctrl_c_as_in_a_terminal
from tests.pictures import tiff_bomb, webp_bomb

REPO = REPO_DIR
WEIGHTS = str(REPO / 'weights' / 'shapes_r18.pdparams')
FAST = ['--backend', 'dygraph', '--warmup', '0', '--opt', 'test_short=64', 'test_max=96']   # inputs, not backends


def hashes(*roots) -> dict:
    """{path: sha256} of every file under ``roots`` (files or folders)."""
    files = [p for r in map(Path, roots) for p in ([r] if r.is_file() else sorted(r.rglob('*'))) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def one_error(err: str, *fragments) -> str:
    """The single ``error:`` line of ``err`` (no traceback), checked to contain ``fragments``."""
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def command(*args, timeout=60):
    """Run ``python ARGS`` in the repository; (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, 'PYTHONPATH': str(REPO)})
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def photos(tmp_path) -> Path:
    """tmp_path/photos: a.jpg and a.png (same stem), b.png."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    for name, colour in (('a.jpg', 60), ('a.png', 120), ('b.png', 200)):
        image = np.full((48, 64, 3), colour, np.uint8)
        cv2.circle(image, (30, 24), 12, (250, 30, 30), -1)
        assert cv2.imwrite(str(folder / name), image)
    return folder


# ---- demo.py: outputs never overwrite inputs ---------------------------------------------------

def test_demo_refuses_outputs_that_would_destroy_inputs(photos, tmp_path, capsys):
    (photos / 'clip.mp4').write_bytes(b'not really a video')
    before = hashes(photos)
    (tmp_path / 'file.txt').write_text('x')
    cases = [
        (['--video', photos / 'clip.mp4', '--output', photos / 'clip.mp4'], 'is an input file'),
        (['--video', photos / 'clip.mp4', '--output', photos / 'a.png' / 'x.mp4'], 'is a file, not a folder'),
        (['--input', photos, '--output', photos], '--output', 'is the input folder'),
        (['--input', photos / 'a.png', '--output', photos / 'a.png'], 'is a file, not a folder'),
        (['--input', photos / 'a.jpg', '--output', photos], 'would overwrite the input'),
        (['--input', photos, '--output', tmp_path / 'file.txt' / 'sub'], 'is a file, not a folder'),
        (['--input', photos, '--output', tmp_path / 'o', '--save-json', tmp_path], '--save-json', 'is a folder'),
        (['--input', photos, '--output', tmp_path / 'o', '--save-json', photos / 'b.png'], 'is an input file'),
        (['--input', photos, '--output', tmp_path / 'o', '--dump-inputs', tmp_path / 'file.txt'], 'is a file'),
        (['--input', photos, '--output', tmp_path / 'o', '--weights', WEIGHTS, '--opt', 'nms_pre=0'],
         'nms_pre', 'an integer >= 1'),
        (['--input', photos, '--output', tmp_path / 'o', '--weights', WEIGHTS, '--opt', 'score_threshold=2'],
         'score_threshold', '[0, 1]'),
        (['--input', photos, '--output', tmp_path / 'o', '--weights', WEIGHTS, '--opt', 'test_short=big'],
         'test_short', 'an integer >= 1'),
        (['--input', photos, '--output', tmp_path / 'o', '--weights', WEIGHTS, '--opt', 'num_grids=(1,)'],
         'num_grids', '5 integers'),
    ]
    for argv, *fragments in cases:
        assert demo.main([str(a) for a in argv]) == 2, argv
        one_error(capsys.readouterr().err, *fragments)
    with pytest.raises(SystemExit) as refused:             # argparse's exit 2, under the flag
        demo.main(['--input', str(photos), '--output', str(tmp_path / 'o'), '--weights', WEIGHTS, '--config', '99'])
    assert refused.value.code == 2 and 'argument --config: is not a config number: 99' in capsys.readouterr().err
    assert hashes(photos) == before and not (tmp_path / 'o').exists()


def test_picture_names_are_unique_for_same_stem_inputs():
    paths = [Path(n) for n in ('a.jpg', 'a.png', 'a_jpg.png', 'b.png', 'B.png')]
    names = picture_names(paths)
    assert names == {Path('a.jpg'): 'a_jpg.jpg', Path('a.png'): 'a_png.jpg', Path('a_jpg.png'): 'a_jpg_2.jpg',
                     Path('b.png'): 'b.jpg', Path('B.png'): 'B.jpg'}


def test_demo_same_stem_inputs_pixel_limit_and_a_checked_write(photos, tmp_path, capsys):
    before = hashes(photos)
    out = tmp_path / 'out'
    assert demo.main(['--input', str(photos), '--output', str(out), '--weights', WEIGHTS, *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['a_jpg.jpg', 'a_png.jpg', 'b.jpg']
    assert not cv2.imread(str(out / 'a_jpg.jpg')).mean() == cv2.imread(str(out / 'a_png.jpg')).mean()
    capsys.readouterr()
    # every image over the pixel limit: reported per image, nothing drawn, exit 1
    assert demo.main(['--input', str(photos), '--output', str(tmp_path / 'big'), '--weights', WEIGHTS,
                      *FAST, 'max_image_pixels=1000']) == 1
    err = capsys.readouterr().err
    assert err.count('over the limit of 0.001 MP') == 3 and 'max_image_pixels' in err
    assert hashes(photos) == before
    # cv2.imwrite returns False into a missing folder; write_image raises
    with pytest.raises(OSError):
        write_image(tmp_path / 'missing' / 'x.jpg', np.zeros((4, 4, 3), np.uint8))


def test_bombs_are_refused_from_their_headers_by_the_demo_and_segmenter(tmp_path, capsys, monkeypatch):
    """A 144 MP WebP of 36 bytes and TIFF of 6 KB (1 GB each while decoding): demo.py reports
    each over the limit (exit 1), Segmenter raises LimitError for their bytes; never decoded."""
    folder = tmp_path / 'bombs'
    folder.mkdir()
    (folder / 'w.webp').write_bytes(webp_bomb(12000, 12000))
    (folder / 't.tiff').write_bytes(tiff_bomb(12000, 12000))
    seg = Segmenter(WEIGHTS, backend='dygraph', threads=1)
    monkeypatch.setattr('solov2.data.transforms.cv2.imdecode', lambda *args: pytest.fail('decoded'))
    assert demo.main(['--input', str(folder), '--output', str(tmp_path / 'out'), '--weights', WEIGHTS, *FAST]) == 1
    assert capsys.readouterr().err.count('12000x12000 = 144 MP, over the limit of 100 MP') == 2
    for path in folder.iterdir():
        with pytest.raises(LimitError, match='the picture in the bytes given is 12000x12000 = 144 MP, over the limit'):
            seg(path.read_bytes())


def test_demo_a_failed_picture_write_is_an_error_not_a_summary(photos, tmp_path, capsys, monkeypatch):
    def disk_full(path, data):
        raise OSError(28, 'No space left on device', str(path))
    monkeypatch.setattr('solov2.data.files.atomic_write', disk_full)
    assert demo.main(['--input', str(photos), '--output', str(tmp_path / 'out'), '--weights', WEIGHTS, *FAST]) == 1
    captured = capsys.readouterr()
    one_error(captured.err, 'No space left on device', 'a_jpg.jpg')
    assert 'pictures in' not in captured.out


# ---- eval.py -----------------------------------------------------------------------------------

@pytest.fixture
def gt(tmp_path) -> Path:
    """A 2-image COCO file (one annotation without segmentation) and matching results."""
    mask = np.zeros((40, 50), bool)
    mask[5:15, 5:15] = True
    record = instances_to_coco(1, mask[None], np.array([0]), np.array([1.0]), [1])[0]
    anns = [{'id': 1, 'image_id': 1, 'category_id': 1, 'segmentation': record['segmentation'],
             'area': 100, 'bbox': record['bbox'], 'iscrowd': 0},
            {'id': 2, 'image_id': 2, 'category_id': 1, 'area': 4, 'bbox': [1, 1, 2, 2], 'iscrowd': 0}]
    dataset = {'images': [{'id': i, 'file_name': f'{i}.jpg', 'height': 40, 'width': 50} for i in (1, 2)],
               'annotations': anns, 'categories': [{'id': 1, 'name': 'a'}]}
    (tmp_path / 'gt.json').write_text(json.dumps(dataset))
    record.pop('bbox')             # valid segm results without bbox
    (tmp_path / 'segm.json').write_text(json.dumps([record]))
    return tmp_path


def test_eval_rescoring_without_bbox_and_an_annotation_without_segmentation(gt, capsys):
    before = hashes(gt)
    assert eval_cli.main(['--config', '9', '--ann', str(gt / 'gt.json'), '--json-only', str(gt / 'segm.json')]) == 0
    captured = capsys.readouterr()
    assert 'mask AP (%)' in captured.out and 'box AP' in captured.out and '100.00' in captured.out
    assert 'warning: ' in captured.out
    assert 'skipped 1 of 2 annotations that cannot be used: 1 no segmentation (id 2)' in captured.out
    assert hashes(gt) == before


def test_eval_bad_inputs_are_one_line(gt, tmp_path, capsys):
    before = hashes(gt)
    (gt / 'empty.json').write_text(json.dumps({'images': [], 'annotations': [], 'categories': []}))
    (gt / 'dict.json').write_text(json.dumps({'not': 'a list'}))
    (gt / 'other.json').write_text(json.dumps([{'image_id': 7, 'category_id': 1, 'score': 1.0,
                                                'segmentation': {}}]))
    (gt / 'strid.json').write_text((gt / 'gt.json').read_text().replace('"category_id": 1', '"category_id": "1"'))
    good = json.loads((gt / 'segm.json').read_text())[0]
    (gt / 'nan.json').write_text(json.dumps([dict(good, score=float('nan'))]))
    (gt / 'zero_based.json').write_text(json.dumps([dict(good, category_id=0)]))       # AP moved silently before
    (gt / 'resized.json').write_text(json.dumps([dict(good, segmentation=dict(good['segmentation'], size=[20, 25]))]))
    before = hashes(gt)
    ann = ['--config', '9', '--ann', str(gt / 'gt.json')]
    cases = [
        (ann + ['--json-only', str(gt / 'segm.json'), '--save-json', str(tmp_path)], '--save-json', 'is a folder'),
        (ann + ['--json-only', str(gt / 'segm.json'), '--save-json', str(gt / 'segm.json')], 'is an input file'),
        (ann + ['--json-only', str(tmp_path)], 'is a folder'),
        (ann + ['--json-only', str(gt / 'dict.json')], 'not a list of COCO results'),
        (ann + ['--json-only', str(gt / 'other.json')], 'image 7'),
        (ann + ['--json-only', str(gt / 'nan.json')], 'result 0 has score nan', 'finite'),
        (ann + ['--json-only', str(gt / 'zero_based.json')], "result 0 has category 0, not one of the annotation "
                                                             "file's 1 (ids from 1)"),
        (ann + ['--json-only', str(gt / 'resized.json')], 'result 0 has a mask of size [20, 25] on a 40x50 image'),
        (['--config', '9', '--ann', str(gt / 'empty.json'), '--json-only', str(gt / 'segm.json')], 'no images'),
        (['--config', '9', '--ann', str(gt / 'strid.json'), '--json-only', str(gt / 'segm.json')],
         "category_id '1'", 'integers'),
        (ann + ['--json-only', str(gt / 'segm.json'), '--opt', 'mask_threshold=1.5'], 'mask_threshold'),
    ]
    for argv, *fragments in cases:
        assert eval_cli.main(argv) == 2, argv
        one_error(capsys.readouterr().err, *fragments)
    assert hashes(gt) == before


# ---- tools/labelme2coco.py ----------------------------------------------------------------------

def test_labelme2coco_never_overwrites_an_input(tmp_path, capsys):
    folder = tmp_path / 'labelme'
    folder.mkdir()
    assert cv2.imwrite(str(folder / 'a.png'), np.zeros((20, 30, 3), np.uint8))
    (folder / 'a.json').write_text(json.dumps({
        'shapes': [{'label': 'cat', 'points': [[1, 1], [9, 1], [9, 9]], 'shape_type': 'polygon'}],
        'imagePath': 'a.png', 'imageHeight': 20, 'imageWidth': 30}))
    (tmp_path / 'other').mkdir()
    assert cv2.imwrite(str(tmp_path / 'other' / 'a.png'), np.full((20, 30, 3), 9, np.uint8))
    before = hashes(tmp_path)
    for argv, fragment in (([folder, folder / 'a.json'], 'is an input file'),
                           ([folder, folder / 'a.png'], 'is an input file'),
                           ([folder, tmp_path], 'is a folder'),
                           ([folder, tmp_path / 'out.json', '--copy-images', tmp_path / 'other'],
                            'would overwrite')):
        assert labelme2coco.main([str(a) for a in argv]) == 2
        one_error(capsys.readouterr().err, fragment)
    assert hashes(tmp_path) == before
    assert not (tmp_path / 'out.json').exists()
    # the class list beside OUT.json is --classes itself: kept as the user wrote it
    (tmp_path / 'classes.txt').write_text('cat\n\n')
    assert labelme2coco.main([str(folder), str(tmp_path / 'out.json'), '--classes', str(tmp_path / 'classes.txt')]) == 0
    assert (tmp_path / 'classes.txt').read_text() == 'cat\n\n' and 'classes.txt (kept)' in capsys.readouterr().out


# ---- tools/postprocess_raw.py -------------------------------------------------------------------

def test_postprocess_raw_skips_a_wrong_shaped_output(tmp_path, capsys):
    params = InferenceParams(num_grids=(2, 2, 2, 2, 2))
    raw = tmp_path / 'raw'
    raw.mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for index, name in enumerate(('x0', 'x1', 'x2')):
        entries.append({'name': name, 'image_id': index, 'file_name': f'{name}.png', 'source': 'unused',
                        'orig_hw': [32, 32], 'resized_hw': [32, 32], 'padded_hw': [32, 32]})
        np.save(raw / f'{name}.scores.npy', rng.uniform(0, 1, (1, 20, 2)).astype(np.float32))
        np.save(raw / f'{name}.kernels.npy', rng.normal(size=(1, 20, 5 if name == 'x1' else 4)).astype(np.float32))
        np.save(raw / f'{name}.mask_feat.npy', rng.normal(size=(1, 4, 8, 8)).astype(np.float32))
    manifest = tmp_path / 'manifest.json'
    manifest.write_text(json.dumps({'postprocess': params.to_json(), 'class_names': ['a', 'b'], 'images': entries}))
    before = hashes(tmp_path)
    code = postprocess_raw.main(['--manifest', str(manifest), '--raw', str(raw), '--no-pictures',
                                 '--save-json', str(tmp_path / 'out' / 'r.json')])
    captured = capsys.readouterr()
    assert code == 1 and '2 inputs post-processed, 1 skipped' in captured.out
    assert 'skipped x1:' in captured.err and 'x1.kernels.npy has shape (1, 20, 5), expected (1, 20, 4)' in captured.err
    assert 'Traceback' not in captured.err and (tmp_path / 'out' / 'r.json').is_file()
    assert {k: v for k, v in hashes(tmp_path).items() if '/out/' not in k} == before
    (tmp_path / 'bad.json').write_text('{"images": []}')
    assert postprocess_raw.main(['--manifest', str(tmp_path / 'bad.json'), '--raw', str(raw)]) == 2
    one_error(capsys.readouterr().err, 'lacks postprocess, class_names')
    # a picture would overwrite its source image: refused before anything is written
    sources = tmp_path / 'sources'
    sources.mkdir()
    for entry in entries:
        entry['source'] = str(sources / f'{entry["name"]}.jpg')
        assert cv2.imwrite(entry['source'], np.zeros((32, 32, 3), np.uint8))
        entry['file_name'] = f'{entry["name"]}.jpg'
    manifest.write_text(json.dumps({'postprocess': params.to_json(), 'class_names': ['a', 'b'], 'images': entries}))
    before = hashes(sources)
    assert postprocess_raw.main(['--manifest', str(manifest), '--raw', str(raw), '--output', str(sources)]) == 2
    one_error(capsys.readouterr().err, 'would overwrite the source image')
    assert hashes(sources) == before
    del entries[0]['padded_hw']
    manifest.write_text(json.dumps({'postprocess': params.to_json(), 'class_names': ['a', 'b'], 'images': entries}))
    assert postprocess_raw.main(['--manifest', str(manifest), '--raw', str(raw)]) == 2
    one_error(capsys.readouterr().err, 'image 0 lacks padded_hw')


# ---- tools/export_model.py -----------------------------------------------------------------------

def test_export_refuses_outputs_over_the_weights(tmp_path, capsys):
    folder = tmp_path / 'best'
    folder.mkdir()
    (folder / 'model.pdparams').write_bytes(Path(WEIGHTS).read_bytes())
    (folder / 'model.json').write_text(Path(WEIGHTS).with_suffix('.json').read_text())
    (tmp_path / 'file').write_text('x')
    before = hashes(tmp_path)
    weights = ['--weights', str(folder / 'model.pdparams')]
    for argv, fragment in (([*weights, '--output', str(folder)], 'model.json is an input file'),
                           ([*weights, '--output', str(tmp_path / 'file')], 'is a file'),
                           (['--weights', str(tmp_path / 'nope.pdparams'), '--output', str(tmp_path / 'x')],
                            'weights file not found'),
                           ([*weights, '--output', str(tmp_path / 'x'), '--opt', 'max_per_image=-1'],
                            'max_per_image')):
        assert export_model.main(argv) == 2, argv
        one_error(capsys.readouterr().err, fragment)
    assert hashes(tmp_path) == before


# ---- exported models: damaged files ----------------------------------------------------------------

@pytest.mark.deploy
def test_damaged_exported_models_are_one_backend_error(tmp_path):
    pytest.importorskip('onnxruntime', reason='deploy test: needs requirements-deploy.txt')
    folder = tmp_path / 'export'
    net = paddle.nn.Linear(4, 4)
    paddle.jit.save(net, str(folder / 'model'), input_spec=[paddle.static.InputSpec([None, 4], 'float32')])
    model_file = next(p.name for p in folder.iterdir() if p.suffix in ('.json', '.pdmodel'))
    files = {'paddle': {'model': model_file, 'params': 'model.pdiparams'}, 'onnx': {'model': 'model.onnx'}}
    (folder / 'infer_cfg.json').write_text(json.dumps(infer_cfg(9, CONFIGS[9], 64, 640, files)))
    (folder / 'model.onnx').write_bytes(b'\x08\x07garbage' * 100)
    params = folder / 'model.pdiparams'
    params.write_bytes(params.read_bytes()[:20])
    checks = [(lambda: OnnxBackend(str(folder)), 'cannot load', 'model.onnx'),
              (lambda: InferenceBackend(str(folder)), 'cannot load', 'model.pdiparams')]
    for make, *fragments in checks:
        with pytest.raises(Exception) as err:
            make()
        assert type(err.value).__name__ == 'BackendError' and '\n' not in str(err.value)
        assert all(f in str(err.value) for f in fragments), str(err.value)
    (folder / model_file).write_text('{"broken": ')
    with pytest.raises(Exception, match='cannot load') as err:
        InferenceBackend(str(folder))
    assert type(err.value).__name__ == 'BackendError'
    (folder / 'infer_cfg.json').write_text('{"config": 9}')
    with pytest.raises(Exception, match='lacks num_classes') as err:
        OnnxBackend(str(folder))
    assert type(err.value).__name__ == 'BackendError'


def test_a_damaged_paddle_2_program_is_refused_before_paddle_inference_reads_it(tmp_path):
    """Paddle 2.6's Inference crashes the process on a .pdmodel that does not parse (the test above
    on Paddle 2.6): such a file is parsed in Python first and refused in one BackendError."""
    damaged = tmp_path / 'model.pdmodel'
    damaged.write_text('{"broken": ')
    with pytest.raises(Exception, match=r'^cannot load .*model\.pdmodel: .* the file is damaged') as err:
        parse_program(damaged)
    assert type(err.value).__name__ == 'BackendError'
    parse_program(tmp_path / 'model.json')        # a Paddle 3 program is Paddle Inference's own to read


# ---- the reporting helper ---------------------------------------------------------------------------

def test_run_command_exit_codes_debug_and_interrupt(capsys, monkeypatch):
    def fails(kind):
        def main(argv):
            set_status(lambda: '3 pictures in out/')
            raise kind('bad thing\nsecond line')
        return main
    monkeypatch.delenv('SOLOV2_DEBUG', raising=False)
    assert cli.command(fails(InputError))([]) == 2
    assert capsys.readouterr().err == 'error: bad thing second line\n'
    assert cli.command(fails(RunError))([]) == 1
    assert capsys.readouterr().err == 'error: bad thing second line (rerun with --debug for the traceback)\n'
    for bug in (ValueError, KeyError, RuntimeError):         # only the project's InputError is bad input
        assert cli.command(fails(bug))([]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f'error: a bug in the toolkit: {bug.__name__}: ') and 'bad thing' in err, err
        assert '(rerun with --debug for the traceback' in err and err.count('\n') == 1, err
    assert cli.command(fails(KeyboardInterrupt))([]) == 130
    assert capsys.readouterr().err.strip() == 'interrupted (Ctrl-C): 3 pictures in out/'
    with pytest.raises(RuntimeError):
        cli.command(fails(RuntimeError))(['--debug'])
    monkeypatch.setenv('SOLOV2_DEBUG', '1')
    with pytest.raises(InputError):
        cli.command(fails(InputError))([])


# ---- the real commands, as a user runs them ------------------------------------------------------

def test_scripts_end_bad_inputs_in_one_line(photos, tmp_path):
    before = hashes(photos)
    code, _, err = command('demo.py', '--input', photos, '--output', photos)
    assert code == 2
    one_error(err, 'is the input folder')
    code, _, err = command('tools/labelme2coco.py', photos, photos / 'a.png')
    assert code == 2
    one_error(err, 'is an input file')
    assert hashes(photos) == before


def test_training_refuses_a_set_without_usable_instances(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    assert cv2.imwrite(str(images / 'a.png'), np.zeros((32, 32, 3), np.uint8))
    dataset = {'images': [{'id': 1, 'file_name': 'a.png', 'height': 32, 'width': 32}],
               'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'bbox': [1, 1, 5, 5]}],
               'categories': [{'id': i + 1, 'name': n} for i, n in enumerate(CONFIGS[9].class_names)]}
    (tmp_path / 'ann.json').write_text(json.dumps(dataset))
    code, out, err = command('train.py', '--config', '9', '--output', tmp_path / 'run', '--opt',
                             f'dataset_dir={str(tmp_path)!r}', 'train_ann=ann.json', 'train_images=images',
                             'val_ann=ann.json', 'val_images=images',
                             'num_workers=0', timeout=120)
    assert code == 2, err
    one_error(err, 'no usable instance in 1 images')
    assert 'warning: ' in out and 'skipped 1 of 1 annotations that cannot be used: 1 no segmentation (id 1)' in out


def _signal_delivered(pid: int, signum: int) -> None:
    """Until no thread of ``pid`` has ``signum`` pending (/proc/<pid>/status): its handler ran."""
    bit = 1 << (signum - 1)
    for _ in range(2000):
        fields = dict(line.split(':', 1) for line in Path(f'/proc/{pid}/status').read_text().splitlines())
        if not int(fields['ShdPnd'], 16) & bit:
            return
        time.sleep(0.005)
    raise AssertionError(f'signal {signum} still pending in process {pid}')


@pytest.mark.skipif(not hasattr(os, 'mkfifo') or not Path('/proc/self/status').is_file(),
                    reason='a FIFO holds the demo; /proc/<pid>/status says when the signal is taken')
def test_ctrl_c_ends_the_demo_in_one_line_without_half_written_files(tmp_path):
    """Ctrl-C while the demo waits on a picture the test holds back (a FIFO in the input
    folder, read once the signal is taken): the demo cannot finish first, whatever the load."""
    folder = tmp_path / 'many'
    folder.mkdir()
    for index in range(40):
        if index != 3:
            assert cv2.imwrite(str(folder / f'{index:03d}.png'), np.full((48, 64, 3), index % 250, np.uint8))
    held = folder / '003.png'
    os.mkfifo(held)
    writer = os.open(held, os.O_RDWR)       # the demo's read of 003.png waits for what is written here
    out, results = tmp_path / 'out', tmp_path / 'results.json'
    process = subprocess.Popen([sys.executable, 'demo.py', '--input', str(folder), '--output', str(out),
                                '--save-json', str(results), *FAST], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, 'PYTHONPATH': str(REPO)}, preexec_fn=ctrl_c_as_in_a_terminal)
    try:
        for line in process.stdout:      # the first picture done (the greyscale warning also says 'instances')
            if re.match(r'00\d\.png: \d+ instances', line):
                break
        process.send_signal(signal.SIGINT)
        _signal_delivered(process.pid, signal.SIGINT)
        _, png = cv2.imencode('.png', np.zeros((48, 64, 3), np.uint8))
        os.write(writer, png.tobytes())
        os.close(writer)
        writer = None
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        if writer is not None:
            os.close(writer)
    assert process.returncode == 130, err
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith('interrupted (Ctrl-C): ') and f'of 40 pictures written to {out}' in last
    assert last.endswith(f', their results in {results}')
    written = sorted(p.name for p in out.iterdir())
    assert len(written) < 39 and all(name.endswith('.jpg') and not name.startswith('.') for name in written)
    assert all(cv2.imread(str(out / name)) is not None for name in written)      # each one whole, no temporary
    kept = {record['file_name'] for record in json.loads(results.read_text())}    # each record names its input
    assert kept <= {name.replace('.jpg', '.png') for name in written}     # of the pictures written, no other


def test_loader_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / 'loader.py'
    script.write_text(textwrap.dedent("""
        import os, sys, time
        import numpy as np
        import paddle
        from solov2.data.loader import build_train_loader

        class Source(paddle.io.Dataset):
            def __len__(self):
                return 64
            def __getitem__(self, index):
                return {'image': np.zeros((3, 32, 32), np.float32), 'masks': np.zeros((0, 32, 32), np.uint8),
                        'labels': np.zeros(0, np.int64), 'image_id': index}
            def set_epoch(self, epoch):
                pass

        def targets(masks, labels):
            return len(labels)

        def collate(per_image):
            return np.asarray(per_image)

        loader = build_train_loader(Source(), 2, targets, collate, num_workers=2)
        next(iter(loader))
        print('ready', flush=True)
        time.sleep(60)
    """))
    process = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, 'PYTHONPATH': str(REPO)})
    workers, left = [], None
    try:
        assert process.stdout.readline().strip() == 'ready'
        workers = children(process.pid)
        assert len(workers) >= 2
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.time() + 10
        while any(alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
        assert not left
    finally:
        process.kill()
        for pid in workers if left is None else left:    # none after a pass (a gone pid may be reused)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_camera_that_cannot_be_opened_is_one_line_without_opencv_warnings(tmp_path):
    code, out, err = command('demo.py', '--backend', 'dygraph', '--camera', '97', '--output', tmp_path / 'cam.mp4')
    assert code == 2, err
    one_error(err, 'cannot open camera 97', 'check the ID')
    assert '[ WARN' not in out + err
