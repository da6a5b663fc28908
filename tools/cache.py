"""See and clear the cache ($SOLOV2_CACHE, default ~/.cache/solov2-paddle): the exports of
``--backend auto`` (one folder per weights file, config, --opt and library versions) and the
converted published checkpoints in its weights/ folder (tools/weights.py).

    python tools/cache.py            # list the entries, their size and whether they are stale
    python tools/cache.py prune      # delete the stale ones (other code or library versions)
    python tools/cache.py clear      # delete every entry

An export is stale when no run of this code with these libraries can use it again: the
toolkit's source or a library (Paddle, paddle2onnx, onnx, the runtime) changed since it was
written, or its manifest is unreadable. A converted checkpoint is stale when the table of
published checkpoints no longer names it as it was made (another URL, checksum, converter or
config), and unfinished when a stopped download or write left it. A later run makes again
what it needs.
"""
import time

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.convert.zoo import cached_weights, remove_cached, weights_folder  # noqa: E402
from solov2.model.inference.auto_backend import cache_entries, cache_root, remove_entries, source_hash  # noqa: E402
from solov2.tools.cli import make_parser, run_command  # noqa: E402


def parse_args(argv):
    parser = make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('action', nargs='?', choices=('list', 'prune', 'clear'), default='list',
                        help='list (default), prune (delete stale entries) or clear (delete all)')
    return parser.parse_args(argv)


def megabytes(size: int) -> str:
    return f'{size / 2 ** 20:.1f} MB'


def describe(entry, source: str) -> str:
    """One line: folder name, config and the engine the entry records, size, age, stale or not."""
    key = entry.key or {}
    age = (time.time() - entry.written) / 86400
    state = 'stale' if entry.stale(source) else 'current'
    return (f'{entry.folder.name}  config {key.get("config", "?")} {entry.engine or key.get("backend", "?")}  '
            f'{megabytes(entry.size)}  {age:.1f} days old  {state}')


def run(argv) -> int:
    args = parse_args(argv)
    entries, source, weights = cache_entries(), source_hash(), cached_weights()
    chosen = {'list': [], 'prune': [e for e in entries if e.stale(source)], 'clear': entries}[args.action]
    dropped = {'list': [], 'prune': [w for w in weights if w.state != 'current'], 'clear': weights}[args.action]
    folder = weights_folder()
    if args.action == 'list':
        for item in weights:
            print(f'{item.path.relative_to(folder)}  {item.name or "-"}  {megabytes(item.size)}  {item.state}')
        if weights:
            print(f'{len(weights)} converted published checkpoints, {megabytes(sum(w.size for w in weights))} '
                  f'in {folder}')
        for entry in entries:
            print(describe(entry, source))
        print(f'{len(entries)} entries, {megabytes(sum(e.size for e in entries))} in {cache_root()}')
        return 0
    if weights:
        freed = remove_cached(dropped)
        print(f'deleted {len(dropped)} of {len(weights)} converted published checkpoints ({megabytes(freed)}) '
              f'from {folder}')
    freed = remove_entries(chosen)
    print(f'deleted {len(chosen)} of {len(entries)} entries ({megabytes(freed)}) from {cache_root()}')
    return 0


def main(argv=None) -> int:
    """The command: errors end in one line (``tools.cli.run_command``)."""
    return run_command(run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
