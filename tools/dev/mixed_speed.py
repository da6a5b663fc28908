"""End-to-end speed of OpenVINO f32 and INT8 (and onnxruntime) on folders of pictures of mixed
sizes, in one run.

    python tools/dev/mixed_speed.py --model-dir export/shapes --int8-dir export/shapes_int8 \\
        --images images --random 50 --rounds 3

What it measures is ``MEASURED`` (also the text of its report section). Prints each round, then
the median pictures/s of each variant, its ratio to f32 in the same run, the static models it
compiled and their compile seconds; and writes the section "INT8 on folders of mixed sizes" of the
report ``--out`` (default output/benchmark.md) between its markers, keeping the rest of the report
(tools/dev/benchmark.py keeps this section in turn, and writes it itself with ``--mixed``).
"""
import statistics
import tempfile
from pathlib import Path

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from solov2.core.errors import InputError  # noqa: E402
from solov2.data.transforms import read_image  # noqa: E402
from solov2.model.inference.pipeline import Predictor  # noqa: E402
from solov2.model.inference.spec import ModelSpec, exported_backend  # noqa: E402
from solov2.tools.cli import command, make_parser, tune_for  # noqa: E402
from solov2.tools.demo_outputs import DrawOptions, run_images  # noqa: E402
from solov2.tools.dev import report  # noqa: E402

# variant -> (exported_backend's kind, precision, config overrides)
VARIANTS = {'f32': ('openvino', 'f32', ()), 'f32-buckets': ('openvino', 'f32', ('openvino_buckets=all',)),
            'int8': ('openvino', 'int8', ()), 'int8-per-size': ('openvino', 'int8', ('openvino_buckets=none',)),
            'onnx': ('onnx', 'f32', ())}
DRAW_THRESHOLD = 0.3       # demo.py --draw-threshold default
PICTURES = ('.jpg', '.jpeg', '.png')
MARKERS = ('<!-- mixed sizes: begin -->', '<!-- mixed sizes: end -->')
MEASURED = ('Each round runs every variant once, in alternating order, each from a fresh backend (as a new '
            "`demo.py` run: compiles included) through `demo.py`'s own stages and pipeline (read, preprocess, "
            'network, post-process, paste, draw, write the picture), on the sample pictures and on copies of them '
            'resized to random sizes (each side 160-1600 px, a fixed seed). Variants: `f32` (OpenVINO f32, '
            "`demo.py --backend openvino`'s default: one dynamic-shape model), `f32-buckets` (`--opt "
            "openvino_buckets=all`: a static model per size bucket), `int8` (`--precision int8`'s default: a "
            "static model per size bucket), `int8-per-size` (`--opt openvino_buckets=none`: a static model per "
            "input size) and `onnx` "
            '(onnxruntime on the same export). With `--compiled-cache`, OpenVINO keeps its compiled models in a '
            'fresh folder that one untimed pass fills first: the rounds then measure a later run (`demo.py` '
            'keeps them in `$SOLOV2_CACHE/openvino-compiled`); without it every round compiles, as a first run.')


def pictures_in(folder: str) -> list:
    """The pictures (.jpg, .jpeg, .png) in ``folder``, sorted; InputError (one line) when there are none."""
    path = Path(folder)
    found = sorted(p for p in path.iterdir() if p.suffix.lower() in PICTURES) if path.is_dir() else []
    if not found:
        raise InputError(f'{folder}: no pictures ({", ".join(PICTURES)}) there — pass --images FOLDER with some')
    return found


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


def mixed_folders(images: str, count: int, folder: Path, name: str = '') -> dict:
    """{name: pictures}: the pictures of ``images`` (named ``name``, default ``images``) and ``count``
    copies of them at random sizes in ``folder`` (``random_sizes``); InputError when ``images`` holds none."""
    sources = pictures_in(images)
    folders = {f'{name or images} ({len(sources)} pictures)': sources}
    if count:
        folders[f'{count} random sizes'] = random_sizes(sources, count, folder)
    for paths in folders.values():
        read_image(paths[0])
    return folders


def end_to_end(backend, paths, out: Path) -> float:
    """Pictures/s of ``demo.py``'s stages in its pipeline on ``paths`` (no warm-up)."""
    targets = {path: out / path.name for path in paths}
    stats = run_images(Predictor(backend), targets, DrawOptions(DRAW_THRESHOLD, warmup=0), [])
    return stats.images_per_second


