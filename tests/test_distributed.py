"""Past one process: eval.py and demo.py under paddle.distributed.launch share the images
out (each once, the same results and AP as one process), and training on two "nodes" on
127.0.0.1 equals one node with the same processes, resume included (model/distributed.py)."""
import itertools
import json
import re

import numpy as np
import pycocotools.mask as mask_util
import pytest

from solov2.config import CONFIGS
from solov2.core.errors import InputError
from solov2.core.paths import CACHE_ENV
from solov2.model import distributed
from solov2.model.checkpoint import load_paddle_params
from solov2.model.distributed import SINGLE, Processes, check_paddle_runs, cpu_launch_env, gather, local_rank0_first
from solov2.tools import demo
from solov2.tools import eval as eval_cli
from tests.helpers import REPO_DIR, TINY_TRAINING, launch_two_cpu_processes, launch_two_nodes, make_tiny_shapes

WEIGHTS = str(REPO_DIR / 'weights' / 'shapes_r18.pdparams')
SMALL = ['test_short=128', 'test_max=128']
TINY = TINY_TRAINING
# Floats summed in another order (threads, processes, MKL's kernels on an AMD CPU: 2e-7 in a score) may
# move a mask pixel across the 0.5 threshold, and Matrix NMS turns that into up to ~5e-3 of the score
# of an instance it decays (seen on an AMD EPYC): scores within SCORE_TOL, masks with IoU >= MIN_MASK_IOU,
# and an instance that ends within SCORE_TOL of the final cut (update_threshold) may be on one side only.
SCORE_TOL = 0.01
MIN_MASK_IOU = 0.95      # a few pixels of a small mask
SURE = CONFIGS[9].update_threshold + SCORE_TOL


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """Six training and five validation images of 128 px."""
    return make_tiny_shapes(tmp_path_factory.mktemp('shapes'), val=5)


