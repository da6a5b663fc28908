"""The table of published checkpoints (convert/published.py) holds together, and the docs say
what it says: docs/checkpoints.md's tables are generated from it (tools/zoo_docs.py) and the
README's configs table quotes its mask APs."""
import re
from urllib.parse import urlparse

import pytest

from solov2.config import CONFIGS
from solov2.convert import zoo
from solov2.convert.families import CONVERTERS
from solov2.convert.published import CONVERTER_SCRIPTS, PUBLISHED, PUBLISHERS, SHIPPED
from solov2.tools import zoo_docs
from tests.helpers import REPO_DIR

COCO = [row for row in PUBLISHED if not row.backbone and row.family != SHIPPED]


def test_names_files_and_converters_are_one_each():
    names = [row.name for row in PUBLISHED]
    files = [row.file for row in PUBLISHED]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)    # a mirror is keyed by file name
    assert set(CONVERTERS) == set(CONVERTER_SCRIPTS)
    for row in PUBLISHED:
        assert zoo.looks_like_name(row.name) and row.publisher in PUBLISHERS, row.name
        assert row.family == SHIPPED or row.family in CONVERTERS, row.name
        assert row.family == SHIPPED or (urlparse(row.url).scheme == 'https' and row.url.endswith('/' + row.file))
        assert all(urlparse(url).scheme == 'https' and url.endswith('/' + row.file) for url in row.mirrors)
        assert row.config is None or row.config in CONFIGS
        assert (REPO_DIR / CONVERTER_SCRIPTS[row.family]).is_file() if row.family != SHIPPED else True


@pytest.mark.parametrize('row', PUBLISHED, ids=[row.name for row in PUBLISHED])
def test_a_checksum_is_what_the_publisher_prints(row):
    """A whole SHA-256, or the 8 hex characters mmdetection's and torchvision's file names end
    in; none elsewhere, and none where the research could not read it (UNVERIFIED)."""
    suffix = re.search(r'-([0-9a-f]{8})\.pth$', row.file)
    if row.sha256 is None:
        assert row.family not in ('mmdet', 'torchvision') or row.publisher == 'openmmlab', row.name
        assert row.publisher != 'solo' or 'UNVERIFIED' in row.note
        return
    assert re.fullmatch(r'[0-9a-f]{8}|[0-9a-f]{64}', row.sha256)
    if row.family in ('mmdet', 'torchvision'):
        assert suffix and suffix.group(1) == row.sha256
    else:
        assert len(row.sha256) == 64


def test_coco_rows_convert_with_their_family_and_say_their_ap():
    for row in COCO:
        assert row.mask_ap is not None and 20 < row.mask_ap < 50, row.name
        assert row.config is None or row.config in CONVERTERS[row.family].default_configs, row.name
        assert row.config is not None or row.note, row.name      # not converted: the note says why
    assert all(row.top1 is None or 60 < row.top1 < 90 for row in PUBLISHED if row.backbone)


def test_the_checkpoints_page_is_generated_from_the_table():
    text = zoo_docs.PAGE.read_text(encoding='utf-8')
    assert zoo_docs.updated(text) == text, 'docs/checkpoints.md differs from the table: run python tools/zoo_docs.py'
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


def test_hubconf_offers_every_converted_coco_row_and_the_shipped_model():
    hubconf = (REPO_DIR / 'hubconf.py').read_text()
    assert "row.name.replace('/', '_')" in hubconf
    wanted = {row.name.replace('/', '_') for row in PUBLISHED if row.config is not None and not row.backbone}
    assert 'shipped_shapes_r18' in wanted and len(wanted) == len([r for r in COCO if r.config is not None]) + 1
