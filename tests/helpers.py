"""Helpers shared by several test modules."""
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import paddle
import pytest

from solov2 import SHIPPED_WEIGHTS
from solov2.config import CONFIGS, get_config
from solov2.config.sidecar import resolve_config
from solov2.core.cache import entry_folder
from solov2.core.paths import CACHE_ENV
from solov2.model.build import build_model
from solov2.model.distributed import cpu_launch_env
from solov2.model.inference.auto_backend import cache_key, cached_backend
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.export import export
from solov2.model.inference.postprocess import Detections, InferenceParams, flatten_levels, postprocess_flat
from solov2.model.inference.spec import ModelSpec

REPO_DIR = Path(__file__).resolve().parents[1]
# a GPU this Paddle can use: there the default device is the GPU, and 'auto' is dygraph
GPU_HERE = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
cpu_default = pytest.mark.skipif(GPU_HERE, reason="a test of the CPU's default device (auto exports there); here "
                                 'the default is the GPU (tools/dev/gpu_check.py checks that)')
FIXTURES_DIR = REPO_DIR / 'tests' / 'fixtures'


def get_eval_model(pytestconfig, number: int):
    """Config ``number``'s model in eval mode, built once per pytest session and kept on
    the session's pytest config (read-only use: tests/model/test_model.py, tests/test_demo.py)."""
    cache = pytestconfig.__dict__.setdefault('_solov2_eval_models', {})
    if number not in cache:
        paddle.seed(number)
        model = build_model(CONFIGS[number])
        model.eval()
        cache[number] = model
    return cache[number]



def postprocess(outputs: dict, params: InferenceParams) -> list:
    """The SOLOv2 model's outputs of a batch (cate_logits, kernels, mask_feat) -> one Detections per image."""
    scores, kernels = flatten_levels(outputs['cate_logits'], outputs['kernels'])
    return postprocess_flat(scores, kernels, outputs['mask_feat'], params)


def soft_detections(backend, chw) -> Detections:
    """``backend``'s detections of one preprocessed picture chw [3, H, W] before pasting: soft
    masks [N, H/4, W/4] (``run_numpy`` of its batch, then ``postprocess_flat`` with the config's params)."""
    return outputs_detections(backend, backend.run_numpy(*backend.batch_regions([chw])))


def outputs_detections(backend, outputs) -> Detections:
    """``soft_detections`` from the outputs ``backend`` already gave one picture at its own size
    (``run_numpy`` of a one-picture batch), without running it again."""
    return postprocess_flat(*outputs, InferenceParams.from_config(backend.cfg))[0]


def dcn_export_refused(code: int, capsys) -> bool:
    """Whether ``export_model.main``'s exit ``code`` for a model with deformable convs is the one-line
    refusal of a paddle2onnx 1.x (the last for Paddle 2.6, which cannot write ONNX DeformConv;
    docs/deployment.md); False with paddle2onnx 2.x, which must export it (``code`` 0)."""
    from importlib.metadata import version
    if int(version('paddle2onnx').split('.')[0]) >= 2:
        assert code == 0
        return False
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: cannot export deformable convolution (DCN) to ONNX with paddle2onnx 1.')
    return True


def _launch(log_dir: Path, launcher_args, command, cwd=None):
    """(paddle.distributed.launch started, the file of its own output in ``log_dir``). Its
    processes run on the CPU on any host (``cpu_launch_env``: no GPU visible, gloo by name)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = int(launcher_args[launcher_args.index('--nproc_per_node') + 1])
    with open(log_dir / 'launcher.out', 'w') as output:
        return subprocess.Popen([sys.executable, '-m', 'paddle.distributed.launch', *launcher_args,
                                 '--log_dir', str(log_dir), *command],
                                stdout=output, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                start_new_session=True, env={**os.environ, 'PYTHONPATH': str(REPO_DIR),
                                                             **cpu_launch_env(processes)}), \
            log_dir / 'launcher.out'


def _finish(launchers, timeout=240) -> list:
    """The launchers' outputs once all have ended; fails the test if they hang or one fails."""
    try:
        for launcher, _ in launchers:
            launcher.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for launcher, _ in launchers:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
        pytest.fail('the processes hung')
    outputs = [path.read_text() for _, path in launchers]
    for (launcher, _), output in zip(launchers, outputs):
        assert launcher.returncode == 0, output[-2000:]
    return outputs


def launch_two_cpu_processes(tmp_path, *command):
    """Run `command` (after `python`) as two CPU processes under paddle.distributed.launch
    (logs in tmp_path/logs/workerlog.0 and .1); returns the launcher's output. Fails the
    test if they hang."""
    return _finish([_launch(tmp_path / 'logs', ['--nproc_per_node', '2'], command)])[0]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (free when asked)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def launch_two_nodes(tmp_path, *command, cwds=(None, None)):
    """Run `command` (after `python`) as two one-process "nodes" on 127.0.0.1, each a
    launcher of its own (``--nnodes 2 --master``; node N's log in tmp_path/nodeN/workerlog.0,
    its working directory ``cwds[N]``); returns their outputs. Fails the test if they hang."""
    port = free_port()
    return _finish([_launch(tmp_path / f'node{rank}', ['--nnodes', '2', '--master', f'127.0.0.1:{port}',
                                                      '--rank', str(rank), '--nproc_per_node', '1'], command, cwd)
                    for rank, cwd in enumerate(cwds)])


# --opt of a training run that takes seconds: 128 px, batch 2, two epochs of a tiny set
TINY_TRAINING = ['num_workers=0', 'batch_size=2', 'train_shorts=(128,)', 'train_max=128',
                 'test_short=128', 'test_max=128', 'warmup_iters=2', 'ema_decay=0.9', 'epochs=2']


