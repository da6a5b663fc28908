"""See and clear the cache ($SOLOV2_CACHE, default ~/.cache/solov2-paddle): the exports of
``--backend auto`` (one folder per weights file, config, --opt and library versions) and the
converted published checkpoints in its weights/ folder (tools/weights.py).

    python tools/cache.py            # list the entries: what, size, age, current, stale or unfinished
    python tools/cache.py prune      # delete the stale and unfinished ones (never one being built)
    python tools/cache.py clear      # delete every entry

Stale: no run of this code with these libraries can use it again; unfinished: a stopped process
left it (``solov2.core.cache``). A later run makes again what it needs.
"""
import time

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.cache import cache_entries, remove_entries  # noqa: E402
from solov2.core.paths import cache_root  # noqa: E402
from solov2.tools.cli import command, make_parser  # noqa: E402


def parse_args(argv):
    parser = make_parser(__doc__.split('\n\n')[0], configs=False)
    parser.add_argument('action', nargs='?', choices=('list', 'prune', 'clear'), default='list',
                        help='list (default), prune (delete stale and unfinished entries) or clear (delete '
                             'all); an entry being built by a running process stays')
    return parser.parse_args(argv)


def megabytes(size: int) -> str:
    return f'{size / 2 ** 20:.1f} MB'


@command
def main(argv) -> int:
    args = parse_args(argv)
    root, entries = cache_root(), cache_entries()
    if args.action == 'list':
        for entry in entries:
            age = (time.time() - entry.written) / 86400
            print(f'{entry.path.relative_to(root).as_posix()}  {entry.what}  {megabytes(entry.size)}  '
                  f'{age:.1f} days old  {entry.state}')
        print(f'{len(entries)} entries, {megabytes(sum(e.size for e in entries))} in {root}')
        return 0
    chosen = [e for e in entries if e.state != 'building' and (args.action == 'clear' or e.state != 'current')]
    print(f'deleted {len(chosen)} of {len(entries)} entries ({megabytes(remove_entries(chosen))}) from {root}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
