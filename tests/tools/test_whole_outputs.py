"""Commands write their outputs whole or not at all: ``solov2 export`` and ``make-shapes`` their folders
(``core.paths.build_folder``): one that fails or stops leaves it as it was (absent, or the one there
before), one that finishes replaces it (no file of an earlier run left beside), and a folder holding
anything else is refused before any work; the demo's video, its dumped inputs, eval's chart and
training's curves and truncated log each through a temporary renamed into place."""
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.model.inference import export as export_module
from solov2.model.inference.export import ExportError
from solov2.tools import demo, export_model, make_shapes_dataset
from solov2.tools import eval as eval_cli

EXPORT = ['--weights', SHIPPED_WEIGHTS, '--format', 'paddle']


def listing(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_export_leaves_its_folder_as_it_was(tmp_path, monkeypatch, capsys):
    def fails(*args, **kwargs):
        raise ExportError('the paddle export does not reproduce the model')
    monkeypatch.setattr(export_module, 'verify', fails)
    out = tmp_path / 'export'
    assert export_model.main([*EXPORT, '--output', str(out)]) == 2
    assert 'does not reproduce the model' in capsys.readouterr().err
    assert listing(tmp_path) == []                                 # no folder, no temporary beside it
    monkeypatch.undo()
    assert export_model.main([*EXPORT, '--output', str(out), '--no-verify']) == 0
    before = {name: (out / name).read_bytes() for name in listing(out)}
    monkeypatch.setattr(export_module, 'verify', fails)
    assert export_model.main([*EXPORT, '--output', str(out)]) == 2
    assert {name: (out / name).read_bytes() for name in listing(out)} == before and listing(tmp_path) == ['export']


def test_a_finished_export_replaces_the_one_before_whole(tmp_path, capsys):
    out = tmp_path / 'export'
    assert export_model.main([*EXPORT, '--output', str(out), '--no-verify']) == 0
    (out / 'model.onnx').write_bytes(b'an earlier export in both formats')
    capsys.readouterr()
    assert export_model.main([*EXPORT, '--output', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'model.onnx' not in listing(out) and 'infer_cfg.json' in listing(out)   # no stale ONNX model beside
    assert f'runtime settings: {out / "infer_cfg.json"}' in printed and '.tmp' not in printed
    assert listing(tmp_path) == ['export']


def test_a_folder_with_other_files_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    (tmp_path / 'notes.txt').write_text('mine')
    monkeypatch.setattr(export_module, 'export', lambda *args, **kwargs: pytest.fail('exported'))
    assert export_model.main([*EXPORT, '--output', str(tmp_path)]) == 2
    assert 'holds files an export does not write (notes.txt)' in capsys.readouterr().err
    assert listing(tmp_path) == ['notes.txt']


# ---- make-shapes: its dataset folder whole ---------------------------------------------------------

def test_a_stopped_make_shapes_leaves_the_dataset_there_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / 'shapes'
    assert make_shapes_dataset.main(['--out', str(out), '--train', '2', '--val', '1', '--size', '64']) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob('*') if p.is_file()}
    real = make_shapes_dataset.generate_split

    def stopped(out_dir, split, *args):
        if split == 'val':
            raise KeyboardInterrupt
        return real(out_dir, split, *args)
    monkeypatch.setattr(make_shapes_dataset, 'generate_split', stopped)
    assert make_shapes_dataset.main(['--out', str(out), '--train', '3', '--val', '1', '--seed', '5']) == 130
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob('*') if p.is_file()} == before
    assert listing(tmp_path) == ['shapes']
    monkeypatch.undo()
    assert make_shapes_dataset.main(['--out', str(out), '--train', '1', '--val', '1', '--size', '64']) == 0
    assert listing(out / 'train') == ['000000.jpg']                    # replaced whole: no picture of the run before


def test_make_shapes_refuses_a_folder_with_other_files(tmp_path, capsys):
    (tmp_path / 'thesis.tex').write_text('mine')
    assert make_shapes_dataset.main(['--out', str(tmp_path), '--train', '1', '--val', '1']) == 2
    assert 'holds files a shapes dataset does not (thesis.tex)' in capsys.readouterr().err
    assert listing(tmp_path) == ['thesis.tex']


# ---- demo: a video, --dump-inputs, eval's chart and training's curves: whole files -------------------

def test_the_demo_video_is_written_beside_and_renamed_into_place(tmp_path, monkeypatch, capsys):
    """The annotated video grows in a hidden file beside --output, renamed when it ends: an earlier video
    there stays whole until then (a killed run cannot leave half of one in its place)."""
    clip, out = tmp_path / 'clip.mp4', tmp_path / 'annotated.mp4'
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*'mp4v'), 10, (88, 72))
    for t in range(3):
        writer.write(np.full((72, 88, 3), 40 * t, np.uint8))
    writer.release()
    out.write_bytes(b'an earlier video')
    opened, real = [], cv2.VideoWriter

    def watched(path, *args):
        opened.append((Path(path), out.read_bytes()))
        return real(path, *args)
    monkeypatch.setattr(cv2, 'VideoWriter', watched)
    assert demo.main(['--weights', SHIPPED_WEIGHTS, '--backend', 'dygraph', '--warmup', '0', '--video', str(clip),
                      '--output', str(out), '--opt', 'test_short=64', 'test_max=96']) == 0
    (path, then), = opened
    assert path.parent == tmp_path and path.name.startswith('.annotated.mp4.') and then == b'an earlier video'
    capture, frames = cv2.VideoCapture(str(out)), 0
    while capture.read()[0]:
        frames += 1
    assert frames == 3 and listing(tmp_path) == ['annotated.mp4', 'clip.mp4']


def test_dumped_inputs_charts_and_curves_are_written_whole(tmp_path, monkeypatch):
    """Each goes through ``data.files.write_together`` (a temporary renamed): no write straight into the target."""
    from solov2.data import files
    from solov2.model.training import run_log
    from solov2.model.training.run_log import RunLog
    from solov2.tools.demo_outputs import InputDumper
    targets = []
    real = files.write_together

    def watched(writes):
        targets.extend(Path(path).name for path, _ in writes)
        real(writes)
    for module in (files, run_log, eval_cli):
        monkeypatch.setattr(module, 'write_together', watched)
    prepared = SimpleNamespace(chw=np.zeros((3, 4, 5), np.float32),
                               meta=SimpleNamespace(orig_hw=(4, 5), resized_hw=(4, 5), padded_hw=(32, 32)))
    InputDumper(str(tmp_path / 'dump'), None, 9).dump('00000_a', 0, 'a.jpg', tmp_path / 'a.jpg', prepared)
    assert np.load(tmp_path / 'dump' / '00000_a.npy').shape == (1, 3, 4, 5)
    log = RunLog(tmp_path)
    log.add(log.train_csv, {'iteration': 1, 'minutes': 0.1, 'loss': 1.0, 'loss_ins': 0.5, 'loss_cate': 0.5})
    log.plot()
    log.add(log.train_csv, {'iteration': 2, 'minutes': 0.2, 'loss': 1.0, 'loss_ins': 0.5, 'loss_cate': 0.5})
    log.truncate_after(1)
    chart = tmp_path / 'chart.png'
    eval_cli.write_chart(SimpleNamespace(chart=str(chart), save_json=None), {1: 0.5}, {1: 'circle'})
    assert sorted(targets) == ['00000_a.bin', '00000_a.npy', 'chart.png', 'curves.png', 'train_log.csv']
    assert cv2.imread(str(chart)) is not None and cv2.imread(str(tmp_path / 'curves.png')) is not None
    assert len(log._rows(log.train_csv)) == 1