def make_tiny_shapes(root, val: int = 2):
    """A shapes dataset of six 128 px training images and ``val`` validation ones under
    ``root`` (tools/make_shapes_dataset.py, seed 1); returns ``root``."""
    subprocess.run([sys.executable, str(REPO_DIR / 'tools' / 'make_shapes_dataset.py'), '--out', str(root),
                    '--train', '6', '--val', str(val), '--size', '128', '--seed', '1'], check=True, capture_output=True)
    return root


LABELME_SHAPES = {'brick': 1, 'egg': 0}     # label -> tools/make_shapes_dataset.py's SQUARE, CIRCLE


def make_labelme_folder(folder, count: int, labels, seed: int = 0, size: int = 128):
    """``count`` pictures of ``size`` px with their labelme files in ``folder`` (made if
    needed): one to three objects each, squares labelled 'brick' and discs labelled 'egg'
    (of ``labels``), one per quadrant so none hides another, drawn as
    tools/make_shapes_dataset.py draws its shapes; returns ``folder``."""
    import json

    import cv2
    import numpy as np

    from solov2.tools.make_shapes_dataset import render_background, shape_vertices

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    quadrants = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        canvas = render_background(rng, size)
        shapes = []
        for q in rng.permutation(4)[:int(rng.integers(1, 4))]:
            label = labels[int(rng.integers(len(labels)))]
            centre = np.array(quadrants[q]) * size + rng.uniform(-4, 4, 2)
            vertices = shape_vertices(LABELME_SHAPES[label], centre, rng.uniform(0.28, 0.42) * size,
                                      rng.uniform(0, np.pi))
            colour = 255 - canvas[int(centre[1]), int(centre[0])]
            cv2.fillPoly(canvas, [np.round(vertices).astype(np.int32)], colour.tolist())
            shapes.append({'label': label, 'points': vertices.round(1).tolist(), 'group_id': None,
                           'shape_type': 'polygon', 'flags': {}})
        name = f'{index:03d}.png'
        cv2.imwrite(str(folder / name), cv2.cvtColor(np.clip(canvas, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
        (folder / f'{index:03d}.json').write_text(json.dumps(
            {'version': '5.4.1', 'flags': {}, 'shapes': shapes, 'imagePath': name, 'imageData': None,
             'imageHeight': size, 'imageWidth': size}))
    return folder


def built_once(folder: Path, build) -> Path:
    """``folder`` as ``build(folder)`` fills it, made once a test run (``folder``: in the ``run_builds``
    fixture's): the first caller builds it holding a lock beside it, the others (other modules,
    other pytest-xdist workers) wait, then find it made. Its users only read it."""
    with open(folder.with_name(folder.name + '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder.with_name(folder.name + '.done')
        if not done.exists():             # not made, or a build that failed: anew
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def shipped_auto_entry() -> Path:
    """The shipped model's ``backend='auto'`` entry in ``$SOLOV2_CACHE`` (the session's, tests/conftest.py),
    made once a test run by ``cached_backend``; needs the deploy extras. The export holds
    ``built_once``'s lock beside the cache, so that other pytest-xdist workers that want it
    meanwhile wait for it instead of exporting it too; no test changes the entry (one that would
    copies it), so later callers only read it."""
    def opened(folder: Path) -> None:
        cached_backend(ModelSpec(SHIPPED_WEIGHTS), 9, get_config(9), log=lambda line: None)
    cache = Path(os.environ[CACHE_ENV])
    built_once(cache.with_name(cache.name + '_shipped_auto'), opened)
    return entry_folder(cache_key(SHIPPED_WEIGHTS, 9, []))


def shipped_onnx_export(dest: Path) -> Path:
    """``dest`` holding the shipped model's ONNX export (model.onnx, model_regions.onnx, infer_cfg.json: what
    ``export(dygraph, 9, ..., fmt='onnx')`` writes), copied from the session's ``backend='auto'`` cache
    entry, which is exported once a test run (``shipped_auto_entry``); needs the deploy extras."""
    entry = shipped_auto_entry()
    dest.mkdir(parents=True)
    for name in ('model.onnx', 'model_regions.onnx', 'infer_cfg.json'):
        shutil.copy2(entry / name, dest / name)
    return dest


def shipped_paddle_export(run_builds: Path) -> Path:
    """The folder of the shipped model's Paddle Inference export (``export(dygraph, 9, ..., fmt='paddle',
    check=False)``), made once a test run (``built_once`` in the ``run_builds`` fixture's folder);
    its users only read it."""
    def build(folder: Path) -> None:
        number, cfg = resolve_config(SHIPPED_WEIGHTS, None, ())
        export(DygraphBackend(cfg, SHIPPED_WEIGHTS, 'cpu'), number, folder / 'export', fmt='paddle', check=False)
    return built_once(run_builds / 'shipped_paddle', build) / 'export'


def ctrl_c_as_in_a_terminal() -> None:
    """A subprocess's ``preexec_fn``: Ctrl-C's default in the child (a shell starts a job in the
    background with SIGINT ignored, and a command that inherits that never sees Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def children(pid: int) -> list:
    """Pids of the processes whose parent is ``pid`` (from /proc)."""
    found = []
    for status in Path('/proc').glob('[0-9]*/status'):
        try:
            fields = dict(line.split(':\t', 1) for line in status.read_text().splitlines() if ':\t' in line)
        except OSError:
            continue
        if fields.get('PPid', '').strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        return 'zombie' not in Path(f'/proc/{pid}/status').read_text().split('State:', 1)[1].split('\n', 1)[0]
    except (OSError, IndexError):
        return False
