"""Speed of this toolkit on this machine, against PaddleDetection's SOLOv2, in one run.

    python tools/dev/benchmark.py --configs 1 2            # writes output/benchmark.md and .png
    python tools/dev/benchmark.py --configs 1 2 --out docs/benchmark   # the published report
    python tools/dev/benchmark.py --postprocess --configs 1 2   # post-processing section only
    python tools/dev/benchmark.py --train --configs 1 2         # training section only
    python tools/dev/benchmark.py --pictures                    # small and large pictures section only
    python tools/dev/benchmark.py --mixed                       # INT8 on mixed sizes section only
    python tools/dev/benchmark.py --table --configs 1 2         # the table against PaddleDetection only

For each config, both implementations get the same weights (a random-weight
PaddleDetection model, saved and converted with the rules of convert/ppdet2paddle.py, convert.ppdet_names) and the
same images, and the same number of CPU threads. Measured:
- model-only latency (network forward, median of runs);
- end-to-end images/s of each tool's default picture command on a folder: ours is
  ``demo.py``'s own work (``demo_outputs.run_images``: read, preprocess, network, post-process,
  paste, draw, write the picture) in the runner (model/inference/pipeline.py), for
  every backend asked for (``--backends``; ``auto`` is the demo's default);
  PaddleDetection's is what its tools/infer.py does per picture, one at a time: its
  preprocessing operators, network and post-processing (get_seg), its results (an RLE of
  every mask), its drawing and the saved picture;
- the share of wall time our model stage is busy, Matrix NMS time for 100 and 500
  candidates, the network's FLOPs and the fraction of this machine's best matmul
  GFLOP/s (numpy, Paddle, OpenVINO; bf16 through OpenVINO) that the network reaches;
- with ``--postprocess`` instead: everything after the network (post-processing, paste,
  RLE + JSON, drawing) for 100 instances on one ``--size`` picture, on one pinned core
  (tools/dev/postprocess_speed.py), in a section of the report that full runs keep;
- with ``--train`` instead: training against PaddleDetection's on the same batch, data,
  weights and threads (tools/dev/train_speed.py): the model step alone, interleaved, and the
  whole loop with data loading and the peak memory of each, in another section that full
  runs keep;
- in full runs and with ``--pictures`` alone: ``demo.py``'s default run with the shipped model on
  folders of 640x640 and 4000x3000 pictures with 10 and 100 shapes, pictures/s and peak RSS
  (tools/dev/picture_speed.py);
- in full runs and with ``--mixed`` alone: OpenVINO f32, INT8 and onnxruntime on the sample
  pictures and on ``--mixed-count`` copies of them at random sizes, a first run each (compiles
  counted; tools/dev/mixed_speed.py), with the shipped model exported and quantized here.
PaddleDetection is a test/benchmark dependency only (``pip install --no-deps
paddledet==2.6.0``, see README); the product never imports it.
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from solov2.config import CONFIGS, with_overrides  # noqa: E402
from solov2.config.sidecar import resolve_config  # noqa: E402
from solov2.convert.common import convert_file  # noqa: E402
from solov2.convert.families import CONVERTERS  # noqa: E402
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS  # noqa: E402
from solov2.data.transforms import read_image  # noqa: E402
from solov2.model.cpu_math import MKL_CPU_TYPE  # noqa: E402
from solov2.model.inference.auto_backend import cached_backend  # noqa: E402
from solov2.model.inference.backend import BackendError  # noqa: E402
from solov2.model.inference.dygraph_backend import DygraphBackend  # noqa: E402
from solov2.model.inference.export import export  # noqa: E402
from solov2.model.inference.openvino_backend import has_bf16, import_openvino  # noqa: E402
from solov2.model.inference.pipeline import Predictor  # noqa: E402
from solov2.model.inference.postprocess import matrix_nms  # noqa: E402
from solov2.model.inference.quantize import quantize_model  # noqa: E402
from solov2.model.inference.spec import ModelSpec, exported_backend  # noqa: E402
from solov2.model.runtime import cpu_threads  # noqa: E402
from solov2.tools.cli import command, make_parser, tune_for  # noqa: E402
from solov2.tools.demo_outputs import DrawOptions, run_images  # noqa: E402
from solov2.tools.dev import mixed_speed, picture_speed, postprocess_speed, report, train_speed  # noqa: E402

# our config -> PaddleDetection architecture built in tools/dev/reference/ppdet_ref.py
REFERENCE_FAMILY = {0: 'r50_fpn', 1: 'light448_r50', 2: 'light_r50_vd_dcn_v05',
                    3: 'r50_enhance', 4: 'r101_vd_dcn'}


def make_images(folder: Path, count: int, size: int) -> list:
    """``count`` synthetic shapes images of size x size px (tools/make_shapes_dataset.py)."""
    from solov2.tools.make_shapes_dataset import generate_split
    generate_split(folder, 'val', count, size, seed=7)
    return sorted((folder / 'val').glob('*.jpg'))


def reference_and_weights(number: int, folder: Path):
    """(PaddleDetection model in eval mode, path of the same weights converted for us)."""
    from solov2.tools.dev.reference import ppdet_ref
    family = REFERENCE_FAMILY[number]
    reference = ppdet_ref.build(family, seed=0)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    if family == 'light_r50_vd_dcn_v05':   # PaddleDetection 0.5 head DCN has no bias
        for name, param in reference.state_dict().items():
            if name.startswith('solov2_head.') and name.endswith('conv_dcn.bias'):
                param.set_value(paddle.zeros_like(param))
                state.pop(name)
    source, path = folder / f'ppdet_{family}.pdparams', folder / f'config{number}.pdparams'
    paddle.save(state, str(source))
    convert_file(CONVERTERS['ppdet'], str(source), str(path), number)       # as convert/ppdet2paddle.py converts
    return reference, str(path)


def bf16_verdict() -> str:
    """OpenVINO's verdict on bf16 on this CPU: 'yes', 'no' or 'OpenVINO not installed'."""
    try:
        return 'yes' if has_bf16(import_openvino().Core()) else 'no'
    except BackendError:
        return 'OpenVINO not installed'


