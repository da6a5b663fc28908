"""See and clear the cache ($SOLOV2_CACHE, default ~/.cache/solov2-paddle): the exports of
``--backend auto`` (one folder per weights file, config, --opt and library versions) and the
converted published checkpoints in its weights/ folder (tools/weights.py).

    python tools/cache.py            # list the entries: what, size, age, current, stale or unfinished
    python tools/cache.py prune      # delete the stale and unfinished ones (never one being built)
    python tools/cache.py clear      # delete every entry
    python tools/cache.py bake --weights W --workers 2 [--pin openvino]    # for a container image

Bake: export --weights once for --backend auto (into $SOLOV2_CACHE) and record the engine it
times fastest for this CPU type and the threads each process of the service will run (--threads, else
each one's share of the cores among --workers, as tools/serve.py --workers N gives them), as an image built
with that cache carries it;
--pin records that engine for every CPU type and thread count instead (no timing where it runs),
so that all the replicas of a deployment run one engine and give the same answers. It also compiles the
polygon tracer's loops into numba's cache (``core.compiled``; NUMBA_CACHE_DIR says where), which a
replica would otherwise compile as it starts.

Stale: no run of this code with these libraries can use it again; unfinished: a stopped process
left it (``solov2.core.cache``). A later run makes again what it needs.
"""
import time
from dataclasses import replace

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.cache import cache_entries, remove_entries  # noqa: E402
from solov2.core.paths import SHIPPED_WEIGHTS, cache_root  # noqa: E402
from solov2.tools import cli  # noqa: E402

PINS = ('openvino', 'onnx', 'openvino-bf16')        # auto's candidates, as --pin names them


def parse_args(argv):
    parser = cli.make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('action', nargs='?', choices=('list', 'prune', 'clear', 'bake'), default='list',
                        help='list (default), prune (delete stale and unfinished entries) or clear (delete '
                             'all); an entry being built by a running process stays; bake: below')
    cli.add_model_args(parser, SHIPPED_WEIGHTS)
    cli.add_runtime_args(parser)
    parser.add_argument('--workers', type=cli.at_least(1), default=1,
                        help="bake: the service's --workers, whose share of the cores each process's threads are "
                             '(default 1)')
    parser.add_argument('--pin', choices=PINS, help='bake: run this engine on every CPU type and thread count')
    return parser.parse_args(argv)


def bake(args) -> int:
    """The bake action (module docstring): auto's entry exported and its engine chosen here or pinned."""
    with cli.interruptible_loading():
        from solov2.data.polygons import compile_tracer
        from solov2.model.inference.auto_backend import pin_choice
        from solov2.model.inference.backend_factory import open_backend
        from solov2.model.runtime import cpu_threads
    args.threads = cpu_threads(args.threads, args.workers)       # as tools/serve.py --workers gives each process
    cli.tune_for('cpu', args.threads)
    spec = cli.fetched(replace(cli.model_spec(args), backend='auto', device='cpu'))
    number, backend = open_backend(spec, progress=cli.ExportStages())
    compile_tracer()
    if args.pin:
        folder = pin_choice(spec, number, args.pin.replace('-', ' '))
        print(f'baked {folder}: {args.pin} pinned for every CPU type and thread count')
    else:
        print(f'baked into {cache_root()}: {backend.label} chosen for this CPU type at {args.threads} threads a '
              f'process (tools/serve.py --workers {args.workers})')
    return 0


def megabytes(size: int) -> str:
    return f'{size / 2 ** 20:.1f} MB'


@cli.command
def main(argv) -> int:
    args = parse_args(argv)
    if args.action == 'bake':
        return bake(args)
    root, entries = cache_root(), cache_entries()
    if args.action == 'list':
        for entry in entries:
            print(f'{entry.path.relative_to(root).as_posix()}  {entry.what}  {megabytes(entry.size)}  '
                  f'{(time.time() - entry.written) / 86400:.1f} days old  {entry.state}')
        print(f'{len(entries)} entries, {megabytes(sum(e.size for e in entries))} in {root}')
        return 0
    chosen = [e for e in entries if e.state != 'building' and (args.action == 'clear' or e.state != 'current')]
    print(f'deleted {len(chosen)} of {len(entries)} entries ({megabytes(remove_entries(chosen))}) from {root}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
