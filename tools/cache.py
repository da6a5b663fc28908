"""See and clear the export cache of ``--backend auto`` ($SOLOV2_CACHE, default
~/.cache/solov2-paddle): one folder per weights file, config, --opt and library versions.

    python tools/cache.py            # list the entries, their size and whether they are stale
    python tools/cache.py prune      # delete the stale ones (other code or library versions)
    python tools/cache.py clear      # delete every entry

An entry is stale when no run of this code with these libraries can use it again: the
toolkit's source or a library (Paddle, paddle2onnx, onnx, the runtime) changed since it was
written, or its manifest is unreadable. A later ``--backend auto`` run exports again what it needs.
"""
import time

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.model.inference.export_cache import cache_entries, cache_root, remove_entries, source_hash  # noqa: E402
from solov2.tools.cli import make_parser, run_command  # noqa: E402


def parse_args(argv):
    parser = make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('action', nargs='?', choices=('list', 'prune', 'clear'), default='list',
                        help='list (default), prune (delete stale entries) or clear (delete all)')
    return parser.parse_args(argv)


def megabytes(size: int) -> str:
    return f'{size / 2 ** 20:.1f} MB'


def describe(entry, source: str) -> str:
    """One line: folder name, config and engines (those the entry records, one per machine), size, age, stale or not."""
    key = entry.key or {}
    age = (time.time() - entry.written) / 86400
    state = 'stale' if entry.stale(source) else 'current'
    return (f'{entry.folder.name}  config {key.get("config", "?")} {entry.engine or key.get("backend", "?")}  '
            f'{megabytes(entry.size)}  {age:.1f} days old  {state}')


def run(argv) -> int:
    args = parse_args(argv)
    entries, source = cache_entries(), source_hash()
    chosen = {'list': [], 'prune': [e for e in entries if e.stale(source)], 'clear': entries}[args.action]
    if args.action == 'list':
        for entry in entries:
            print(describe(entry, source))
        print(f'{len(entries)} entries, {megabytes(sum(e.size for e in entries))} in {cache_root()}')
        return 0
    freed = remove_entries(chosen)
    print(f'deleted {len(chosen)} of {len(entries)} entries ({megabytes(freed)}) from {cache_root()}')
    return 0


def main(argv=None) -> int:
    """The command: errors end in one line (``tools.cli.run_command``)."""
    return run_command(run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
