"""What the code declares once, the docs list as declared: the per-instance record's fields
(``data.results.RECORD_FIELDS``) wherever a page spells out an answer's instance or an
``Instance``, and the options of ``ModelSpec``, ``TrainOptions`` and ``ServeSettings`` wherever a
page lists them. A field added in code and not in the docs fails here."""
import dataclasses
import inspect
import re

import pytest

from solov2.api.segmenter import Segmenter
from solov2.data.results import MASK_KEYS, RECORD_FIELDS
from solov2.model.inference.backend_factory import ModelSpec
from solov2.model.training.options import TrainOptions
from tests.helpers import REPO_DIR

PAGES = {path.name: path.read_text(encoding='utf-8') for path in [REPO_DIR / 'README.md',
                                                                   *sorted((REPO_DIR / 'docs').glob('*.md'))]}
RECORD = [key for key, _, _ in RECORD_FIELDS]
ANSWER_SHOWN = re.compile(r"""['"]instances['"]: \[\{(.*?)\}, \.\.\.\]""", re.DOTALL)     # to_dict() spelled out
INSTANCE_SHOWN = re.compile(r'one Instance each: ([\w, ]+)|Iterating gives one `Instance` per instance \((.*?)\);',
                            re.DOTALL)


def named(text: str) -> set:
    """The names ``text`` gives in backticks, as fields: `threads`, `--model-dir` (model_dir), `--opt` (overrides)."""
    names = {name.replace('-', '_') for name in re.findall(r'`-{0,2}([a-z][\w-]*)', text)}
    return names | ({'overrides'} if 'opt' in names else set())


def test_every_answer_a_page_spells_out_has_the_declared_fields():
    shown = [(page, match.group(1)) for page, text in PAGES.items() for match in ANSWER_SHOWN.finditer(text)]
    assert {page for page, _ in shown} >= {'api.md', 'serving.md'}
    for page, keys in shown:
        assert re.findall(r"""['"](\w+)['"]""", keys) == RECORD + [MASK_KEYS['rle']], page


def test_every_instance_a_page_describes_has_the_declared_fields():
    shown = [(page, match.group(1) or match.group(2)) for page, text in PAGES.items()
             for match in INSTANCE_SHOWN.finditer(text)]
    assert {page for page, _ in shown} >= {'api.md', 'README.md'}
    for page, text in shown:
        assert set(RECORD) <= set(re.findall(r'\w+', text)), (page, text)


@pytest.mark.parametrize('options, pages_naming', [(ModelSpec, None), (TrainOptions, None),
                                                    ('ServeSettings', '`ServeSettings`')])
def test_every_list_of_a_dataclass_fields_names_them_all(options, pages_naming):
    """A paragraph that names more than half of the fields (as `name` or `--flag`) names them
    all (``ServeSettings``: one that also names it; the service's flag table has no ``model``)."""
    if isinstance(options, str):
        options = pytest.importorskip('solov2.serving.app', reason='needs requirements-serve.txt').ServeSettings
    fields = {field.name for field in dataclasses.fields(options)}
    lists = [(page, paragraph) for page, text in PAGES.items() for paragraph in re.split(r'\n\s*\n', text)
             if len(named(paragraph) & fields) > len(fields) / 2 and (pages_naming or '') in paragraph]
    assert lists
    for page, paragraph in lists:
        assert fields <= named(paragraph), (page, sorted(fields - named(paragraph)), paragraph[:80])


def test_the_model_options_are_described_in_api_md_and_the_docstrings():
    """docs/api.md's "Loading a model" gives each ``ModelSpec`` field its item, and only
    ``Segmenter``'s own keywords beside them; ``ModelSpec``'s and ``Segmenter``'s docstrings name each."""
    fields = [field.name for field in dataclasses.fields(ModelSpec)]
    section = PAGES['api.md'].split('## Loading a model', 1)[1].split('\n## ', 1)[0]
    items = {name for lead in re.findall(r'^- ((?:`\w+`(?:, )?)+):', section, re.MULTILINE)
             for name in re.findall(r'`(\w+)`', lead)}
    own = set(inspect.signature(Segmenter).parameters) - {'weights', 'model'}
    assert set(fields) <= items and items - set(fields) <= own, sorted(set(fields) ^ items)
    for name in fields:
        assert f'``{name}``' in (ModelSpec.__doc__ or ''), name
        assert re.search(rf'\b{name}[,:]', Segmenter.__doc__ or ''), name
