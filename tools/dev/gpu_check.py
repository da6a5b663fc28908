"""Checks that the toolkit is right on this machine's GPU: ``python tools/dev/gpu_check.py`` (about
3-5 minutes on one GPU). Each check prints one line, PASS, FAIL or SKIP, with its numbers; the
exit code is 1 when any check fails. TF32 stays as Paddle leaves it (Paddle 2.6: on in cuBLAS and
cuDNN from Ampere on; 3.x: off in cuBLAS, on in cuDNN), as users run, but for the two checks that
compare the GPU's float32 arithmetic with the CPU's (inference, dcn: ``runtime.tf32_off``, Paddle's
cuBLAS and cuDNN switches put back after).

  environment   the Paddle wheel (a CUDA build, no CPU wheel beside it), not both onnxruntime wheels
                (``config.install``), the GPU and its compute capability, and whether this Paddle
                runs on it (``model.runtime.resolve_device``; Paddle 2.x on Hopper and newer: FAIL)
  inference     the shipped model's outputs on the GPU and on the CPU, on the sample pictures:
                largest difference of scores, kernels and mask features within ``OUTPUT_TOLERANCE``
  postprocess   post-processing on the GPU (``device_postprocess``) against the numpy path on
                the same outputs: same labels, scores within ``SCORE_TOLERANCE``, mask pixels that
                differ under ``PIXEL_SHARE`` of the instances' pixels
  engines       the shipped model exported, Paddle Inference (and onnxruntime where the deployment
                extras are installed) on the GPU against dygraph: labels, scores within the
                ``ENGINE_TOLERANCE`` of what each computes in (``engine_precision``: TF32 from Ampere
                on, TensorRT float16); Paddle Inference's ops on the GPU; onnxruntime's sessions
                without fallback and on their first provider after the runs; each through TensorRT
                too where it can run (onnxruntime with its provider, Paddle 2.6's .pdmodel)
  memory        a 12 MP picture with the post-processing and the paste on the GPU: its peak device
                memory within ``MEMORY_BYTES``
  dcn           Paddle's deformable conv on the GPU against the CPU's tensor-op form
                (``model.deform_ops``): output and the gradients of every input within ``DCN_TOLERANCE``
  train         ``steps`` training steps of the shapes config (9) on a small generated set, in
                float32 and with AMP in float16 and bfloat16 (where the GPU runs it): the convolutions
                in the half type AMP should run (``runnable_amp``), losses finite, the second half's
                mean below the first half's (from ``FALLING_STEPS`` steps on), AMP's within
                ``AMP_SHARE`` of float32's; float16's loss scaler finite and saved
  sync-bn       config 0's frozen backbone BN still frozen after the sync-BN conversion, and a
                training forward of config 9 with its synchronised BN finite
  ema           one EMA update of config 9's weights on the GPU, in ms, and that it moved them
  eval          mask AP on generated shapes pictures with the GPU (post-processing there) and the
                CPU (numpy), within ``AP_POINTS``
  export-no-trt the shipped model exported and checked (Paddle Inference opened) where Paddle cannot load
                TensorRT (``get_trt_runtime_version`` failing in Paddle's words, a GPU wheel without libnvinfer):
                real where it fails here, else stood in; the line says which
  tensorrt      each engine through TensorRT with an engine cache (onnxruntime with its provider, Paddle 2.6's
                .pdmodel): after the open its entries hold engine files and no temporary; runs at 3 sizes
                and pictures of 3 sizes shared as the service shares them (through TensorRT one size a batch:
                the regions graph never meets it) write nothing; a second process opens without building; two at
                once build once; without TensorRT the open is refused and leaves nothing; SKIP where none can
  tf32          ``tf32_off`` turns Paddle's TF32 switches and flags off inside and puts them back after
  cudnn         one libcudnn mapped per cuDNN major after dygraph and onnxruntime ran on the GPU (two
                majors by design on the README's Paddle 2.6 rows; two paths of one major: FAIL)
  two-gpu       with two GPUs: each launched process's plain 'gpu' is its own GPU (the one rule of
                dygraph, Paddle Inference and onnxruntime), and train.py launched on both with
                ``--sync-bn`` for a few steps; SKIP with one

``--dry-run`` makes the same calls on the CPU (the "GPU" is the CPU; AMP there trains in
float32, as train.py does), with fewer and smaller steps: CI runs it so the check cannot rot.
"""
import dataclasses
import importlib.util
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from solov2.config import get_config  # noqa: E402
from solov2.config.device import gpu_number, on_gpu  # noqa: E402
from solov2.config.install import (  # noqa: E402
    cuda_device,
    cudnn_install_problem,
    installed_wheels,
    nvidia_driver,
    onnxruntime_install_problem,
    paddle_install_problem,
    paddle_major,
    tensorrt_version,
)
from solov2.core.cache import EngineFiles, cache_entries  # noqa: E402
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS  # noqa: E402
from solov2.data.coco import CocoDataset, load_coco  # noqa: E402
from solov2.data.results import write_json  # noqa: E402
from solov2.data.scoring import evaluate_segm  # noqa: E402
from solov2.data.transforms import read_image  # noqa: E402
from solov2.model.build import build_model  # noqa: E402
from solov2.model.deform_ops import deform_conv  # noqa: E402
from solov2.model.inference import onnxruntime_backend, paddle_inference_backend  # noqa: E402
from solov2.model.inference.backend import BackendError, share_batches  # noqa: E402
from solov2.model.inference.dygraph_backend import DygraphBackend  # noqa: E402
from solov2.model.inference.export import export  # noqa: E402
from solov2.model.inference.pipeline import Predictor  # noqa: E402
from solov2.model.inference.predicting import predict_coco  # noqa: E402
from solov2.model.inference.spec import ModelSpec, exported_backend  # noqa: E402
from solov2.model.runtime import paddle_on, resolve_device, tf32_off, unsupported_gpu  # noqa: E402
from solov2.model.training.amp import runnable_amp  # noqa: E402
from solov2.model.training.ema import ModelEMA  # noqa: E402
from solov2.model.training.hooks import Hook  # noqa: E402
from solov2.model.training.options import TrainOptions  # noqa: E402
from solov2.model.training.run import prepare, run_settings  # noqa: E402
from solov2.model.training.sync_bn import CpuSyncBatchNorm, convert_sync_bn, trains_statistics  # noqa: E402
from solov2.tools.cli import LIBRARY_LOGGER, command, make_parser  # noqa: E402
from solov2.tools.make_shapes_dataset import generate_split  # noqa: E402

