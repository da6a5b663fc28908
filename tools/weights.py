"""The published checkpoints by name: list them, or fetch them now (before going offline).

    python tools/weights.py                          # name, mask AP, config, size, cached or not
    python tools/weights.py get mmdet/solov2_light_r50_fpn_3x_coco torchvision/resnet50
    SOLOV2_MIRROR=/data/mirror python tools/weights.py get ppdet/solov2_r50_enhance_coco

Every command that takes --weights (demo.py, eval.py, tools/export_model.py) and
``--opt pretrained=`` of train.py take these names too: the first use downloads the
publisher's file (progress, resume, retries), verifies it, converts it and caches the
converted checkpoint under $SOLOV2_CACHE/weights (default ~/.cache/solov2-paddle/weights);
later uses are offline. --mirror (or $SOLOV2_MIRROR) is a folder or an http(s) base URL with
the publishers' file names that stands in for their hosts. tools/cache.py shows and prunes
the cache; docs/checkpoints.md says where each file comes from.
"""
if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.tools import cli  # noqa: E402  (before Paddle)
from solov2.tools.cli import command, downloaded, make_parser  # noqa: E402


def parse_args(argv):
    parser = make_parser(__doc__.split('\n\n')[0], configs=False, notes=__doc__.split('\n\n', 2)[2])
    parser.add_argument('action', nargs='?', choices=('list', 'get'), default='list',
                        help='list (default) or get (download and convert NAMES now)')
    parser.add_argument('names', nargs='*', metavar='NAME', help='published names for get')
    parser.add_argument('--mirror', metavar='FOLDER_OR_URL',
                        help="a folder or http(s) base URL with the publishers' file names (default: $SOLOV2_MIRROR, "
                             'else the publishers)')
    args = parser.parse_args(argv)
    if args.action == 'get' and not args.names:
        parser.error(f'get needs one or more names ({parser.prog} lists them)')
    return args


def describe(row, cached: bool) -> str:
    """One line of the list: name, mask AP (or ImageNet top-1), config, size, cached."""
    score = (f'AP {row.mask_ap:4.1f}' if row.mask_ap is not None else
             f'top-1 {row.top1:4.1f}' if row.top1 is not None else '')
    config = f'config {row.config}' if row.config is not None else 'not converted'
    size = f'{row.size_mb:g} MB' if row.size_mb else 'size ?'
    state = 'cached' if cached else 'shipped' if row.family == 'shipped' else '-'
    return f'{row.name:<46} {score:<11} {config:<14} {size:<11} {state}'


@command
def main(argv) -> int:
    args = parse_args(argv)
    with cli.interruptible_loading():  # no Paddle: one line saying so
        from solov2.convert import zoo
        from solov2.core.cache import weights_folder
    if args.action == 'list':
        cached = [zoo.is_cached(row) for row in zoo.PUBLISHED]
        for row, here in zip(zoo.PUBLISHED, cached):
            print(describe(row, here))
        print(f'{len(cached)} names, {sum(cached)} cached in {weights_folder()}')
        return 0
    rows = [zoo.ROWS.get(name) for name in args.names]
    unknown = [name for name, row in zip(args.names, rows) if row is None]
    if unknown:
        raise zoo.unknown_name(unknown[0])
    for row in rows:
        print(f'{row.name}: {downloaded(row.name, args.mirror)}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