def median_seconds(function, runs: int) -> float:
    function()                                  # warm-up
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def network_gflop(model, images: paddle.Tensor) -> float:
    """Multiply-adds of every (deformable) conv in one forward, as GFLOP (2 per MAC)."""
    from solov2.model.layers import DeformConv
    macs = []

    def hook(layer, inputs, output):
        weight = layer.weight
        macs.append(int(np.prod(output.shape)) * int(np.prod(weight.shape[1:])))

    handles = [layer.register_forward_post_hook(hook) for layer in model.sublayers()
               if isinstance(layer, (paddle.nn.Conv2D, DeformConv))]
    with paddle.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return 2 * sum(macs) / 1e9


def _openvino_matmul_seconds(a: np.ndarray, b: np.ndarray, precision: str, threads: int) -> float:
    """Median seconds of ``a @ b`` compiled by OpenVINO on the CPU in ``precision``."""
    ov = import_openvino()
    import openvino.opset13 as ops
    param = ops.parameter(list(a.shape), np.float32)
    model = ov.Model([ops.matmul(param, ops.constant(b), False, False)], [param])
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': precision, 'PERFORMANCE_HINT':
                                                      'LATENCY', 'INFERENCE_NUM_THREADS': cpu_threads(threads)})
    request = compiled.create_infer_request()
    return median_seconds(lambda: request.infer({0: a}), 5)


