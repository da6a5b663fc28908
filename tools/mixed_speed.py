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
size). With ``--compiled-cache``, OpenVINO keeps its compiled models in a fresh folder that
one untimed pass fills first: the rounds then measure a later run (``demo.py`` keeps them in
``$SOLOV2_CACHE/openvino-compiled``); without it every round compiles, as a first run.

Prints each round, then the median pictures/s of each variant, its ratio to f32 in the same
run, the static models it compiled and their compile seconds; and writes the section "INT8 on
folders of mixed sizes" of the report ``--out`` (default output/benchmark.md) between its
markers, keeping the rest of the report (tools/benchmark.py keeps this section in turn).
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

from solov2.data.transforms import read_image  # noqa: E402
from solov2.model.inference.media import DrawOptions, ImageStages  # noqa: E402
from solov2.model.inference.openvino_backend import OpenVinoBackend, import_openvino  # noqa: E402
from solov2.model.inference.pipeline import run_pipeline  # noqa: E402
from solov2.tools import postprocess_speed  # noqa: E402
from solov2.tools.cli import make_parser, run_command, tune_for  # noqa: E402

VARIANTS = {'f32': ('f32', False), 'f32-buckets': ('f32', True), 'int8': ('int8', True),
            'int8-per-size': ('int8', False)}
DRAW_THRESHOLD = 0.3       # demo.py --draw-threshold default
BEGIN, END = '<!-- mixed sizes: begin -->', '<!-- mixed sizes: end -->'


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
    """{(folder, variant): ([pictures/s per round], [compile s per round], [static models compiled per
    round])}; ``cache``: the compiled models' folder, filled by an untimed pass first (None: none)."""
    def fresh_backend(variant: str) -> OpenVinoBackend:
        precision, buckets = VARIANTS[variant]
        return OpenVinoBackend(dirs[precision], threads, precision, buckets=buckets, compiled_cache=cache)

    results = {(name, variant): ([], [], []) for name in folders for variant in variants}
    for name, paths in folders.items():
        for variant in variants if cache else ():
            end_to_end(fresh_backend(variant), paths, out)
    for round_index in range(rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for name, paths in folders.items():
            for variant in order:
                backend = fresh_backend(variant)
                rate = end_to_end(backend, paths, out)
                for values, value in zip(results[name, variant], (rate, sum(backend.compile_seconds.values()),
                                                                  len(backend.compile_seconds))):
                    values.append(value)
                print(f'round {round_index + 1} {name} {variant}: {rate:.2f} pictures/s, '
                      f'{len(backend.compile_seconds)} compiles, {results[name, variant][1][-1]:.1f} s', flush=True)
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


def machine(threads: int) -> str:
    """``postprocess_speed.machine_line`` and OpenVINO's version."""
    return f"{postprocess_speed.machine_line(threads)}, OpenVINO {import_openvino().get_version().split('-')[0]}"


def format_cell(cell: tuple) -> str:
    """One table cell of a ``medians`` value, e.g. '7.19 (1.14x; 2 models, 0.3 s)'."""
    rate, ratio, models, seconds = cell
    return f"{rate:.2f} ({ratio:.2f}x; {models} model{'' if models == 1 else 's'}, {seconds:.1f} s)"


def report_section(table: dict, variants, machine_line: str, command: str) -> str:
    """The markdown section of ``medians``' ``table`` (a row per folder, a column per variant), between
    markers so that a later run replaces it."""
    measured = ' '.join(__doc__.split('\n\n')[2].split()).replace('``', '`')
    lines = [BEGIN, '## INT8 on folders of mixed sizes', '', f'Machine: {machine_line}; command: `{command}`.', '',
             measured, '', f'Each cell: the median pictures/s over the rounds (its ratio to '
             f'{base_variant(variants)} in the same run; the static models it compiled, or loaded from the cache '
             'with --compiled-cache, and their seconds).',
             '', '| folder | ' + ' | '.join(variants) + ' |', '|---' * (len(variants) + 1) + '|']
    for name in dict.fromkeys(name for name, _ in table):
        lines.append(f'| {name} | ' + ' | '.join(map(format_cell, (table[name, variant] for variant in variants)))
                     + ' |')
    return '\n'.join(lines + [END]) + '\n'


def replace_section(text: str, section: str) -> str:
    """``text`` with its mixed-sizes section replaced by ``section`` (appended if absent)."""
    return postprocess_speed.replace_section(text, section, (BEGIN, END))


def existing_section(text: str) -> str:
    """The mixed-sizes section of ``text`` ('' when it has none)."""
    return postprocess_speed.existing_section(text, (BEGIN, END))


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
    parser.add_argument('--out', default='output/benchmark',
                        help='report path without suffix whose mixed-sizes section is written (default '
                             'output/benchmark; the published report is --out docs/benchmark)')
    args = parser.parse_args(argv)
    tune_for('cpu', args.threads)
    sources = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
    with tempfile.TemporaryDirectory() as tmp:
        folders = {f'{args.images} ({len(sources)} pictures)': sources,
                   f'{args.random} random sizes': random_sizes(sources, args.random, Path(tmp) / 'random')}
        for paths in folders.values():
            read_image(paths[0])
        cache = str(Path(tmp) / 'compiled') if args.compiled_cache else None
        results = measure(folders, {'f32': args.model_dir, 'int8': args.int8_dir}, args.variants, args.rounds,
                          args.threads, Path(tmp), cache)
    table = medians(results, args.variants)
    print('| folder | variant | pictures/s (median) | vs f32 | models | compile s (median) |\n'
          '|---|---|---|---|---|---|')
    for (name, variant), (rate, ratio, models, seconds) in table.items():
        print(f'| {name} | {variant} | {rate:.2f} | {ratio:.2f}x | {models} | {seconds:.1f} |')
    section = report_section(table, args.variants, machine(args.threads),
                             'python tools/mixed_speed.py ' + ' '.join(argv))
    print(f'wrote {postprocess_speed.write_section(args.out, section, (BEGIN, END))}')
    return 0


def main(argv=None) -> int:
    """The command: errors end in one line (``tools.cli.run_command``)."""
    return run_command(run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