OUTPUT_TOLERANCE = 1e-3   # network outputs, GPU vs CPU, float32 without TF32
SCORE_TOLERANCE = 1e-4    # post-processed scores, device vs numpy
PIXEL_SHARE = 1e-3        # mask pixels that may differ (threshold ties), of all instance pixels
DCN_TOLERANCE = 1e-4      # deformable conv, relative to the largest magnitude
AMP_SHARE = 0.25          # AMP's final loss within 25% of float32's
AP_POINTS = 0.2           # mask AP (percent points), GPU vs CPU
ENGINE_TOLERANCE = {'float32': 1e-3, 'tf32': 1e-2, 'float16': 3e-2}   # engine scores against dygraph, by precision
FALLING_STEPS = 10        # fewer steps are too noisy to ask the loss to fall
MEMORY_BYTES = 4 << 30    # device memory at the peak of a 12 MP picture's run: an 8 GB card holds it
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / 'train.py'


@dataclasses.dataclass
class Setting:
    """What one run checks with: ``device`` ('gpu', or 'cpu' in a dry run), ``steps`` training
    steps at ``size`` pixels, ``pictures`` evaluation pictures, ``samples`` of the sample
    pictures, the work folder."""
    device: str
    steps: int
    size: int
    pictures: int
    samples: int
    folder: Path

    @property
    def dry(self) -> bool:
        return not on_gpu(self.device)

    def synchronize(self) -> None:
        if not self.dry:
            paddle.device.cuda.synchronize()


def check_environment(s: Setting) -> str:
    """The wheels, the build and the GPU (``resolve_device`` raises when this Paddle cannot use it)."""
    problem = paddle_install_problem() or onnxruntime_install_problem() or cudnn_install_problem()
    if problem:
        raise AssertionError(problem)
    wheels = ', '.join(installed_wheels()) or 'a source build'
    device = resolve_device(s.device)
    if s.dry:
        return f'Paddle {paddle.__version__} ({wheels}), dry run on the CPU'
    if not paddle.is_compiled_with_cuda() or 'paddlepaddle' in installed_wheels():
        raise AssertionError(f'Paddle {paddle.__version__} ({wheels}) is not the CUDA build alone')
    number = gpu_number(device)
    major, minor = paddle.device.cuda.get_device_capability(number)
    problem = unsupported_gpu(paddle.__version__, (major, minor))
    assert not problem, problem
    named = cuda_device(number)     # what TensorRT's engine folders are keyed by (ExportedBackend.tensorrt_engines)
    assert named and named.endswith(f' sm{major}{minor}'), (
        f"the driver's libcuda names GPU {number} {named!r}, Paddle gives compute capability {major}.{minor}")
    return (f'Paddle {paddle.__version__} ({wheels}), CUDA {paddle.version.cuda()}, cuDNN {paddle.version.cudnn()}, '
            f'{paddle.device.cuda.get_device_name(number)} compute capability {major}.{minor}, NVIDIA driver '
            f'{nvidia_driver() or "unknown"}')


def _pictures(s: Setting) -> list:
    return [read_image(str(path)) for path in sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[:s.samples]]


def check_inference(s: Setting) -> str:
    """The shipped model's three outputs on each sample picture, GPU against CPU."""
    cpu, gpu = (DygraphBackend(get_config(9), SHIPPED_WEIGHTS, device, threads=2) for device in ('cpu', s.device))
    worst = 0.0
    with tf32_off('cublas', 'cudnn'):
        for picture in _pictures(s):
            chw, _ = Predictor(cpu).prepare(picture)
            for want, got in zip(cpu.run_numpy(chw[None]), gpu.run_numpy(chw[None])):
                worst = max(worst, float(np.abs(want - got).max()))
    assert worst <= OUTPUT_TOLERANCE, f'largest output difference {worst:.2e} > {OUTPUT_TOLERANCE}'
    return f'largest output difference {worst:.2e} (tolerance {OUTPUT_TOLERANCE}) on {s.samples} pictures'


def check_postprocess(s: Setting) -> str:
    """Device post-processing against numpy on the same network outputs."""
    gpu = DygraphBackend(get_config(9), SHIPPED_WEIGHTS, s.device, threads=2)
    instances, differ, pixels, worst = 0, 0, 0, 0.0
    for picture in _pictures(s):
        got, want = (Predictor(gpu, on_device).detect(picture) for on_device in (True, False))
        assert list(got.labels) == list(want.labels), f'labels {list(got.labels)} != {list(want.labels)}'
        worst = max([worst, *np.abs(got.scores - want.scores)])
        got_masks, want_masks = np.asarray(got.masks), np.asarray(want.masks)
        differ += int((got_masks != want_masks).sum())
        pixels += int((got_masks | want_masks).sum())
        instances += len(want)
    assert worst <= SCORE_TOLERANCE, f'largest score difference {worst:.2e} > {SCORE_TOLERANCE}'
    assert differ <= PIXEL_SHARE * pixels, f'{differ} of {pixels} mask pixels differ'
    return (f'{instances} instances, same labels, largest score difference {worst:.1e}, {differ} of {pixels} '
            'mask pixels differ')