def matmul_rates(threads: int, size: int = 2048) -> dict:
    """This machine's best float32 and bf16 matmul GFLOP/s on size x size matrices:
    {'f32': the best of numpy (its BLAS), Paddle and OpenVINO f32, 'bf16': OpenVINO bf16,
    or None where OpenVINO is missing or the CPU has no bf16}."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), np.float32), rng.standard_normal((size, size), np.float32)
    pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)
    seconds = [median_seconds(lambda: a @ b, 5), median_seconds(lambda: float(paddle.matmul(pa, pb)[0, 0]), 5)]
    bf16 = None
    try:
        seconds.append(_openvino_matmul_seconds(a, b, 'f32', threads))
        if has_bf16(import_openvino().Core()):
            bf16 = 2 * size ** 3 / _openvino_matmul_seconds(a, b, 'bf16', threads) / 1e9
    except BackendError:
        pass
    return {'f32': 2 * size ** 3 / min(seconds) / 1e9, 'bf16': bf16}


def matrix_nms_seconds(count: int, mask_hw) -> float:
    rng = np.random.default_rng(0)
    masks = rng.random((count, mask_hw[0] * mask_hw[1])) > 0.7
    labels = rng.integers(0, 8, count)
    scores = np.sort(rng.random(count).astype('float32'))[::-1].copy()
    areas = masks.sum(axis=1)
    return median_seconds(lambda: matrix_nms(masks, labels, scores, areas), 5)


DEMO_DRAW_THRESHOLD = 0.3    # demo.py --draw-threshold default
PPDET_DRAW_THRESHOLD = 0.5   # PaddleDetection tools/infer.py --draw_threshold default


def ours_end_to_end(backend, paths, folder: Path) -> tuple:
    """(images/s, model-busy share) of ``demo.py``'s own work on a folder (its
    ``run_images`` in the runner, default options: pictures drawn and written, no JSON);
    ``backend`` is a ``DygraphBackend`` or an exported backend."""
    out = folder / 'ours_pictures'
    targets = {path: out / path.name for path in paths}
    stats = run_images(Predictor(backend), targets, DrawOptions(DEMO_DRAW_THRESHOLD, warmup=1), [])
    return stats.images_per_second, stats.busy_fraction


def ppdet_end_to_end(reference, paths, cfg, folder: Path) -> float:
    """images/s of PaddleDetection's ``tools/infer.py`` work per picture, one at a time:
    its preprocessing operators, network and post-processing (get_seg), its results (an
    RLE of every mask, ``get_infer_results``), its drawing (``visualize_results``, default
    threshold) and the picture saved as it saves it."""
    from PIL import Image
    from ppdet.data.transform.batch_operators import PadBatch
    from ppdet.data.transform.operators import Decode, NormalizeImage, Permute, Resize
    from ppdet.metrics import get_infer_results
    from ppdet.utils.visualizer import visualize_results

    from solov2.tools.dev.reference import ppdet_ref
    ppdet_ref.patch_postprocess()
    ops = [Decode(), Resize(target_size=[cfg.test_short, cfg.test_max], keep_ratio=True, interp=1),
           NormalizeImage(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], is_scale=True),
           Permute()]
    pad = PadBatch(pad_to_stride=32)
    category_ids = {label: label + 1 for label in range(len(cfg.class_names))}
    category_names = {label + 1: name for label, name in enumerate(cfg.class_names)}
    out = folder / 'ppdet_pictures'
    out.mkdir(exist_ok=True)

    def one(image_id, path):
        sample = {'im_file': str(path)}
        for op in ops:
            sample = op(sample)
        sample = pad([sample])[0]
        inputs = {'image': paddle.to_tensor(sample['image'][None]),
                  'im_shape': paddle.to_tensor(sample['im_shape'][None]),
                  'scale_factor': paddle.to_tensor(sample['scale_factor'][None])}
        with paddle.no_grad():
            outs = {key: value.numpy() for key, value in reference(inputs).items()}
        outs['im_id'] = np.array([[image_id]])
        segm = get_infer_results(outs, category_ids).get('segm')
        picture = Image.open(path).convert('RGB')
        picture = visualize_results(picture, None, None, segm, None, None, image_id, category_names,
                                    PPDET_DRAW_THRESHOLD)
        picture.save(out / path.name, quality=95)

    one(0, paths[0])
    began = time.perf_counter()
    for image_id, path in enumerate(paths):
        one(image_id, path)
    return len(paths) / (time.perf_counter() - began)


def ppdet_network(reference, images: paddle.Tensor):
    feats = reference.neck(reference.backbone({'image': images}))
    reference.mask_head(feats)
    return reference.solov2_head(feats)


BACKENDS = ('dygraph', 'inference', 'inference-onednn', 'onnx', 'openvino-f32', 'openvino-bf16',
            'openvino-int8', 'auto')
# the exported ones: name -> (spec.exported_backend's kind, precision, mkldnn)
EXPORTED = {'inference': ('inference', 'f32', False), 'inference-onednn': ('inference', 'f32', True),
            'onnx': ('onnx', 'f32', False), 'openvino-f32': ('openvino', 'f32', False),
            'openvino-bf16': ('openvino', 'bf16', False), 'openvino-int8': ('openvino', 'int8', False)}
CALIBRATION_IMAGES = 16


def our_exported(name: str, number: int, cfg, weights: str, folder: Path, threads: int):
    """The exported backend ``name`` of ``EXPORTED`` (exporting once per config; int8 quantized once
    on CALIBRATION_IMAGES other synthetic images). None when this CPU cannot run it."""
    export_dir = folder / f'export{number}'
    if not (export_dir / 'infer_cfg.json').is_file():
        export(DygraphBackend(cfg, weights, 'cpu'), number, export_dir, fmt='both', check=False)
    kind, precision, mkldnn = EXPORTED[name]
    if precision == 'bf16' and not has_bf16(import_openvino().Core()):
        print(f'{name}: skipped, this CPU has no bf16 in OpenVINO', flush=True)
        return None
    if precision == 'int8':
        export_dir = int8_folder(export_dir, folder, number)
    return exported_backend(ModelSpec(backend=kind, model_dir=str(export_dir), threads=threads, precision=precision,
                                      mkldnn=mkldnn))


def int8_folder(export_dir: Path, folder: Path, number: int) -> Path:
    """``export_dir`` quantized by tools/quantize.py's code (once per config)."""
    out = folder / f'int8_{number}'
    if not out.is_dir():
        from solov2.tools.make_shapes_dataset import generate_split
        images = folder / 'calibration'
        if not images.is_dir():
            generate_split(images, 'train', CALIBRATION_IMAGES, 448, seed=11)
        quantize_model(ModelSpec(backend='openvino', model_dir=str(export_dir)),
                       sorted((images / 'train').glob('*.jpg')), out)
    return out


