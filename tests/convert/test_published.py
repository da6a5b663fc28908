"""The table of published checkpoints (convert/published.py) holds together, and the docs say
what it says: docs/checkpoints.md's tables are generated from it (tools/dev/zoo_docs.py) and the
README's configs table quotes its mask APs."""
import dataclasses
import hashlib
import pickle
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from solov2.api import Segmenter
from solov2.config import CONFIGS
from solov2.convert import download, zoo
from solov2.convert.download import DownloadError
from solov2.convert.families import CONVERTERS
from solov2.convert.published import FAMILIES, PUBLISHED, PUBLISHERS, SHIPPED
from solov2.core.errors import RunError
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.tools.dev import zoo_docs
from tests.helpers import REPO_DIR

COCO = [row for row in PUBLISHED if not row.backbone and row.family != SHIPPED]
FETCHED = [row for row in PUBLISHED if row.family != SHIPPED]        # downloaded from their publisher


def test_names_files_and_converters_are_one_each():
    names = [row.name for row in PUBLISHED]
    files = [row.file for row in PUBLISHED]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)    # a mirror is keyed by file name
    assert set(CONVERTERS) == set(FAMILIES) - {'to-ppdet'}
    for row in PUBLISHED:
        assert zoo.looks_like_name(row.name) and row.publisher in PUBLISHERS, row.name
        assert row.family == SHIPPED or row.family in CONVERTERS, row.name
        assert row.family == SHIPPED or (urlparse(row.url).scheme == 'https' and row.url.endswith('/' + row.file))
        assert all(urlparse(url).scheme == 'https' and url.endswith('/' + row.file) for url in row.mirrors)
        assert row.config is None or row.config in CONFIGS
        assert (REPO_DIR / FAMILIES[row.family]).is_file() if row.family != SHIPPED else True


def _get(row, mirror: Path, tmp_path: Path):
    """``row``'s file from the folder ``mirror`` as the zoo gets it (for a row this project does not
    convert, as the zoo's download step does)."""
    if row.config is not None:
        return zoo.checkpoint(row, tmp_path / 'cache', mirror)
    return download.fetch(row.file, zoo.locations(row, mirror), tmp_path / 'scratch', row.sha256)


@pytest.mark.parametrize('row', FETCHED, ids=[row.name for row in FETCHED])
def test_a_download_is_checked_against_the_published_checksum(row, tmp_path):
    """A row's checksum is what the publisher prints (a whole SHA-256, or the 8 hex characters
    mmdetection's and torchvision's file names end in), and it guards the download: a file under
    the row's name whose SHA-256 does not begin with it is refused before conversion and nothing is
    cached; the same file passes once the row holds its digest (as many characters as the row
    has), and a whole digest is compared whole. A row without one (UNVERIFIED where the research
    could not read it) has only the conversion to stop a wrong file."""
    if row.sha256 is None:
        assert row.family not in ('mmdet', 'torchvision') or row.publisher == 'openmmlab', row.name
        assert row.publisher != 'solo' or 'UNVERIFIED' in row.note
    else:
        assert re.fullmatch(r'[0-9a-f]{8}|[0-9a-f]{64}', row.sha256)
        suffix = re.search(r'-([0-9a-f]{8})\.pth$', row.file)
        assert (suffix.group(1) == row.sha256) if row.family in ('mmdet', 'torchvision') else len(row.sha256) == 64
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    (mirror / row.file).write_bytes(pickle.dumps({'conv.weight': 'not this checkpoint'}, protocol=4))
    digest = hashlib.sha256((mirror / row.file).read_bytes()).hexdigest()
    wrong = [row] if row.sha256 else []
    if row.sha256:              # the digest with its last published character changed
        published = digest[:len(row.sha256)]
        wrong.append(dataclasses.replace(row, sha256=published[:-1] + ('0' if published[-1] != '0' else '1')))
    for refused in wrong:
        with pytest.raises(DownloadError, match=f'not the published {refused.sha256[:16]}'):
            _get(refused, mirror, tmp_path)
        assert not (tmp_path / 'cache').is_dir() or not list((tmp_path / 'cache').rglob('*.pdparams'))
    taken = dataclasses.replace(row, sha256=digest[:len(row.sha256)]) if row.sha256 else row
    if row.config is None:
        assert _get(taken, mirror, tmp_path).sha256 == digest
    else:
        with pytest.raises(RunError, match='does not convert'):          # past the check, refused by the converter
            _get(taken, mirror, tmp_path)


def test_coco_rows_convert_with_their_family_and_say_their_ap():
    for row in COCO:
        assert row.mask_ap is not None and 20 < row.mask_ap < 50, row.name
        assert row.config is None or row.config in CONVERTERS[row.family].default_configs, row.name
        assert row.config is not None or row.note, row.name      # not converted: the note says why
    assert all(row.top1 is None or 60 < row.top1 < 90 for row in PUBLISHED if row.backbone)


def test_the_checkpoints_page_is_generated_from_the_table():
    text = zoo_docs.PAGE.read_text(encoding='utf-8')
    assert zoo_docs.updated(text) == text, \
        'docs/checkpoints.md differs from the table: run python tools/dev/zoo_docs.py'
    assert all(f'`{row.name}`' in text for row in PUBLISHED)


def test_the_readme_configs_table_quotes_the_tables_mask_ap():
    """Each config's row in README.md names the mask AP of every COCO checkpoint that converts
    to it, and no other AP."""
    readme = (REPO_DIR / 'README.md').read_text(encoding='utf-8')
    rows = dict(re.findall(r'^\| (\d+) \| `\w+` \|.*?\|.*?\| (.*) \|$', readme, re.M))
    assert set(rows) == {str(n) for n in CONFIGS}
    for number, cell in rows.items():
        expected = {f'{row.mask_ap:.1f}' for row in COCO if row.config == int(number)}
        quoted = {ap for group in re.findall(r'\(([\d./]+)\)', cell) for ap in group.split('/')}
        assert quoted == expected, (number, cell)


def test_hubconf_offers_every_converted_coco_row_and_the_shipped_model(monkeypatch, tmp_path):
    """``paddle.hub`` on the checkout (source='local') lists one entry per converted COCO row and
    the shipped model; each is a callable that asks the zoo for its own row, with the cache and
    mirror it is given, and returns a ready Segmenter. The zoo stands in (nothing is
    downloaded): it hands out the shipped checkpoint."""
    import paddle
    asked = []

    def checkpoint(row, cache_dir=None, mirror=None, progress=None):
        asked.append((row, cache_dir, mirror))
        return Path(SHIPPED_WEIGHTS)

    monkeypatch.setattr(zoo, 'checkpoint', checkpoint)
    wanted = {row.name.replace('/', '_'): row for row in PUBLISHED if row.config is not None and not row.backbone}
    assert 'shipped_shapes_r18' in wanted and len(wanted) == len([r for r in COCO if r.config is not None]) + 1
    assert sorted(paddle.hub.list(str(REPO_DIR), source='local')) == sorted(wanted)
    mirror = 'http://127.0.0.1:9'            # the discard port: were anything fetched, it would fail
    for entry, row in wanted.items():
        segmenter = paddle.hub.load(str(REPO_DIR), entry, source='local', cache_dir=str(tmp_path), mirror=mirror,
                                    backend='dygraph', device='cpu')
        assert isinstance(segmenter, Segmenter) and segmenter.number == 9, entry
        assert asked[-1] == (row, str(tmp_path), mirror), entry
        assert row.name in paddle.hub.help(str(REPO_DIR), entry, source='local')
    assert len(asked) == len(wanted)