def engine_precision(tensorrt: bool, capability) -> str:
    """What an exported engine's float32 products run in on a GPU of compute ``capability``
    (None: the CPU): TensorRT float16; from Ampere (8.x) on TF32 (onnxruntime's CUDA provider,
    its use_tf32 default, and Paddle Inference's convolutions, cuDNN's switch on in Paddle 2.6
    and 3.x); else float32. ``ENGINE_TOLERANCE`` has each one's tolerance."""
    if tensorrt:
        return 'float16'
    return 'tf32' if capability and capability[0] >= 8 else 'float32'


def _engine_cases(s: Setting, kinds: list) -> list:
    """(backend, tensorrt) of each engine to check: every one of ``kinds``, and on a GPU each
    through TensorRT where it can run (onnxruntime with its provider; Paddle 2.6's .pdmodel)."""
    cases = [(kind, False) for kind in kinds]
    if not s.dry and 'onnx' in kinds:
        import onnxruntime
        cases += [('onnx', True)] * ('TensorrtExecutionProvider' in onnxruntime.get_available_providers())
    return cases + [('inference', True)] * (not s.dry and paddle_major() < 3)


def _placed(engine, chw) -> set:
    """'cpu' and/or 'gpu': where a Paddle Inference engine's ops put their outputs on a run of chw
    ({'unknown'} where its predictor has no output hooks)."""
    if not hasattr(engine.predictor, 'register_output_hook'):
        return {'unknown'}
    places = set()
    engine.predictor.register_output_hook(lambda op, name, tensor: places.add(
        'gpu' if 'gpu' in str(tensor.place).lower() else 'cpu'))
    engine.run(chw[None])
    return places


def _engine_run(s: Setting, engine, dygraph, tolerance: float) -> float:
    """Largest score difference of ``engine`` against ``dygraph`` on the sample pictures, with the
    same labels (in order of labels: near-tied instances may swap under TF32 and float16)."""
    worst = 0.0
    for picture in _pictures(s):
        want, got = Predictor(dygraph).detect(picture), Predictor(engine).detect(picture)
        assert sorted(got.labels) == sorted(want.labels), f'labels {list(got.labels)} != {list(want.labels)}'
        pairs = [sorted(zip(found.labels, found.scores)) for found in (want, got)]
        worst = max([worst, *(abs(a[1] - b[1]) for a, b in zip(*pairs))])
    assert worst <= tolerance, f'scores {worst:.1e} apart, over {tolerance}'
    return worst


def check_engines(s: Setting) -> str:
    """The shipped model exported and run by Paddle Inference (and onnxruntime, where installed)
    on the device, each against dygraph on the CPU: the same labels, scores within the tolerance
    of what the engine computes in (``engine_precision``); Paddle Inference's ops on the device;
    onnxruntime's sessions without fallback, still on their first provider after the runs; on
    a GPU each through TensorRT too where it can run (one that does not open fails the check)."""
    kinds = ['inference'] + (['onnx'] if importlib.util.find_spec('paddle2onnx') and
                             importlib.util.find_spec('onnxruntime') else [])
    folder = s.folder / 'export'
    dygraph = DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=2)
    export(dygraph, 9, folder, fmt='both' if 'onnx' in kinds else 'paddle', check=False)
    capability = None if s.dry else tuple(paddle.device.cuda.get_device_capability(gpu_number(s.device)))
    lines = []
    for kind, tensorrt in _engine_cases(s, kinds):
        name, precision = kind + ' tensorrt' * tensorrt, engine_precision(tensorrt, capability)
        try:
            engine = exported_backend(ModelSpec(backend=kind, model_dir=str(folder), device=s.device, threads=2,
                                                tensorrt=tensorrt), str(s.folder / 'compiled'))
        except BackendError as exc:
            raise AssertionError(f'{name} did not open: {exc}') from exc
        worst = _engine_run(s, engine, dygraph, ENGINE_TOLERANCE[precision])
        if kind == 'onnx':
            assert not engine.session._enable_fallback, f'{name}: its session falls back after start'
            first = 'CPU' if s.dry else 'Tensorrt' if tensorrt else 'CUDA'
            assert engine.session.get_providers()[0] == f'{first}ExecutionProvider', \
                f'{name}: runs on {engine.session.get_providers()}'
        else:
            places = _placed(engine, Predictor(dygraph).prepare(_pictures(s)[0])[0])
            assert places in ({'unknown'}, {'cpu'}) if s.dry else ('gpu' in places), f'{name}: ops on {places}'
        lines.append(f'{name} ({precision}) within {worst:.1e}')
    return f'same labels as dygraph on {s.samples} pictures, scores: ' + ', '.join(lines)


def check_memory(s: Setting) -> str:
    """The shipped model on a 12 MP picture (4000 x 3000; a dry run: 400 x 300) with the
    post-processing and the paste on the device: its peak device memory within ``MEMORY_BYTES``."""
    picture = cv2.resize(_pictures(s)[0], (400, 300) if s.dry else (4000, 3000))
    gpu = Predictor(DygraphBackend(get_config(9), SHIPPED_WEIGHTS, s.device, threads=2), on_device=True)
    cuda, number = paddle.device.cuda, None if s.dry else gpu_number(s.device)
    if not s.dry and hasattr(cuda, 'reset_max_memory_allocated'):
        cuda.reset_max_memory_allocated(number)
    found = gpu.detect(picture)
    assert found.masks.image_size == picture.shape[:2], f'masks of {found.masks.image_size}'
    if s.dry:
        return f'{len(found)} instances on a {picture.shape[1]}x{picture.shape[0]} picture (memory: on a GPU)'
    peak = cuda.max_memory_allocated(number)
    assert peak <= MEMORY_BYTES, f'{peak / 2 ** 30:.2f} GiB at its peak, over {MEMORY_BYTES / 2 ** 30:.0f} GiB'
    return f'{len(found)} instances on a 12 MP picture, {peak / 2 ** 30:.2f} GiB of device memory at its peak'