def test_shares_are_disjoint_and_cover_every_item():
    items = list(range(11))
    shares = [Processes(rank, 3).share(items) for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert Processes(0, 3).counts(11) == [len(share) for share in shares]
    assert SINGLE.share(items) == items and SINGLE.main and not Processes(1, 2).main


def test_one_process_needs_no_process_group():
    assert gather({'a': 1}, SINGLE) == [{'a': 1}]
    assert local_rank0_first(lambda: 7, SINGLE) == 7


def test_the_other_processes_of_a_node_wait_in_the_store_not_on_a_gloo_barrier(monkeypatch):
    """local_rank0_first: the node's process 0 works, then says so in the launcher's store
    (even when its work fails); the node's others wait for that word, then work. No gloo
    barrier, whose 30 s timeout an export on a busy machine outlasted."""
    events = []

    class Store:
        def set(self, key, value):
            events.append(('set', key))

        def get(self, key):
            events.append(('get', key))
            return b'done'

    monkeypatch.setattr(distributed, '_store', Store)
    monkeypatch.setattr(distributed.dist, 'barrier', lambda *args, **kwargs: pytest.fail('a gloo barrier'))

    def run(processes, work):
        monkeypatch.setattr(distributed, '_first_calls', itertools.count())    # each a fresh process
        return local_rank0_first(work, processes)

    assert run(Processes(2, 4, 0, 2), lambda: events.append('work') or 'first') == 'first'
    assert run(Processes(3, 4, 1, 2), lambda: events.append('work') or 'other') == 'other'
    key = 'solov2/local_rank0_first/2/0'
    assert events == ['work', ('set', key), ('get', key), 'work']
    events.clear()
    with pytest.raises(ZeroDivisionError):
        run(Processes(0, 2, 0, 2), lambda: 1 / 0)
    assert events == [('set', 'solov2/local_rank0_first/0/0')]


@pytest.mark.parametrize('device, backend', [('cpu', 'gloo'), ('gpu', 'before'), ('gpu:1', 'before')])
def test_cpu_processes_ask_for_gloo_on_any_paddle_build(monkeypatch, device, backend):
    """Left to choose ('auto'), a CUDA build of Paddle starts NCCL and moves the process to its
    GPU: CPU processes name gloo for that call, GPU ones leave the launcher's choice; the variable is
    as it was after."""
    seen = []
    monkeypatch.setenv('PADDLE_DISTRI_BACKEND', 'before')
    monkeypatch.setattr(distributed, 'launched_processes', lambda: Processes(0, 2))
    monkeypatch.setattr(distributed.dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(distributed.dist, 'init_parallel_env',
                        lambda: seen.append(distributed.os.environ.get('PADDLE_DISTRI_BACKEND')))
    assert distributed.start_processes(device) == Processes(0, 2)
    assert seen == [backend]
    assert distributed.os.environ['PADDLE_DISTRI_BACKEND'] == 'before'
    monkeypatch.delenv('PADDLE_DISTRI_BACKEND')
    distributed.start_processes(device)
    assert seen[-1] == ('gloo' if device == 'cpu' else None) and 'PADDLE_DISTRI_BACKEND' not in distributed.os.environ


@pytest.mark.parametrize('version, cuda_build, device, world, refused', [
    ('2.6.2', True, 'cpu', 2, True), ('2.6.2', True, 'gpu', 2, False), ('2.6.2', True, 'cpu', 1, False),
    ('2.6.2', False, 'cpu', 2, False), ('3.3.1', True, 'cpu', 2, False), ('0.0.0', True, 'cpu', 2, False)])
def test_cpu_processes_of_paddle_2_cuda_wheels_are_refused_in_one_line(version, cuda_build, device, world, refused):
    if not refused:
        check_paddle_runs(world, device, version, cuda_build)
        return
    with pytest.raises(InputError, match='segfault') as caught:
        check_paddle_runs(world, device, version, cuda_build)
    assert '\n' not in str(caught.value)


def _mask(record) -> np.ndarray:
    rle = record['segmentation']
    return mask_util.decode({'size': rle['size'], 'counts': rle['counts'].encode('ascii')}).astype(bool)


def _assert_same_records(records, reference):
    """``records`` are ``reference`` but for float rounding: each record of ``reference`` is
    matched to the one of ``records`` of its image and category whose mask overlaps it most,
    with the score within SCORE_TOL and the mask IoU >= MIN_MASK_IOU (so near-equal scores may
    come in either order); only records scored below SURE may lack a counterpart."""
    def which(record) -> tuple:
        return record['image_id'], record['category_id']
    assert any(r['score'] >= SURE for r in reference)
    unmatched, missing = list(records), []
    for want in sorted(reference, key=lambda r: -r['score']):
        candidates = [r for r in unmatched if which(r) == which(want)]
        scored = [(_iou(_mask(r), _mask(want)), index) for index, r in enumerate(candidates)]
        iou, best = max(scored, default=(0.0, None))
        if iou < MIN_MASK_IOU or abs(candidates[best]['score'] - want['score']) > SCORE_TOL:
            missing.append(want)
            continue
        unmatched.remove(candidates[best])
    assert all(r['score'] < SURE for r in missing + unmatched), (missing, unmatched)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _table(text: str) -> list:
    """The mask and box AP tables of eval.py's output."""
    lines = text.splitlines()
    start = lines.index('mask AP (%)')
    return lines[start:start + 6]


def test_two_processes_evaluate_each_image_once_with_the_one_process_ap(shapes, tmp_path, capsys, monkeypatch):
    """--backend auto: node's process 0 exports into the cache while process 1 waits, then
    loads it; 3 + 2 images, one JSON and the AP table on process 0 only, identical to one
    process's."""
    pytest.importorskip('openvino')
    pytest.importorskip('paddle2onnx')
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    args = ['--weights', WEIGHTS, '--threads', '1', '--device', 'cpu', '--opt', f'dataset_dir={shapes}', *SMALL]
    launch_two_cpu_processes(tmp_path, str(REPO_DIR / 'eval.py'), *args, '--save-json', str(tmp_path / 'two.json'))
    first, second = (tmp_path / 'logs' / f'workerlog.{rank}' for rank in (0, 1))
    first, second = first.read_text(), second.read_text()
    engine = re.search(r'process 0 of 2: config 9 \((openvino f32|openvino bf16|onnx)\): 3 images', first)   # measured
    assert engine, first
    assert f'process 1 of 2: config 9 ({engine.group(1)}): 2 images' in second
    assert '5 images by 2 processes (3, 2), each once' in first
    assert 'auto: exporting' in first and 'auto: exporting' not in second and 'from cache' in second
    assert 'mask AP' not in second and 'wrote' not in second
    exports = [p.name for p in (tmp_path / 'cache').iterdir()
               if p.name != 'openvino-compiled' and p.suffix != '.lock']     # + compiled models, the entry's lock
    assert len(exports) == 1 and exports[0].startswith('config9-')      # one export, by one process
    assert eval_cli.main([*args, '--save-json', str(tmp_path / 'one.json')]) == 0
    one, two = (json.loads((tmp_path / name).read_text()) for name in ('one.json', 'two.json'))
    _assert_same_records(two, one)
    assert _table(first) == _table(capsys.readouterr().out)


def test_two_processes_draw_each_picture_once(shapes, tmp_path):
    """demo.py on a folder: 3 + 2 pictures, each drawn by one process, one JSON and one
    manifest with every image, the same as one process writes."""
    images = shapes / 'val'
    args = ['--weights', WEIGHTS, '--backend', 'dygraph', '--threads', '1', '--input', str(images), '--warmup', '0',
            '--opt', *SMALL]
    two = ['--output', str(tmp_path / 'two'), '--save-json', str(tmp_path / 'two.json'),
           '--dump-inputs', str(tmp_path / 'dump2')]
    launch_two_cpu_processes(tmp_path, str(REPO_DIR / 'demo.py'), *args, *two)
    logs = [(tmp_path / 'logs' / f'workerlog.{rank}').read_text() for rank in (0, 1)]
    drawn = [{line.split(':')[0] for line in log.splitlines() if line.endswith(' drawn')} for log in logs]
    names = sorted(p.name for p in images.iterdir())
    assert drawn[0] == set(names[0::2]) and drawn[1] == set(names[1::2])
    assert '5 images by 2 processes (3, 2), each once' in logs[0] and 'wrote' not in logs[1]
    assert sorted(p.stem for p in (tmp_path / 'two').iterdir()) == sorted(name.rsplit('.', 1)[0] for name in names)
    assert demo.main([*args, '--output', str(tmp_path / 'one'), '--save-json', str(tmp_path / 'one.json'),
                      '--dump-inputs', str(tmp_path / 'dump1')]) == 0
    one, two = (json.loads((tmp_path / name).read_text()) for name in ('one.json', 'two.json'))
    _assert_same_records(two, one)
    manifests = [json.loads((tmp_path / folder / 'manifest.json').read_text()) for folder in ('dump1', 'dump2')]
    assert [e['name'] for e in manifests[1]['images']] == [e['name'] for e in manifests[0]['images']]
    assert len(manifests[0]['images']) == len(names)


def test_evaluate_from_python_shares_the_images_and_gives_every_process_the_ap(shapes, tmp_path):
    script = tmp_path / 'evaluate.py'
    script.write_text(
        'import json, sys\n'
        'from solov2.api import Segmenter, evaluate, start_processes\n'
        'processes = start_processes("cpu")\n'
        f'seg = Segmenter({WEIGHTS!r}, backend="dygraph", threads=1, overrides={SMALL!r}, processes=processes)\n'
        f'stats = evaluate(seg, {str(shapes / "annotations" / "instances_val.json")!r}, {str(shapes / "val")!r},\n'
        '                  processes=processes)\n'
        'print("stats", processes.rank, json.dumps(stats))\n')
    launch_two_cpu_processes(tmp_path, str(script))
    from solov2.api import Segmenter, evaluate
    alone = evaluate(Segmenter(WEIGHTS, backend='dygraph', threads=1, overrides=SMALL),
                     str(shapes / 'annotations' / 'instances_val.json'), str(shapes / 'val'))
    for rank in (0, 1):
        line = next(line for line in (tmp_path / 'logs' / f'workerlog.{rank}').read_text().splitlines()
                    if line.startswith(f'stats {rank} '))
        assert json.loads(line.split(' ', 2)[2]) == alone


def test_evaluation_while_training_is_shared_by_every_process_and_they_agree_on_the_best(shapes, tmp_path):
    """One evaluation at the end of a two-process run: each process reads its share of the
    five validation images (3 + 2), process 0 scores them all, and both processes hold the
    same best AP and iteration, the AP of the saved best weights evaluated by one process (equal
    here; each process's own BN statistics gave 28.5 against 30.4)."""
    out = tmp_path / 'run'
    script = tmp_path / 'train.py'
    script.write_text(
        'import json\n'
        'from solov2.api import TrainOptions, train\n'
        'from solov2.model.distributed import launched_processes\n'
        'from solov2.model.inference.reading import PictureReader\n'
        'read, seen = PictureReader.read, []\n'
        'PictureReader.read = lambda self, path, *args, **kw: seen.append(path) or read(self, path, *args, **kw)\n'
        f'options = TrainOptions(config=9, weights={WEIGHTS!r}, output={str(out)!r}, device="cpu", threads=1,\n'
        f'                       max_iters=1, overrides={[f"dataset_dir={shapes}", *TINY, "epochs=3"]!r})\n'
        'summary = train(options)\n'
        'found = [summary.best_ap, summary.best_iteration, len(seen)]\n'
        'print("summary", launched_processes().rank, json.dumps(found))\n')
    launch_two_cpu_processes(tmp_path, str(script))
    summaries = []
    for rank in (0, 1):
        line = next(line for line in (tmp_path / 'logs' / f'workerlog.{rank}').read_text().splitlines()
                    if line.startswith(f'summary {rank} '))
        summaries.append(json.loads(line.split(' ', 2)[2]))
    (best_ap, best_iteration, read_0), (other_ap, other_iteration, read_1) = summaries
    assert (read_0, read_1) == (3, 2)
    assert best_iteration == other_iteration == 1 and best_ap == other_ap
    rows = (out / 'eval_log.csv').read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(',')[rows[0].split(',').index('AP')]) == round(best_ap, 2)
    from solov2.api import Segmenter, evaluate
    alone = evaluate(Segmenter(str(out / 'best' / 'ema.pdparams'), backend='dygraph', threads=1, overrides=SMALL),
                     str(shapes / 'annotations' / 'instances_val.json'), str(shapes / 'val'))
    assert best_ap > 10 and alone['AP'] == pytest.approx(best_ap, abs=0.5)


def test_a_camera_is_refused_under_the_launcher(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, 'start_processes', lambda device: Processes(0, 2))
    assert demo.main(['--camera', '0', '--output', str(tmp_path / 'out.mp4')]) == 2
    assert 'run in one process' in capsys.readouterr().err


def _losses(out):
    rows = (out / 'train_log.csv').read_text().splitlines()
    return [float(row.split(',')[rows[0].split(',').index('loss')]) for row in rows[1:]]


def test_two_nodes_train_like_one_node_and_resume_across_them(shapes, tmp_path):
    """Two one-process "nodes" (global ranks 0 and 1, data split by them) stop at iteration
    2, node 1 writing nothing in its own folder, and resume to 3 (the run folder shared like
    a network file system): the losses and weights of one node with two processes."""
    node0, node1 = tmp_path / 'node0_cwd', tmp_path / 'node1_cwd'
    node0.mkdir()
    node1.mkdir()
    train = [str(REPO_DIR / 'train.py'), '--config', '9', '--device', 'cpu', '--threads', '1', '--log-every', '1',
             '--opt', f'dataset_dir={shapes}', *TINY, 'epochs=3']
    command = [*train, '--output', 'run']
    launch_two_nodes(tmp_path / 'first', *command, '--max-iters', '2', cwds=(node0, node1))
    assert not list(node1.iterdir())                     # only global rank 0 writes
    assert 'batch 4' in (tmp_path / 'first' / 'node0' / 'workerlog.0').read_text()
    (node1 / 'run').symlink_to(node0 / 'run')
    launch_two_nodes(tmp_path / 'resumed', *command, '--max-iters', '3', '--resume', 'auto', cwds=(node0, node1))
    straight = tmp_path / 'straight'
    launch_two_cpu_processes(tmp_path, *train, '--output', str(straight), '--max-iters', '3')
    assert len(_losses(straight)) == 3
    assert np.allclose(_losses(node0 / 'run'), _losses(straight), rtol=1e-5, atol=1e-6)
    a, b = (load_paddle_params(str(out / 'last' / 'model.pdparams')) for out in (node0 / 'run', straight))
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5


@pytest.mark.parametrize('visible', ['', '0'])
def test_cpu_processes_launch_whatever_gpus_the_host_shows(tmp_path, monkeypatch, visible):
    """paddle.distributed.launch counts GPUs from CUDA_VISIBLE_DEVICES whenever it is set and fails
    (IndexError) with fewer than its processes: none visible ('') or one ('0') on a two-process run.
    Its CPU recipe (``cpu_launch_env``: one hidden GPU a process) starts both, with no GPU in either."""
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', visible)
    script = tmp_path / 'ranks.py'
    script.write_text("import os\nprint('rank', os.environ['PADDLE_TRAINER_ID'], os.environ['CUDA_VISIBLE_DEVICES'])\n")
    launch_two_cpu_processes(tmp_path, str(script))
    logs = [(tmp_path / 'logs' / f'workerlog.{rank}').read_text().split() for rank in (0, 1)]
    assert logs == [['rank', '0', '-1,-1'], ['rank', '1', '-1,-1']]
    assert cpu_launch_env(3) == {'CUDA_VISIBLE_DEVICES': '-1,-1,-1', 'PADDLE_DISTRI_BACKEND': 'gloo'}