def auto_backend(number: int, cfg, weights: str, folder: Path, threads: int, overrides) -> tuple:
    """(engine, backend, seconds of the first run's export) of ``--backend auto`` with its
    cache in ``folder``: exported once (the engines timed), then loaded from the cache as a
    second run would."""
    cache = str(folder / 'auto_cache')
    began = time.perf_counter()
    spec = ModelSpec(weights, threads=threads, overrides=overrides)
    cached_backend(spec, number, cfg, cache_dir=cache)
    export_s = time.perf_counter() - began
    return cached_backend(spec, number, cfg, cache_dir=cache) + (export_s,)


def network_seconds(kind: str, backend, batch: np.ndarray, runs: int) -> float:
    """Median seconds of the network alone on one preprocessed ``batch`` [1, 3, H, W]."""
    if kind == 'dygraph':
        images = paddle.to_tensor(batch)
        with paddle.no_grad():
            return median_seconds(lambda: backend.model(images)['mask_feat'].numpy(), runs)
    return median_seconds(lambda: backend.run(batch), runs)


def measure_backend(kind: str, number: int, cfg, weights: str, predictor, folder: Path, threads: int,
                    overrides, batch: np.ndarray, paths, runs: int):
    """{'backend', 'model_s', 'fps', 'busy'} of one of our backends (None: not on this CPU)."""
    label = kind
    if kind == 'auto':
        engine, backend, export_s = auto_backend(number, cfg, weights, folder, threads, overrides)
        label = f'auto = {engine} (first run exports: {export_s:.0f} s)'
    else:
        backend = predictor if kind == 'dygraph' else our_exported(kind, number, cfg, weights, folder, threads)
    if backend is None:
        return None
    model_s = network_seconds(kind, backend, batch, runs)
    fps, busy = ours_end_to_end(backend, paths, folder)
    return {'backend': label, 'model_s': model_s, 'fps': fps, 'busy': busy}