def _dcn_case() -> list:
    """x, offset, weight, bias, mask and the output's gradient of a 3x3 DCNv2, 8 -> 16 channels."""
    rng = np.random.default_rng(0)
    mask = 1 / (1 + np.exp(-rng.normal(0, 1, (2, 9, 12, 12))))
    return [rng.normal(0, 1, (2, 8, 12, 12)), rng.normal(0, 2, (2, 18, 12, 12)), rng.normal(0, 0.2, (16, 8, 3, 3)),
            rng.normal(0, 1, 16), mask, rng.normal(0, 1, (2, 16, 12, 12))]


def _dcn_run(device: str, conv) -> list:
    """Output and input gradients of ``conv`` on ``device`` for ``_dcn_case``."""
    with paddle_on(device, 2):
        *inputs, dout = [paddle.to_tensor(a.astype(np.float32), stop_gradient=False) for a in _dcn_case()]
        x, offset, weight, bias, mask = inputs
        out = conv(x, offset, weight, bias, padding=1, mask=mask)
        (out * dout).sum().backward()
        return [out.numpy()] + [t.grad.numpy() for t in inputs]


def check_dcn(s: Setting) -> str:
    """Paddle's deformable conv on the device (what ``deform_conv`` runs there) against the
    CPU's tensor-op form (``deform_conv`` on a CPU place with gradients)."""
    want = _dcn_run('cpu', deform_conv)
    with tf32_off('cublas', 'cudnn'):
        got = _dcn_run(s.device, paddle.vision.ops.deform_conv2d)
    names = ('output', 'dx', 'doffset', 'dweight', 'dbias', 'dmask')
    errors = {name: float(np.abs(a - b).max() / max(1.0, np.abs(a).max())) for name, a, b in zip(names, want, got)}
    bad = [f'{name} {error:.1e}' for name, error in errors.items() if error > DCN_TOLERANCE]
    assert not bad, 'relative differences over ' + str(DCN_TOLERANCE) + ': ' + ', '.join(bad)
    return f'output and 5 gradients within {max(errors.values()):.1e} (tolerance {DCN_TOLERANCE})'


class _Losses(Hook):
    def __init__(self):
        self.values = []

    def after_step(self, trainer, losses) -> None:
        self.values.append(losses['loss'])


def _shapes_set(s: Setting, split: str, count: int) -> tuple:
    """(annotation file, picture folder) of ``count`` generated shapes pictures."""
    coco = generate_split(s.folder, split, count, s.size, seed=7)
    ann = s.folder / f'{split}.json'
    write_json(coco, str(ann))
    return str(ann), str(s.folder / split)


def _train(s: Setting, amp: str) -> tuple:
    """(losses, loss scaler's state, dtypes of the first convolution's outputs) of ``s.steps``
    steps of config 9 from random weights (``amp``: '', 'fp16' or 'bf16'), as ``train`` runs
    them (``run_settings``)."""
    ann, images = _shapes_set(s, 'train', 8)
    data = [f'dataset_dir={s.folder}', f'train_ann={ann}', f'train_images={images}', f'val_ann={ann}',
            f'val_images={images}', f'train_shorts=({s.size},)', f'train_max={s.size}', 'batch_size=2',
            'warmup_iters=0', 'num_workers=0', 'base_lr=0.005']
    options = TrainOptions(config=9, output=str(s.folder / f'run{amp}'), overwrite=True, overrides=tuple(data),
                           max_iters=s.steps, log_every=10 ** 6, checkpoint_every=10 ** 6, amp=amp,
                           device=s.device, threads=2)
    with run_settings(options) as hold:
        trainer, _ = prepare(options, evaluate=None, placement=hold)
        losses, dtypes = _Losses(), set()
        trainer.hooks = [losses]
        first = next(layer for layer in trainer.model.sublayers() if isinstance(layer, paddle.nn.Conv2D))
        first.register_forward_post_hook(lambda layer, inputs, output: dtypes.add(str(output.dtype).split('.')[-1]))
        trainer.run()
    return losses.values, trainer.checkpoint_state()['scaler'], dtypes


