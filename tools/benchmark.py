"""Speed of this toolkit on this machine, against PaddleDetection's SOLOv2, in one run.

    python tools/benchmark.py --configs 1 2            # writes docs/benchmark.md and .png

For each config, both implementations get the same weights (a random-weight
PaddleDetection model, saved and converted with convert/ppdet2paddle.py rules) and the
same images, and the same number of CPU threads. Measured:
- model-only latency (network forward, median of runs);
- end-to-end images/s of demo-style inference: read, preprocess, network,
  post-process, masks at the original size, COCO RLE encoding and drawing. Ours runs
  pipelined (data/pipeline.py); PaddleDetection runs its own preprocessing operators,
  its own post-processing (get_seg) and then the same encoding/drawing, one image at a
  time, as its tools/infer.py does;
- the share of wall time our model stage is busy, Matrix NMS time for 100 and 500
  candidates, the network's FLOPs and the fraction of this machine's matmul GFLOP/s
  that the network reaches.
PaddleDetection is a test/benchmark dependency only (``pip install --no-deps
paddledet==2.6.0``, see README); the product never imports it.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from config import CONFIGS  # noqa: E402
from convert import ppdet2paddle  # noqa: E402
from convert.common import convert  # noqa: E402
from data.pipeline import run_pipeline  # noqa: E402
from data.results import encode_mask_rle  # noqa: E402
from data.transforms import read_image  # noqa: E402
from data.visualize import draw_instances  # noqa: E402
from model.build import build_model  # noqa: E402
from model.checkpoint import save_checkpoint  # noqa: E402
from model.postprocess import matrix_nms  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.runtime import setup  # noqa: E402

# our config -> PaddleDetection architecture built in tests/reference/ppdet_ref.py
REFERENCE_FAMILY = {0: 'r50_fpn', 1: 'light448_r50', 2: 'light_r50_vd_dcn_v05',
                    3: 'r50_enhance', 4: 'r101_vd_dcn'}


def make_images(folder: Path, count: int, size: int) -> list:
    """``count`` synthetic shapes images of size x size px (tools/make_shapes_dataset.py)."""
    from tools.make_shapes_dataset import generate_split
    generate_split(folder, 'bench', count, size, seed=7)
    return sorted((folder / 'bench').glob('*.jpg'))


def reference_and_weights(number: int, folder: Path):
    """(PaddleDetection model in eval mode, path of the same weights converted for us)."""
    from tests.reference import ppdet_ref
    family = REFERENCE_FAMILY[number]
    reference = ppdet_ref.build(family, seed=0)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    if family == 'light_r50_vd_dcn_v05':   # PaddleDetection 0.5 head DCN has no bias
        for name, param in reference.state_dict().items():
            if name.startswith('solov2_head.') and name.endswith('conv_dcn.bias'):
                param.set_value(paddle.zeros_like(param))
                state.pop(name)
    _, cfg, ours, _ = convert(state, ppdet2paddle.ppdet_name, [number],
                              ppdet2paddle.num_classes(state),
                              aliases=ppdet2paddle.duplicate_aliases(state))
    path = folder / f'config{number}.pdparams'
    save_checkpoint(ours, str(path), number, cfg.class_names, source=f'ppdet {family} random')
    return reference, str(path)


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
    from model.layers import DeformConv
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


def matmul_gflops(size: int = 2048) -> float:
    """float32 matmul throughput of this machine through Paddle (GFLOP/s)."""
    a, b = paddle.randn([size, size]), paddle.randn([size, size])
    seconds = median_seconds(lambda: float(paddle.matmul(a, b)[0, 0]), 5)
    return 2 * size ** 3 / seconds / 1e9


def matrix_nms_seconds(count: int, mask_hw) -> float:
    rng = np.random.default_rng(0)
    masks = paddle.to_tensor((rng.random((count, mask_hw[0] * mask_hw[1])) > 0.7).astype('float32'))
    labels = paddle.to_tensor(rng.integers(0, 8, count))
    scores = paddle.to_tensor(np.sort(rng.random(count).astype('float32'))[::-1].copy())
    areas = masks.sum(axis=1)
    return median_seconds(lambda: matrix_nms(masks, labels, scores, areas).numpy(), 5)


def finish_work(image, masks, labels, scores, class_names) -> None:
    """What a demo does with a result: encode every mask and draw the picture."""
    for mask in masks:
        encode_mask_rle(mask)
    draw_instances(image, masks, labels, scores, class_names)


def ours_end_to_end(predictor: Predictor, paths) -> tuple:
    """(images/s, model-busy share) of the pipelined demo path."""
    def load(path):
        image = read_image(path)
        return image, predictor.prepare(image)

    def model(loaded):
        return predictor.infer([loaded[1][0]])[0]

    def finish(path, loaded, detections):
        image, (_, meta) = loaded
        result = predictor.finish(detections, meta)
        finish_work(image, result.masks, result.labels, result.scores, predictor.class_names)

    model(load(paths[0]))
    stats = run_pipeline(paths, load, model, finish)
    return stats.images_per_second, stats.busy_fraction


def ppdet_end_to_end(reference, paths, cfg) -> float:
    """images/s of PaddleDetection's own preprocessing + model + get_seg, then the same
    encoding/drawing, sequentially."""
    from ppdet.data.transform.batch_operators import PadBatch
    from ppdet.data.transform.operators import Decode, NormalizeImage, Permute, Resize
    from tests.reference import ppdet_ref
    ppdet_ref.patch_postprocess()
    ops = [Decode(), Resize(target_size=[cfg.test_short, cfg.test_max], keep_ratio=True, interp=1),
           NormalizeImage(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], is_scale=True),
           Permute()]
    pad = PadBatch(pad_to_stride=32)

    def one(path):
        sample = {'im_file': str(path)}
        for op in ops:
            sample = op(sample)
        sample = pad([sample])[0]
        inputs = {'image': paddle.to_tensor(sample['image'][None]),
                  'im_shape': paddle.to_tensor(sample['im_shape'][None]),
                  'scale_factor': paddle.to_tensor(sample['scale_factor'][None])}
        with paddle.no_grad():
            out = reference(inputs)
        keep = out['cate_score'].numpy() >= cfg.update_threshold    # drop its padding entries
        image = read_image(path)
        finish_work(image, out['segm'].numpy()[keep].astype(bool), out['cate_label'].numpy()[keep],
                    out['cate_score'].numpy()[keep], cfg.class_names)

    one(paths[0])
    began = time.perf_counter()
    for path in paths:
        one(path)
    return len(paths) / (time.perf_counter() - began)


def ppdet_network(reference, images: paddle.Tensor):
    feats = reference.neck(reference.backbone({'image': images}))
    reference.mask_head(feats)
    return reference.solov2_head(feats)


def benchmark_config(number: int, paths, runs: int, folder: Path, machine_gflops: float) -> dict:
    cfg = CONFIGS[number]
    reference, weights = reference_and_weights(number, folder)
    predictor = Predictor(cfg, weights)
    inputs, meta = predictor.prepare(read_image(paths[0]))
    images = paddle.to_tensor(inputs[None])
    with paddle.no_grad():
        ours_model = median_seconds(lambda: predictor.model(images)['mask_feat'].numpy(), runs)
        ref_model = median_seconds(lambda: ppdet_network(reference, images)[0][0].numpy(), runs)
    gflop = network_gflop(predictor.model, images)
    ours_fps, busy = ours_end_to_end(predictor, paths)
    ref_fps = ppdet_end_to_end(reference, paths, cfg)
    mask_hw = (meta.padded_hw[0] // 4, meta.padded_hw[1] // 4)
    row = {'config': number, 'name': cfg.__name__, 'input': f'{meta.padded_hw[0]}x{meta.padded_hw[1]}',
           'gflop': gflop, 'ours_model_s': ours_model, 'ppdet_model_s': ref_model,
           'ours_fps': ours_fps, 'ppdet_fps': ref_fps, 'speedup': ours_fps / ref_fps,
           'busy': busy, 'nms100_ms': 1e3 * matrix_nms_seconds(100, mask_hw),
           'nms500_ms': 1e3 * matrix_nms_seconds(500, mask_hw),
           'machine_share': gflop / ours_model / machine_gflops}
    print(format_row(row), flush=True)
    return row


HEADER = ('| config | input | GFLOP | model s (ours / ppdet) | end-to-end img/s (ours / ppdet) | '
          'speed-up | model busy | Matrix NMS 100 / 500 ms | share of matmul peak |\n'
          '|---|---|---|---|---|---|---|---|---|')


def format_row(r: dict) -> str:
    return (f"| {r['config']} {r['name']} | {r['input']} | {r['gflop']:.0f} | "
            f"{r['ours_model_s']:.2f} / {r['ppdet_model_s']:.2f} | {r['ours_fps']:.2f} / {r['ppdet_fps']:.2f} | "
            f"{r['speedup']:.2f}x | {100 * r['busy']:.0f}% | {r['nms100_ms']:.0f} / {r['nms500_ms']:.0f} | "
            f"{100 * r['machine_share']:.0f}% |")


def write_report(rows, out: Path, machine: str, count: int, size: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ['# Benchmark', '', f'Machine: {machine}.', '',
             f'{count} synthetic {size}x{size} images, same weights and threads for both; '
             'command: `python tools/benchmark.py ' + ' '.join(sys.argv[1:]) + '`.', '', HEADER]
    lines += [format_row(r) for r in rows]
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axis = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 3.6))
    xs = np.arange(len(rows))
    axis.bar(xs - 0.2, [r['ours_fps'] for r in rows], 0.4, label='this toolkit')
    axis.bar(xs + 0.2, [r['ppdet_fps'] for r in rows], 0.4, label='PaddleDetection 2.6')
    axis.set_xticks(xs, [f"config {r['config']}" for r in rows])
    axis.set(ylabel='end-to-end images/s', title='SOLOv2 inference on this CPU')
    axis.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix('.png'), dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', type=int, nargs='+', default=[1, 2],
                        help=f'configs to measure (with a PaddleDetection counterpart: {sorted(REFERENCE_FAMILY)})')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--size', type=int, default=640, help='side of the square test images')
    parser.add_argument('--runs', type=int, default=3, help='model-only timing runs')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads for both (default: every core)')
    parser.add_argument('--out', default='docs/benchmark', help='report path without suffix')
    args = parser.parse_args(argv)
    unknown = [n for n in args.configs if n not in REFERENCE_FAMILY]
    if unknown:
        parser.error(f'no PaddleDetection counterpart for configs {unknown}')
    setup('cpu', args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.num_images, args.size)
        machine_gflops = matmul_gflops()
        machine = (f'{platform.machine()}, {os.cpu_count()} cores, {args.threads or os.cpu_count()} '
                   f'threads, Paddle {paddle.__version__}, matmul {machine_gflops:.0f} GFLOP/s')
        print(f'{machine}\n{HEADER}', flush=True)
        rows = [benchmark_config(n, paths, args.runs, Path(tmp), machine_gflops) for n in args.configs]
    write_report(rows, Path(args.out), machine, args.num_images, args.size)
    print(f'wrote {args.out}.md and {args.out}.png')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