def benchmark_config(number: int, paths, runs: int, folder: Path, rates: dict,
                     threads: int, backends, overrides=()) -> dict:
    """Every measurement of one config: a summary dict with one entry per backend."""
    cfg = with_overrides(CONFIGS[number], overrides)
    reference, weights = reference_and_weights(number, folder)
    predictor = DygraphBackend(cfg, weights, 'cpu', threads=threads)
    inputs, meta = Predictor(predictor).prepare(read_image(paths[0]))
    batch = inputs[None]
    with paddle.no_grad():
        ref_model = median_seconds(lambda: ppdet_network(reference, paddle.to_tensor(batch))[0][0].numpy(), runs)
    ref_fps = ppdet_end_to_end(reference, paths, cfg, folder)
    mask_hw = (meta.padded_hw[0] // 4, meta.padded_hw[1] // 4)
    summary = {'config': number, 'name': cfg.__name__, 'input': f'{meta.padded_hw[0]}x{meta.padded_hw[1]}',
               'gflop': network_gflop(predictor.model, paddle.to_tensor(batch)),
               'machine_gflops': rates['f32'], 'ppdet_model_s': ref_model, 'ppdet_fps': ref_fps,
               'nms100_ms': 1e3 * matrix_nms_seconds(100, mask_hw),
               'nms500_ms': 1e3 * matrix_nms_seconds(500, mask_hw), 'backends': []}
    for kind in backends:
        row = measure_backend(kind, number, cfg, weights, predictor, folder, threads, overrides, batch, paths, runs)
        if row is not None:
            peak = rates['bf16'] if kind == 'openvino-bf16' and rates['bf16'] else rates['f32']
            row.update(speedup=row['fps'] / ref_fps, machine_share=summary['gflop'] / row['model_s'] / peak)
            summary['backends'].append(row)
            print(format_backend(summary, row), flush=True)
    print(format_backend(summary, None), flush=True)
    return summary


HEADER = ('| config | input | implementation | network s | end-to-end img/s | vs PaddleDetection | '
          'model busy | share of matmul peak |\n|---|---|---|---|---|---|---|---|')


def format_backend(summary: dict, row) -> str:
    """One table row: a backend of ours, or PaddleDetection when ``row`` is None."""
    head = f"| {summary['config']} {summary['name']} | {summary['input']} |"
    if row is None:
        share = summary['gflop'] / summary['ppdet_model_s'] / summary['machine_gflops']
        return (f"{head} PaddleDetection 2.6 (dygraph) | {summary['ppdet_model_s']:.2f} | "
                f"{summary['ppdet_fps']:.2f} | 1.00x | - | {100 * share:.0f}% |")
    return (f"{head} ours, {row['backend']} | {row['model_s']:.2f} | {row['fps']:.2f} | "
            f"{row['speedup']:.2f}x | {100 * row['busy']:.0f}% | {100 * row['machine_share']:.0f}% |")


def config_facts(summary: dict) -> str:
    return (f"| {summary['config']} {summary['name']} | {summary['input']} | {summary['gflop']:.0f} | "
            f"{summary['nms100_ms']:.1f} / {summary['nms500_ms']:.1f} | "
            f"{summary['nms500_ms'] / 1e3 / summary['backends'][0]['model_s']:.3f} |")


# the sections other runs write (--postprocess, --train, --pictures, --mixed), in the report's order
SECTIONS = (postprocess_speed.MARKERS, train_speed.MARKERS, picture_speed.MARKERS, mixed_speed.MARKERS)


def kept_sections(old: str) -> str:
    """The sections of ``SECTIONS`` an older report holds, each after a blank line, which a full run keeps."""
    kept = [report.existing_section(old, markers) for markers in SECTIONS]
    return ''.join('\n' + section for section in kept if section)


def write_report(summaries, out: Path, machine: str, count: int, size: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ['# Benchmark', '', f'Machine: {machine}.', '',
             f'{count} synthetic {size}x{size} images (tools/make_shapes_dataset.py), the same '
             'random weights (a PaddleDetection model, saved and converted) and the same threads '
             f'for every implementation; command: `{this_command()}`.', '',
             'Implementations: "dygraph" is the Paddle model (`demo.py --backend dygraph`); '
             '"inference", "inference-onednn", "onnx" and "openvino-f32|bf16|int8" are the same '
             'weights exported with `tools/export_model.py` and run by Paddle Inference (without / '
             'with oneDNN), onnxruntime and OpenVINO (`demo.py --backend inference [--mkldnn] | onnx '
             '| openvino --precision P`; int8 quantized by `tools/quantize.py` code on '
             f'{CALIBRATION_IMAGES} other synthetic images; bf16 only where the CPU has it); "auto" is '
             "`demo.py`'s default: OpenVINO f32 or onnxruntime, whichever was faster when it exported "
             "(both timed then), loaded from its export cache as from the second run "
             "on (the engine it chose and the first run's export time are in its name). The machine is "
             'shared with other work, so figures are noisy: compare ratios within one run. End to end is what each '
             "tool's default picture command does with a folder. Ours: `demo.py`'s own stages in its "
             'pipeline (reading and preprocessing, then post-processing, mask pasting, drawing '
             'and writing the picture, in worker threads; no JSON, as without --save-json). '
             "PaddleDetection: what its `tools/infer.py` does per picture, one at a time: its "
             'preprocessing operators, network and post-processing (`get_seg`), its results '
             '(`get_infer_results`: an RLE of every mask), its drawing (`visualize_results`) and the '
             'picture saved. "network s" is the network alone; "model busy" is the share of wall '
             'time our network stage was running; "share of matmul peak" is the network\'s GFLOP '
             "per second over this machine's best 2048x2048 matmul GFLOP/s (f32; bf16 for the bf16 "
             'row; int8 rows are measured against f32 and can pass 100%).',
             '', HEADER]
    for summary in summaries:
        lines += [format_backend(summary, row) for row in summary['backends']]
        lines.append(format_backend(summary, None))
    lines += ['', '| config | input | network GFLOP | Matrix NMS 100 / 500 candidates, ms | '
              'NMS 500 / dygraph network time |', '|---|---|---|---|---|']
    lines += [config_facts(summary) for summary in summaries]
    report = out.with_suffix('.md')
    report.write_text('\n'.join(lines) + '\n' + kept_sections(report.read_text() if report.is_file() else ''))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [row['backend'] for row in summaries[0]['backends']] + ['PaddleDetection']
    width = 0.8 / len(names)
    fig, axis = plt.subplots(figsize=(3 + 2.2 * len(summaries), 3.8))
    xs = np.arange(len(summaries))
    for index, name in enumerate(names):
        values = [s['ppdet_fps'] if name == 'PaddleDetection' else s['backends'][index]['fps']
                  for s in summaries]
        axis.bar(xs + (index - (len(names) - 1) / 2) * width, values, width,
                 label=name if name == 'PaddleDetection' else f'ours, {name}')
    axis.set_xticks(xs, [f"config {s['config']}\n{s['input']}" for s in summaries])
    axis.set(ylabel='end-to-end images/s', title='SOLOv2 inference on this CPU (higher is better)')
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix('.png'), dpi=90)
    plt.close(fig)


def postprocess_report(args) -> int:
    """``--postprocess``: time the post-processing of each config on one core (this process
    stays pinned to it) and write the section into the report."""
    postprocess_speed.one_core()
    machine = report.machine_line(1)
    rows = []
    for number in args.configs:
        result = postprocess_speed.postprocess_seconds(with_overrides(CONFIGS[number], args.opt), args.size)
        rows.append((number, args.size, result))
        print(f"config {number}, {args.size}x{args.size}, {result['instances']} instances from "
              f"{result['candidates']} candidates: {1e3 * result['total']:.1f} ms on one core ({machine})", flush=True)
    section = postprocess_speed.report_section(rows, machine, this_command())
    print(f'wrote {report.write_section(args.out, section, postprocess_speed.MARKERS)}')
    return 0


def train_report(args) -> int:
    """``--train``: time the training of each config against PaddleDetection's (tools/dev/train_speed.py)
    and write the section into the report."""
    bench = train_speed.TrainBench(args.size, args.batch, args.steps, args.threads, tuple(args.opt), args.processes)
    tune_for('cpu', args.threads, helper_threads=0)      # as train.py tunes its process
    machine = report.machine_line(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = train_speed.shapes_set(folder / 'shapes', bench)
        print(f'{machine}\n{train_speed.HEADER}', flush=True)
        for number in args.configs:
            reference, weights = reference_and_weights(number, folder)
            rows.append(train_speed.measure(number, REFERENCE_FAMILY[number], reference, weights, bench, root, folder))
            print(train_speed.format_row(rows[-1]), flush=True)
    section = train_speed.report_section(rows, bench, machine, this_command())
    print(f'wrote {report.write_section(args.out, section, train_speed.MARKERS)}')
    return 0


def pictures_report(args, folder: Path) -> None:
    """Small and large pictures, few and many objects (tools/dev/picture_speed.py): the section in the report."""
    cache = folder / 'auto_cache'
    number, cfg, weights = shipped_model()
    engine, _ = cached_backend(ModelSpec(weights, threads=args.threads), number, cfg, cache_dir=str(cache))  # exported
    print(f'pictures: demo.py --backend auto = {engine}\n{picture_speed.HEADER}', flush=True)
    rows = picture_speed.measure(folder / 'pictures', args.pictures_count, args.threads, str(cache))
    section = picture_speed.report_section(rows, report.machine_line(args.threads), this_command())
    print(f'wrote {report.write_section(args.out, section, picture_speed.MARKERS)}')


def shipped_model() -> tuple:
    """(config number, cfg, weights) of the shipped model."""
    return (*resolve_config(SHIPPED_WEIGHTS, None, ()), SHIPPED_WEIGHTS)


def mixed_report(args, folder: Path) -> None:
    """OpenVINO f32, INT8 and onnxruntime on the sample pictures and on ``--mixed-count`` random sizes of
    them, the shipped model exported and quantized here, one first run each (tools/dev/mixed_speed.py)."""
    number, cfg, weights = shipped_model()
    export_dir = folder / 'shapes_export'
    export(DygraphBackend(cfg, weights, 'cpu'), number, export_dir, fmt='onnx', check=False)
    dirs = {'f32': str(export_dir), 'int8': str(int8_folder(export_dir, folder, number))}
    folders = mixed_speed.mixed_folders(SAMPLE_IMAGES, args.mixed_count, folder / 'mixed', 'images/')
    variants = ['f32', 'int8', 'onnx']
    results = mixed_speed.measure(folders, dirs, variants, 1, args.threads, folder)
    section = mixed_speed.report_section(mixed_speed.medians(results, variants), variants,
                                         report.machine_line(args.threads), this_command())
    print(f'wrote {report.write_section(args.out, section, mixed_speed.MARKERS)}')


def this_command() -> str:
    return report.command_line('tools/dev/benchmark.py', sys.argv[1:])


def parse_args(argv):
    parser = make_parser(__doc__.split('\n')[0], configs=False)
    parser.add_argument('--configs', type=int, nargs='+', default=[1, 2],
                        help=f'configs to measure (with a PaddleDetection counterpart: {sorted(REFERENCE_FAMILY)})')
    parser.add_argument('--backends', nargs='+', choices=BACKENDS, default=list(BACKENDS),
                        help='our implementations to measure (default: all)')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--size', type=int, default=None,
                        help='side of the square test images (default 640; 448 with --train)')
    parser.add_argument('--runs', type=int, default=3, help='network-only timing runs')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads for all (default: every core)')
    parser.add_argument('--out', default='output/benchmark',
                        help='report path without suffix (default output/benchmark; the published report is '
                             '--out docs/benchmark)')
    parser.add_argument('--opt', nargs='+', default=[], metavar='NAME=VALUE',
                        help='config overrides for every config, e.g. test_short=320 test_max=320')
    only = parser.add_mutually_exclusive_group()
    only.add_argument('--postprocess', action='store_true',
                      help='only time everything after the network on one core (100 instances on a '
                           '--size picture) and update that section of the report')
    only.add_argument('--train', action='store_true',
                      help='only time training against PaddleDetection (model step and whole loop, peak '
                           'memory) on --size pictures and update that section of the report')
    only.add_argument('--table', action='store_true',
                      help='only the end-to-end table against PaddleDetection (and its plot); the other sections '
                           'of the report are kept')
    only.add_argument('--pictures', action='store_true',
                      help='only time the demo on 640x640 and 4000x3000 pictures with 10 and 100 shapes '
                           '(pictures/s, peak RSS) and update that section of the report')
    only.add_argument('--mixed', action='store_true',
                      help='only time OpenVINO f32, INT8 and onnxruntime on the sample pictures and on pictures '
                           'of random sizes (first runs) and update that section of the report')
    parser.add_argument('--pictures-count', type=int, default=6, help='pictures in each folder of --pictures')
    parser.add_argument('--mixed-count', type=int, default=50, help='pictures of random sizes for --mixed')
    parser.add_argument('--batch', type=int, default=2, help='--train: images per step')
    parser.add_argument('--steps', type=int, default=3,
                        help='--train: timed model steps of each after a warm-up, and timed iterations of the '
                             'whole loop after its first')
    parser.add_argument('--processes', type=int, default=0, metavar='P',
                        help='--train: also time our whole loop as P data-parallel processes '
                             '(paddle.distributed.launch; --batch split over them); default: not')
    args = parser.parse_args(argv)
    args.size = args.size or (448 if args.train else 640)
    if min(args.size, args.batch, args.steps, args.runs, args.pictures_count) < 1 or args.mixed_count < 0:
        parser.error('--size, --batch, --steps, --runs and --pictures-count must be at least 1, --mixed-count 0')
    if args.processes and (args.processes < 2 or args.batch % args.processes):
        parser.error(f'--processes must be at least 2 and divide --batch {args.batch}')
    unknown = [n for n in args.configs if n not in REFERENCE_FAMILY]
    if unknown and not (args.postprocess or args.pictures or args.mixed):
        parser.error(f'no PaddleDetection counterpart for configs {unknown}')
    return args


@command
def main(argv) -> int:
    args = parse_args(argv)
    if args.postprocess:
        return postprocess_report(args)
    if args.train:
        return train_report(args)
    tune_for('cpu', args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if not (args.pictures or args.mixed):
            main_report(args, Path(tmp))
        if not (args.table or args.mixed):
            pictures_report(args, Path(tmp))
        if not (args.table or args.pictures):
            mixed_report(args, Path(tmp))
    return 0


def main_report(args, folder: Path) -> None:
    """The end-to-end table of each config against PaddleDetection, with its plot."""
    paths = make_images(folder, args.num_images, args.size)
    rates = matmul_rates(args.threads)
    bf16 = f', bf16 {rates["bf16"]:.0f}' if rates['bf16'] else ''
    machine = (f'{report.machine_line(args.threads)}; best matmul f32 {rates["f32"]:.0f}{bf16} GFLOP/s, '
               f'OpenVINO bf16: {bf16_verdict()}, {MKL_CPU_TYPE}={os.environ.get(MKL_CPU_TYPE, "unset")}')
    print(f'{machine}\n{HEADER}', flush=True)
    summaries = [benchmark_config(n, paths, args.runs, folder, rates, args.threads, args.backends, args.opt)
                 for n in args.configs]
    write_report(summaries, Path(args.out), machine, args.num_images, args.size)
    print(f'wrote {args.out}.md and {args.out}.png')


if __name__ == '__main__':
    raise SystemExit(main())