def _halves(losses: list) -> tuple:
    """Mean loss of the first and of the second half of the steps."""
    return float(np.mean(losses[:len(losses) // 2])), float(np.mean(losses[len(losses) // 2:]))


def check_train(s: Setting) -> str:
    """float32 and AMP training (float16; bfloat16 where the GPU runs it): finite, falling from
    ``FALLING_STEPS`` steps on (the second half's mean loss below the first half's), AMP's
    second half within ``AMP_SHARE`` of float32's; float16's scaler state finite and positive."""
    amps = ['', 'fp16'] + (['bf16'] if s.dry or runnable_amp('bf16', s.device) else [])
    runs = {amp or 'float32': _train(s, amp) for amp in amps}
    for amp in amps:            # the half type the forward's convolutions really ran in (float32 on the CPU)
        want = runnable_amp(amp, s.device) or 'float32'
        assert runs[amp or 'float32'][2] == {want}, f"{amp or 'float32'}: convolutions in {runs[amp or 'float32'][2]}"
    halves = {name: _halves(losses) for name, (losses, _, _) in runs.items()}
    numbers = f'{s.steps} steps, mean loss of the first and second half: ' + ', '.join(
        f'{name} {start:.3f} -> {end:.3f}' for name, (start, end) in halves.items())
    assert all(math.isfinite(v) for losses, _, _ in runs.values() for v in losses), 'not finite: ' + numbers
    assert s.steps < FALLING_STEPS or all(end < start for start, end in halves.values()), 'not falling: ' + numbers
    end = halves['float32'][1]
    assert all(abs(last - end) <= AMP_SHARE * end for _, last in halves.values()), \
        f'AMP ends over {AMP_SHARE:.0%} away: ' + numbers
    scale = runs['fp16'][1].get('scale', [])
    assert s.dry or (scale and all(math.isfinite(v) and v > 0 for v in scale)), f'float16 loss scale {scale}'
    return numbers + (f'; float16 loss scale {scale[0]:g}' if scale else '')


def _bn_counts(model) -> tuple:
    """(frozen BN, BN that train their statistics, synchronised BN) layers of ``model``."""
    norms = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]
    synced = [layer for layer in model.sublayers() if isinstance(layer, (paddle.nn.SyncBatchNorm, CpuSyncBatchNorm))]
    return sum(bool(layer._use_global_stats) for layer in norms), sum(map(trains_statistics, norms)), len(synced)


def check_sync_bn(s: Setting) -> str:
    """The sync-BN conversion a GPU run makes (``convert_sync_bn``) on config 0 (frozen
    backbone BN) and config 9 (BN that trains): frozen ones stay, training ones are synced, and
    config 9's training forward through them is finite."""
    numbers = []
    with paddle_on(s.device, 2):
        for number in (0, 9):
            model = build_model(get_config(number))
            before = _bn_counts(model)
            after = _bn_counts(convert_sync_bn(model, gpu=not s.dry))
            numbers.append(f'config {number}: {before[0]} frozen BN -> {after[0]}, {before[1]} training BN -> '
                           f'{after[2]} synced')
            assert after == (before[0], 0, before[1]) and (number != 0 or before[0] > 0), '; '.join(numbers)
        model.train()
        outputs = model(paddle.rand([2, 3, s.size, s.size]))
        finite = all(bool(paddle.isfinite(t).all()) for t in paddle.utils.flatten(outputs) if t is not None)
        assert finite, 'config 9 with synchronised BN: a training forward is not finite'
    return '; '.join(numbers) + '; its training forward finite'



def check_ema(s: Setting) -> str:
    """One EMA update of config 9's weights on the device: its time and that it moved them."""
    with paddle_on(s.device, 2):
        model = build_model(get_config(9))
        ema = ModelEMA(model, decay=0.5, ramp=1.0)
        with paddle.no_grad():
            for value in model.parameters():
                value.set_value(value + 1.0)
        ema.update(model)
        s.synchronize()
        began = time.perf_counter()
        for _ in range(5):
            ema.update(model)
        s.synchronize()
        took = (time.perf_counter() - began) / 5
        name, value = next(iter(model.state_dict().items()))
        moved = float(np.abs(ema.shadow[name].numpy() - value.numpy()).max())
    megabytes = sum(v.numel().item() * 4 for v in ema.shadow.values()) / 2 ** 20
    assert moved < 1.0, f'the shadow did not follow the weights ({moved})'
    return f'{1e3 * took:.1f} ms per update of {megabytes:.0f} MB of weights'


def _ap(predictor, ann: str, images: str) -> float:
    dataset = CocoDataset(ann, images, class_names=list(predictor.engine.class_names))
    coco = load_coco(ann)
    return 100 * evaluate_segm(coco, predict_coco(predictor, coco, images, dataset.label_to_category_id))['AP']


def check_eval(s: Setting) -> str:
    """Mask AP of the shipped model with the device (and its post-processing) and the CPU."""
    ann, images = _shapes_set(s, 'val', s.pictures)
    cpu = _ap(Predictor(DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=2)), ann, images)
    gpu = _ap(Predictor(DygraphBackend(get_config(9), SHIPPED_WEIGHTS, s.device, threads=2), on_device=True), ann,
              images)
    numbers = f'AP {gpu:.2f} with the device, {cpu:.2f} on the CPU, {s.pictures} pictures'
    assert abs(gpu - cpu) <= AP_POINTS, numbers + f': over {AP_POINTS} points apart'
    return numbers


PLACEMENT = "from solov2.config.device import gpu_number\nprint(f'gpu:{gpu_number(\"gpu\")}')\n"   # a process's GPU


class Skipped(Exception):
    """A check that cannot run here (its line says why)."""


def check_two_gpus(s: Setting) -> str:
    """train.py launched on two GPUs with ``--sync-bn`` for a few steps."""
    count = 0 if s.dry else paddle.device.cuda.device_count()
    if count < 2:
        raise Skipped('dry run' if s.dry else f'{count} GPU: needs two')
    from solov2.tools.dev.train_speed import command_args
    script = s.folder / 'placement.py'
    script.write_text(PLACEMENT)
    placed = subprocess.run([sys.executable, '-m', 'paddle.distributed.launch', '--gpus', '0,1', '--log_dir',
                             str(s.folder / 'placed_logs'), str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'PYTHONPATH': str(TRAIN_SCRIPT.parent)})
    logs = ''.join(path.read_text() for path in sorted((s.folder / 'placed_logs').glob('workerlog.*')))
    assert placed.returncode == 0 and sorted(logs.split()) == ['gpu:0', 'gpu:1'], f'placed on {logs.split()}'
    ann, images = _shapes_set(s, 'train', 8)
    options = TrainOptions(config=9, output=str(s.folder / 'launched'), overwrite=True, sync_bn=True, device='gpu',
                           max_iters=5, log_every=1, overrides=(f'train_ann={ann}', f'train_images={images}',
                                                                f'val_ann={ann}', f'val_images={images}',
                                                                'batch_size=2', 'num_workers=0'))
    command = [sys.executable, '-m', 'paddle.distributed.launch', '--gpus', '0,1', '--log_dir',
               str(s.folder / 'launch_logs'), str(TRAIN_SCRIPT), *command_args(options)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    log = Path(options.output) / 'train_log.csv'
    assert done.returncode == 0 and log.is_file(), f'exit code {done.returncode}: {done.stderr.strip()[-300:]}'
    return (f'2 processes placed on gpu:0 and gpu:1; train.py: {len(log.read_text().splitlines()) - 1} logged '
            'steps, exit code 0')


NO_TENSORRT = '(Unavailable) Load tensorrt api getInferLibVersion failed'     # Paddle's words without libnvinfer
ENGINE_FILES = {'onnx': onnxruntime_backend.ENGINE_FILES, 'inference': paddle_inference_backend.ENGINE_FILES}
OPENER = """import sys
from solov2.core import cache
from solov2.model.inference.spec import ModelSpec, exported_backend
kind, folder, compiled, mode = sys.argv[1:5]
builds, build_folder = [], cache.build_folder
cache.build_folder = lambda *args, **kwargs: builds.append(1) or build_folder(*args, **kwargs)
if mode.startswith('no-tensorrt'):  # stood in: the wheel's TensorRT not importable, Paddle's dynload failing
    import paddle.inference
    sys.modules['tensorrt'] = None
    paddle.inference.get_trt_runtime_version = lambda: (_ for _ in ()).throw(RuntimeError(sys.argv[5]))
try:
    engine = exported_backend(ModelSpec(backend=kind, model_dir=folder, device=mode.split('/')[-1], threads=2,
                                        tensorrt=not mode.endswith('cpu')), compiled)
    engine.compile_ahead(2, mixed=True)
    print('opened', len(builds))
except Exception as exc:
    print('refused', len(builds), str(exc).replace(chr(10), ' '))
"""


def _files(folder: Path) -> dict:
    """{path under ``folder``: (size, modification time in ns)} of its files: what writing any changes."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob('*')
            if p.is_file()} if folder.is_dir() else {}


def entry_problems(cache: Path, engines: EngineFiles) -> list:
    """What is wrong with the TensorRT engine entries of ``cache``: a temporary left, an entry without the
    runtime's whole build (``engines``), none at all."""
    entries = [entry for entry in cache_entries(str(cache)) if 'tensorrt-' in entry.path.name]
    problems = [f'{entry.path.name} {entry.state}' for entry in entries if entry.state != 'current']
    problems += [f'{entry.path.name} holds no {engines}' for entry in entries
                 if entry.state == 'current' and not engines.built(entry.path)]
    return problems + ['no entry'] * (not entries)


def _opener(s: Setting, kind: str, folder: Path, cache: Path, mode: str) -> subprocess.Popen:
    """Another process opening ``kind`` from ``folder`` with TensorRT (``mode``: the device, or
    'no-tensorrt/<device>' without TensorRT; 'cpu' in a dry run), engines in ``cache``: it prints 'opened' or
    'refused', the folders it built, and why."""
    return subprocess.Popen([sys.executable, '-c', OPENER, kind, str(folder), str(cache / 'openvino-compiled'), mode,
                             NO_TENSORRT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, 'PYTHONPATH': str(TRAIN_SCRIPT.parent)})


def _opened(process) -> tuple:
    """('opened' or 'refused', folders built, why) of an ``_opener``."""
    out, err = process.communicate(timeout=1800)
    words = (out.strip().splitlines() or [f'crashed: {err.strip()[-300:]}'])[-1].split(' ', 2)
    return words[0], int(words[1]) if len(words) > 1 and words[1].isdigit() else -1, words[-1]


def _tensorrt_cases(s: Setting) -> list:
    """The exported engines that run through TensorRT here: onnxruntime with its provider, Paddle 2.6's .pdmodel
    (Paddle 3's .json is refused); a dry run opens onnx (where installed) on the CPU, without TensorRT."""
    onnx = importlib.util.find_spec('paddle2onnx') and importlib.util.find_spec('onnxruntime')
    if s.dry:
        return ['onnx'] * bool(onnx)
    import onnxruntime
    kinds = ['onnx'] * bool(onnx and 'TensorrtExecutionProvider' in onnxruntime.get_available_providers())
    return kinds + ['inference'] * (paddle_major() < 3)


def _mixed_sizes(engine, side: int) -> str:
    """Pictures of three padded sizes shared into batches as the service shares them with ``--max-padding 1``
    (``share_batches``), each batch run: through TensorRT each of one size (the regions graph, whose output
    shape follows the values of ``regions``, never meets TensorRT), else mixed where the engine mixes sizes."""
    sizes = [(side, side), (side, 2 * side), (side, side), (2 * side, side)]
    batches = share_batches(sizes, engine, max_batch=2 * len(sizes), max_padding=1.0)
    for members in batches:
        engine.run_numpy(*engine.batch_regions([np.zeros((3, *sizes[i]), np.float32) for i in members]))
    kinds = [len({sizes[i] for i in members}) for members in batches]
    assert not getattr(engine, 'tensorrt', False) or kinds == [1] * len(batches), f'sizes a batch: {kinds}'
    return f'{len(sizes)} pictures of 3 sizes in {len(batches)} batches ({max(kinds)} size(s) at most in one)'


def tensorrt_absence(kind: str) -> Optional[str]:
    """Why the engine ``kind`` cannot load TensorRT on this machine, nothing stood in: Paddle's version call
    failing in its words (inference), neither the ``tensorrt`` wheel nor a system ``libnvinfer.so.10`` (onnx);
    None where it can."""
    if kind == 'inference':
        import paddle.inference
        try:
            paddle.inference.get_trt_runtime_version()
        except Exception as exc:  # Paddle's own types (UnavailableError, RuntimeError)
            return f'Paddle: {str(exc).strip().splitlines()[-1][:120]}'
        return None
    if importlib.util.find_spec('tensorrt') is None and tensorrt_version() is None:
        return 'no tensorrt wheel and no libnvinfer.so.10 on the system'
    return None


def _without_tensorrt(s: Setting, kind: str, folder: Path, mode: str, absence: Optional[str]) -> str:
    """``kind`` opened through TensorRT in another process where TensorRT cannot load: really (``absence``: why,
    nothing stood in) or stood in (its wheel made unimportable, Paddle's version call failing in its words):
    refused in one line, leaving nothing (a stand-in's onnxruntime may find a system TensorRT: said)."""
    cache = s.folder / f'trt-{kind}-none'
    verdict, _, words = _opened(_opener(s, kind, folder, cache, f'{"absent" if absence else "no-tensorrt"}/{mode}'))
    assert s.dry or verdict == 'refused' or kind == 'onnx' and not absence, f'{kind} without TensorRT: {words}'
    assert not _files(cache) or verdict == 'opened', f'{kind} refused without TensorRT left {sorted(_files(cache))}'
    how = ('the calls on the CPU' if s.dry else f'real: {absence}' if absence else
           "stood in: its wheel unimportable, Paddle's version call failing")
    why = f'; {words[:120]}' if verdict == 'refused' else '' if s.dry else '; a TensorRT outside the wheel was found'
    return f'without TensorRT {verdict} ({how}{why})'


def _tensorrt_case(s: Setting, kind: str, folder: Path) -> str:
    """One engine through TensorRT (``check_tensorrt``); where TensorRT is absent, its real refusal alone."""
    cache, engines, mode = s.folder / f'trt-{kind}', ENGINE_FILES[kind], 'cpu' if s.dry else s.device
    absence = None if s.dry else tensorrt_absence(kind)
    if absence:
        return f'{kind}: TensorRT absent, ' + _without_tensorrt(s, kind, folder, mode, absence)
    engine = exported_backend(ModelSpec(backend=kind, model_dir=str(folder), device=s.device, threads=2,
                                        tensorrt=not s.dry), str(cache / 'openvino-compiled'))
    engine.compile_ahead(2, mixed=True)            # the regions graph too where it mixes sizes (no TensorRT)
    problems = [] if s.dry else entry_problems(cache, engines)
    assert not problems, f'{kind}: after its open: ' + ', '.join(problems)
    built = _files(cache)
    for side in (s.size, 2 * s.size, 3 * s.size):
        batch = np.zeros((2, 3, side, side), np.float32)
        engine.run_numpy(batch, np.asarray([[side, side], [side // 2, side]], np.int64) if engine.mixes_sizes
                         else None)
    mixed = _mixed_sizes(engine, s.size)
    assert _files(cache) == built, f'{kind}: files written after its open: {sorted(set(_files(cache)) - set(built))}'
    second = _opened(_opener(s, kind, folder, cache, mode))
    assert second[:2] == ('opened', 0) and _files(cache) == built, f'{kind}: a second process: {second}'
    pair = [_opener(s, kind, folder, s.folder / f'trt-{kind}-pair', mode) for _ in range(2)]
    both = [_opened(process) for process in pair]
    assert [verdict for verdict, _, _ in both] == ['opened'] * 2 and sum(count for _, count, _ in both) == (
        0 if s.dry else 2 if engine.mixes_sizes else 1), f'{kind}: two processes at once: {both}'
    return (f'{kind}: {len(built)} files, none written by runs at 3 sizes nor by {mixed}, a second process built 0, '
            f'two at once built {sum(count for _, count, _ in both)}, '
            + _without_tensorrt(s, kind, folder, mode, None))


def check_tensorrt(s: Setting) -> str:
    """Each engine through TensorRT (``_tensorrt_cases``) with an engine cache: after the open (the regions graph
    too) its entries hold engine files and no temporary is left; runs at several sizes write nothing; a second
    process opens them without building; two processes at once build once; without TensorRT (its wheel not
    importable; Paddle's version call failing) the open is refused and leaves nothing. Dry run: the same calls
    on the CPU without TensorRT."""
    kinds = _tensorrt_cases(s)
    if not kinds:
        raise Skipped('no engine runs TensorRT here (onnxruntime without its provider, Paddle 3 .json exports)')
    folder = s.folder / 'trt-export'
    if not folder.is_dir():
        dygraph = DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=2)
        export(dygraph, 9, folder, fmt='both' if 'onnx' in kinds else 'paddle', check=False)
    return '; '.join(_tensorrt_case(s, kind, folder) for kind in kinds)


def check_export_without_tensorrt(s: Setting) -> str:
    """The shipped model exported, with its check (Paddle Inference opened), where Paddle cannot load TensorRT
    (``get_trt_runtime_version`` failing in Paddle's words, as on a GPU wheel without libnvinfer): really where
    it fails here (``tensorrt_absence``), else stood in."""
    import paddle.inference
    real, absence = paddle.inference.get_trt_runtime_version, tensorrt_absence('inference')
    if not absence:
        paddle.inference.get_trt_runtime_version = lambda: (_ for _ in ()).throw(RuntimeError(NO_TENSORRT))
    try:
        dygraph = DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=2)
        lines = export(dygraph, 9, s.folder / 'export-no-trt', fmt='paddle', check=True)
    finally:
        paddle.inference.get_trt_runtime_version = real
    how = f'real: {absence}' if absence else "stood in: Paddle's version call made to fail (it loads TensorRT here)"
    return f'exported and checked ({len(lines)} lines), TensorRT absent ({how})'


def _tf32_state() -> dict:
    """Paddle's TF32 switches and flags as they are now (those this build has)."""
    state = {name: getattr(paddle.base.core, f'get_{name}_switch')() for name in ('cublas', 'cudnn')
             if hasattr(paddle.base.core, f'get_{name}_switch')}
    for flag in ('FLAGS_cublas_allow_tf32', 'FLAGS_cudnn_allow_tf32'):
        try:
            state[flag] = paddle.get_flags([flag])[flag]
        except ValueError:
            pass
    return state


def check_tf32(s: Setting) -> str:
    """``tf32_off`` (the float32 comparisons) turns TF32 off inside and puts Paddle's switches and flags back."""
    before = _tf32_state()
    with tf32_off('cublas', 'cudnn'):
        inside = _tf32_state()
        with paddle_on(s.device, 2):
            paddle.matmul(paddle.rand([64, 64]), paddle.rand([64, 64])).numpy()
    after = _tf32_state()
    assert not any(inside.values()), f'inside tf32_off: {inside}'
    assert after == before, f'before {before}, after {after}'
    return f'off inside, restored after: {before}'


def cudnn_libraries(maps: str) -> set:
    """The cuDNN main libraries (libcudnn.so.N, not its sub-libraries) mapped, from /proc/<pid>/maps text."""
    return {os.path.realpath(line.split()[-1]) for line in maps.splitlines()
            if line.split() and os.path.basename(line.split()[-1]).startswith('libcudnn.so')}


def cudnn_majors(mapped: set) -> dict:
    """{cuDNN major ('8', '9'): the sorted paths of its main libraries mapped} (``cudnn_libraries``' set)."""
    majors: dict = {}
    for path in sorted(mapped):
        majors.setdefault(os.path.basename(path).split('.so.', 1)[-1].split('.')[0], []).append(path)
    return majors


def check_cudnn(s: Setting) -> str:
    """After dygraph and onnxruntime (where installed) ran on the device, one libcudnn mapped per cuDNN major: two
    majors are by design where Paddle and onnxruntime each bring their own (README's Paddle 2.6 with cuDNN 8 and
    onnxruntime-gpu's cuDNN 9), two paths of one major are two copies of one soname, one of them unused."""
    DygraphBackend(get_config(9), SHIPPED_WEIGHTS, s.device, threads=2).run_numpy(np.zeros((1, 3, 64, 64), np.float32))
    if not s.dry and importlib.util.find_spec('onnxruntime'):
        import onnxruntime
        if hasattr(onnxruntime, 'preload_dlls'):
            onnxruntime.preload_dlls()
    try:
        majors = cudnn_majors(cudnn_libraries(Path('/proc/self/maps').read_text()))
    except OSError as exc:
        raise Skipped(f'no /proc/self/maps ({exc})')
    twice = {major: paths for major, paths in majors.items() if len(paths) > 1}
    assert not twice, '; '.join(f'cuDNN {major} mapped from {len(paths)} paths: {paths}'
                                for major, paths in twice.items())
    return (', '.join(f'cuDNN {major}: {paths[0]}' for major, paths in majors.items())
            or 'no libcudnn mapped (a CPU run)')


CHECKS = (('environment', check_environment), ('inference', check_inference), ('postprocess', check_postprocess),
          ('engines', check_engines), ('memory', check_memory), ('dcn', check_dcn), ('train', check_train),
          ('sync-bn', check_sync_bn), ('ema', check_ema), ('eval', check_eval),
          ('export-no-trt', check_export_without_tensorrt), ('tensorrt', check_tensorrt), ('tf32', check_tf32),
          ('cudnn', check_cudnn), ('two-gpu', check_two_gpus))


def run_checks(s: Setting, names=None, out=print) -> int:
    """Run the checks (``names``: some of ``CHECKS``, default all), one line each -> the number that failed."""
    failed = 0
    for name, check in CHECKS:
        if names and name not in names:
            continue
        began = time.perf_counter()
        try:
            verdict, text = 'PASS', check(s)
        except Skipped as exc:
            verdict, text = 'SKIP', str(exc)
        except Exception as exc:  # every failure is one FAIL line, and the other checks still run
            verdict, text = 'FAIL', f'{type(exc).__name__}: {exc}'.strip()
        failed += verdict == 'FAIL'
        out(f'{verdict} {name}: {text} ({time.perf_counter() - began:.0f} s)')
    return failed


@command
def main(argv=None) -> int:
    parser = make_parser("Check the toolkit on this machine's GPU: one PASS/FAIL line per check.", configs=False,
                         notes=__doc__)
    parser.add_argument('--dry-run', action='store_true', help='the same calls on the CPU (what CI runs)')
    parser.add_argument('--steps', type=int, default=None,
                        help=f'training steps (default 30; dry run {FALLING_STEPS}; fewer than {FALLING_STEPS} do not '
                             'judge whether the loss falls)')
    parser.add_argument('--only', nargs='+', choices=[name for name, _ in CHECKS], help='run only these checks')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as folder:
        setting = Setting('cpu', args.steps or FALLING_STEPS, 64, 3, 2, Path(folder)) if args.dry_run else \
            Setting('gpu', args.steps or 30, 256, 24, 5, Path(folder))
        logging.getLogger(LIBRARY_LOGGER).setLevel(logging.WARNING)   # the training runs' start-up lines left out
        failed = run_checks(setting, args.only)
    print(f'{failed} check(s) failed' if failed else 'all checks passed')
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