def measure(folders: dict, dirs: dict, variants, rounds: int, threads: int, out: Path, cache=None) -> dict:
    """{(folder, variant): ([pictures/s per round], [compile s per round], [static models compiled per
    round])}, each run on a new backend (``exported_backend``) of the variant (``VARIANTS``) on
    ``dirs[precision]``; ``cache``: the compiled models' folder, filled by an untimed pass first (None: none)."""
    results = {(name, variant): ([], [], []) for name in folders for variant in variants}
    opened = {variant: ModelSpec(backend=kind, model_dir=dirs[precision], threads=threads, precision=precision,
                                 overrides=overrides)
              for variant, (kind, precision, overrides) in VARIANTS.items() if variant in variants}
    for name, paths in folders.items():
        for variant in variants if cache else ():
            end_to_end(exported_backend(opened[variant], compiled=cache), paths, out)
    for round_index in range(rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for name, paths in folders.items():
            for variant in order:
                backend = exported_backend(opened[variant], compiled=cache)
                rate = end_to_end(backend, paths, out)
                compiled = getattr(backend, 'compile_seconds', {})      # onnxruntime compiles nothing per size
                for values, value in zip(results[name, variant], (rate, sum(compiled.values()), len(compiled))):
                    values.append(value)
                print(f'round {round_index + 1} {name} {variant}: {rate:.2f} pictures/s, '
                      f'{len(compiled)} compiles, {results[name, variant][1][-1]:.1f} s', flush=True)
    return results


def base_variant(variants) -> str:
    """The variant the others are compared to: f32 where measured, else the first."""
    return 'f32' if 'f32' in variants else variants[0]


def medians(results: dict, variants) -> dict:
    """{(folder, variant): (pictures/s, ratio to f32, static models compiled, compile s)}: the medians over
    the rounds of ``measure``'s ``results`` (the ratio: to ``base_variant``)."""
    base = base_variant(variants)
    table = {}
    for (name, variant), (rates, compiles, models) in results.items():
        rate = statistics.median(rates)
        table[name, variant] = (rate, rate / statistics.median(results[name, base][0]),
                                round(statistics.median(models)), statistics.median(compiles))
    return table


def format_cell(cell: tuple) -> str:
    """One table cell of a ``medians`` value, e.g. '7.19 (1.14x; 2 models, 0.3 s)'."""
    rate, ratio, models, seconds = cell
    return f"{rate:.2f} ({ratio:.2f}x; {models} model{'' if models == 1 else 's'}, {seconds:.1f} s)"


def report_section(table: dict, variants, machine_line: str, command: str) -> str:
    """The markdown section of ``medians``' ``table`` (a row per folder, a column per variant), between
    ``MARKERS`` so that a later run replaces it."""
    rows = ['| folder | ' + ' | '.join(variants) + ' |', '|---' * (len(variants) + 1) + '|']
    for name in dict.fromkeys(name for name, _ in table):
        rows.append(f'| {name} | ' + ' | '.join(map(format_cell, (table[name, variant] for variant in variants)))
                    + ' |')
    return report.section(
        MARKERS, 'INT8 on folders of mixed sizes', f'Machine: {machine_line}; command: `{command}`.', MEASURED,
        f'Each cell: the median pictures/s over the rounds (its ratio to {base_variant(variants)} in the same run; '
        'the static models it compiled, or loaded from the cache with --compiled-cache, and their seconds).',
        '\n'.join(rows))


@command
def main(argv) -> int:
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
    parser.add_argument('--out', default='output/benchmark',
                        help='report path without suffix whose mixed-sizes section is written (default '
                             'output/benchmark; the published report is --out docs/benchmark)')
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.random < 0:
        parser.error('--rounds must be at least 1 and --random at least 0')
    tune_for('cpu', args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folders = mixed_folders(args.images, args.random, Path(tmp) / 'random')
        cache = str(Path(tmp) / 'compiled') if args.compiled_cache else None
        results = measure(folders, {'f32': args.model_dir, 'int8': args.int8_dir}, args.variants, args.rounds,
                          args.threads, Path(tmp), cache)
    table = medians(results, args.variants)
    print('| folder | variant | pictures/s (median) | vs f32 | models | compile s (median) |\n'
          '|---|---|---|---|---|---|')
    for (name, variant), (rate, ratio, models, seconds) in table.items():
        print(f'| {name} | {variant} | {rate:.2f} | {ratio:.2f}x | {models} | {seconds:.1f} |')
    section = report_section(table, args.variants, report.machine_line(args.threads),
                             report.command_line('tools/dev/mixed_speed.py', argv))
    print(f'wrote {report.write_section(args.out, section, MARKERS)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
