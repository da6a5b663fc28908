"""End-to-end speed of OpenVINO f32 and INT8 on folders of pictures of mixed sizes, in one run.

    python tools/mixed_speed.py --model-dir export/shapes --int8-dir export/shapes_int8 \\
        --images images --random 50 --rounds 3

Each round runs every variant once, in alternating order, each from a fresh backend (as a
new ``demo.py`` run: compiles included) through ``demo.py``'s own stages and pipeline
(read, preprocess, network, post-process, paste, draw, write the picture), on the
``--images`` folder and on ``--random`` copies of its pictures resized to random sizes
(each side 160-1600 px). Variants: ``f32`` (the default: dynamic shapes, a static model
from a size's second picture), ``f32-buckets`` (``--opt openvino_buckets=True``),
``int8`` (int8 with buckets) and ``int8-per-size`` (int8's default: one compile per input
size). Prints the median pictures/s of each and the compile seconds. With
``--compiled-cache``, OpenVINO keeps its compiled models in a fresh folder that one untimed
pass fills first: the rounds then measure a later run (``demo.py`` keeps them in
``$SOLOV2_CACHE/openvino-compiled``); without it every round compiles, as a first run.
"""
import contextlib
import io
import statistics
import tempfile
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from data.transforms import read_image  # noqa: E402
from model.inference.media import DrawOptions, ImageStages  # noqa: E402
from model.inference.openvino_backend import OpenVinoBackend  # noqa: E402
from model.inference.pipeline import run_pipeline  # noqa: E402
from model.runtime import setup  # noqa: E402
from tools.cli import make_parser, run_command  # noqa: E402

VARIANTS = {'f32': ('f32', False), 'f32-buckets': ('f32', True), 'int8': ('int8', True),
            'int8-per-size': ('int8', False)}
DRAW_THRESHOLD = 0.3       # demo.py --draw-threshold default


def random_sizes(sources, count: int, folder: Path, seed: int = 0) -> list:
    """``count`` pictures in ``folder``: the ``sources`` in turn, resized to random sizes."""
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = cv2.imread(str(sources[index % len(sources)]))
        width, height = (int(side) for side in rng.randint(160, 1601, 2))
        paths.append(folder / f'random_{index:03d}_{width}x{height}.jpg')
        cv2.imwrite(str(paths[-1]), cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return paths


def end_to_end(backend, paths, out: Path) -> float:
    """Pictures/s of ``demo.py``'s stages in its pipeline on ``paths`` (no warm-up)."""
    stages = ImageStages(backend, {path: out / path.name for path in paths}, DrawOptions(DRAW_THRESHOLD), [])
    with contextlib.redirect_stdout(io.StringIO()):
        return run_pipeline(paths, stages.load, stages.model, stages.finish).images_per_second


def measure(folders: dict, dirs: dict, variants, rounds: int, threads: int, out: Path, cache=None) -> dict:
    """{(folder, variant): ([pictures/s per round], [compile s per round])}; ``cache``: the
    compiled models' folder, filled by an untimed pass first (None: none)."""
    results = {(name, variant): ([], []) for name in folders for variant in variants}
    for name, paths in folders.items():
        for variant in variants if cache else ():
            end_to_end(OpenVinoBackend(dirs[VARIANTS[variant][0]], threads, VARIANTS[variant][0],
                                       buckets=VARIANTS[variant][1], compiled_cache=cache), paths, out)
    for round_index in range(rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for name, paths in folders.items():
            for variant in order:
                precision, buckets = VARIANTS[variant]
                backend = OpenVinoBackend(dirs[precision], threads, precision, buckets=buckets, compiled_cache=cache)
                rate = end_to_end(backend, paths, out)
                results[name, variant][0].append(rate)
                results[name, variant][1].append(sum(backend.compile_seconds.values()))
                print(f'round {round_index + 1} {name} {variant}: {rate:.2f} pictures/s, '
                      f'{len(backend.compile_seconds)} compiles, {results[name, variant][1][-1]:.1f} s', flush=True)
    return results


def run(argv) -> int:
    parser = make_parser(__doc__.split('\n')[0], configs=False, notes=__doc__)
    parser.add_argument('--model-dir', required=True, help='exported folder with model.onnx (f32)')
    parser.add_argument('--int8-dir', required=True, help='its INT8 folder (tools/quantize.py)')
    parser.add_argument('--images', default='images', help='folder of pictures (default images/)')
    parser.add_argument('--random', type=int, default=50, help='pictures of random sizes made from them')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (default: every core)')
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument('--compiled-cache', action='store_true',
                        help='measure later runs: compiled models kept on disk and loaded')
    args = parser.parse_args(argv)
    setup('cpu', args.threads)
    sources = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
    with tempfile.TemporaryDirectory() as tmp:
        folders = {args.images: sources, f'{args.random} random sizes': random_sizes(sources, args.random,
                                                                                     Path(tmp) / 'random')}
        for paths in folders.values():
            read_image(paths[0])
        cache = str(Path(tmp) / 'compiled') if args.compiled_cache else None
        results = measure(folders, {'f32': args.model_dir, 'int8': args.int8_dir}, args.variants, args.rounds,
                          args.threads, Path(tmp), cache)
    print('| folder | variant | pictures/s (median) | vs f32 | compile s (median) |\n|---|---|---|---|---|')
    for (name, variant), (rates, compiles) in results.items():
        base = statistics.median(results[name, args.variants[0]][0])
        print(f'| {name} | {variant} | {statistics.median(rates):.2f} | {statistics.median(rates) / base:.2f}x | '
              f'{statistics.median(compiles):.1f} |')
    return 0


def main(argv=None) -> int:
    """The command: errors end in one line (``tools.cli.run_command``)."""
    return run_command(run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
