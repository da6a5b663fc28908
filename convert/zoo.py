"""Published checkpoints by name (``convert.published``): ``resolve_weights(NAME)`` is the path of
this project's checkpoint converted from it. The first use downloads the file (``convert.download``)
into a hidden temporary, converts it (``convert.families``) and caches checkpoint and sidecar together
(``core.cache.published_path``; the sidecar's ``"published"`` records name, URL, digests, converter
and config); later uses read that sidecar only: offline and instant. A mirror (``mirror=``, else
``$SOLOV2_MIRROR``), a folder or an http(s) base URL with the same file names, stands in for the
publishers' hosts.
"""
import difflib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from solov2.config import get_config
from solov2.config.sidecar import sidecar_path
from solov2.convert.common import convert_file
from solov2.convert.download import ProgressCallback, Retry, fetch, is_url
from solov2.convert.families import CONVERTERS
from solov2.convert.published import FAMILIES, PUBLISHED, PUBLISHERS, SHIPPED, Published
from solov2.core.cache import HINT, published_path
from solov2.core.errors import InputError, RunError, param
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.data.files import temporary_beside

LOG = logging.getLogger(__name__)
MIRROR_ENV = 'SOLOV2_MIRROR'
ROWS: Dict[str, Published] = {row.name: row for row in PUBLISHED}
RECORDED = ('name', 'url', 'sha256', 'converter', 'config')    # what a cached entry must still agree on
RETRY = Retry()                                                 # how hard each download is tried
PathLike = Union[str, os.PathLike]


def looks_like_name(text: str) -> bool:
    """Whether ``text`` is written like a published name (``<publisher>/<model>``, no suffix)."""
    publisher, sep, model = text.partition('/')
    return bool(sep and model) and publisher in PUBLISHERS and '/' not in model and not Path(model).suffix


def unknown_name(text: str) -> InputError:
    """The error for a name no row has, with the closest names."""
    near = difflib.get_close_matches(text, list(ROWS), n=3, cutoff=0.5)
    return InputError(f'no published checkpoint is named {text}'
                      + (f' — did you mean {" or ".join(near)}?' if near else
                         ' — docs/checkpoints.md lists the names'))


def record(row: Published) -> dict:
    """What a cached entry's sidecar records of ``row`` under ``"published"`` (before the download)."""
    return {'name': row.name, 'url': row.url, 'file': row.file, 'sha256': row.sha256,
            'converter': FAMILIES.get(row.family), 'config': row.config, 'licence': row.licence}


def is_cached(row: Published, cache_dir: Optional[PathLike] = None) -> bool:
    """Whether ``row``'s converted checkpoint is in the cache, made from the file the table names now
    (its sidecar's ``"published"`` record agrees on ``RECORDED``)."""
    path, expected = published_path(row.name, cache_dir), record(row)
    try:
        found = json.loads(sidecar_path(str(path)).read_text())['published'] if path.is_file() else {}
        return all(found.get(key) == expected[key] for key in RECORDED)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def locations(row: Published, mirror: Optional[PathLike] = None) -> List[str]:
    """Where ``row``'s file is looked for: in the mirror alone when there is one (``mirror``,
    else ``$SOLOV2_MIRROR``; a folder or an http(s) base URL), else at the publisher's URL and
    its published mirrors."""
    base = os.environ.get(MIRROR_ENV, '') if mirror is None else str(mirror)
    if base:
        return [f'{base.rstrip("/")}/{row.file}' if is_url(base) else str(Path(base).expanduser() / row.file)]
    return [row.url, *row.mirrors]


def named(weights: Optional[PathLike]) -> Optional[Published]:
    """The row of ``weights`` when it is a published name (not an existing path), else None."""
    return None if weights is None or str(weights) == '' or Path(weights).exists() else ROWS.get(str(weights))


def checked_config(weights: Optional[PathLike], config: Optional[int]) -> Optional[int]:
    """The config number a caller checks its other arguments against before ``resolve_weights``
    fetches anything: ``config``, else the published name ``weights``'s, else None. InputError for an
    unknown ``config`` or a published COCO model of another config (its weights would not load)."""
    if config is not None:
        get_config(config)
    row = named(weights)
    number = None if row is None else row.config
    if row is None or number is None or config is None or config == number or row.backbone:
        return config if config is not None else number
    raise InputError(f'{weights} is a config {number} model, not config {config}: pass ', param('config', number),
                     ' or leave ', param('config'), ' out')


def resolve_weights(weights: Optional[PathLike], cache_dir: Optional[PathLike] = None,
                    mirror: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None) -> Optional[str]:
    """A checkpoint path for ``weights``: a published name's ``checkpoint``, else unchanged (an
    existing path, None or any other text: the caller says what is missing); InputError for a
    name written like a published one that no row has."""
    row = named(weights)
    if row is not None:
        return str(checkpoint(row, cache_dir, mirror, progress))
    if weights is not None and not Path(weights).exists() and looks_like_name(str(weights)):
        raise unknown_name(str(weights))
    return None if weights is None else str(weights)


def checkpoint(row: Published, cache_dir: Optional[PathLike] = None, mirror: Optional[PathLike] = None,
               progress: Optional[ProgressCallback] = None) -> Path:
    """The converted checkpoint of ``row``, from the cache, else fetched, converted and cached
    (``progress(bytes, total)``, else logged). InputError for a row with no config here; RunError
    (``DownloadError`` among them) when no source gives the file or it does not convert or write."""
    if row.family == SHIPPED:
        return Path(SHIPPED_WEIGHTS)
    if row.config is None:
        raise InputError(f'{row.name} is published but not converted by this project: {row.note}')
    path = published_path(row.name, cache_dir)
    if is_cached(row, cache_dir):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f'cannot create the weights cache {path.parent}: {exc.strerror or exc} — {HINT}') from None
    scratch = temporary_beside(path.with_name(row.file))
    try:
        _fetch_and_convert(row, path, scratch, locations(row, mirror), progress)
    finally:
        scratch.unlink(missing_ok=True)
    return path


def _fetch_and_convert(row: Published, path: Path, scratch: Path, where: Sequence[str],
                       progress: Optional[ProgressCallback]) -> None:
    size = f' ({row.size_mb:g} MB)' if row.size_mb else ''
    LOG.info(f'{row.name}: getting {row.file}{size} from {where[0]}')
    hint = f'download {row.url} by hand into a folder and set {MIRROR_ENV} to that folder'
    got = fetch(row.file, where, scratch, row.sha256, progress or _logged(row.file), RETRY, hint)
    script = FAMILIES[row.family]
    LOG.info(f'{row.name}: converting {row.file} with {script} to config {row.config}')
    try:
        convert_file(CONVERTERS[row.family], str(got.path), str(path), row.config,
                     published={**record(row), 'downloaded_sha256': got.sha256, 'downloaded_from': got.source})
    except (ValueError, KeyError) as exc:      # InputError, ConversionError, CheckpointError: the file's fault
        first = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).split('\n')[0]
        raise RunError(f'{row.file} from {got.source} does not convert to config {row.config}: {first} '
                       f'(python {script} FILE OUT shows the whole report)') from None
    LOG.info(f'{row.name}: cached as {path}')


def _logged(file: str) -> ProgressCallback:
    """A progress callback that logs every tenth of the download."""
    shown = [0]

    def report(done: int, total: Optional[int]) -> None:
        if total and done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            LOG.info(f'{file}: {10 * shown[0]}% of {total / 1e6:.0f} MB')
    return report
