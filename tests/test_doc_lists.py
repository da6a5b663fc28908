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


def doc_item(page: str, start: str) -> str:
    """The list item of ``page`` that starts with ``start`` (up to the next item or paragraph)."""
    text = PAGES[page]
    at = text.index(start)
    return re.split(r'\n- |\n\s*\n', text[at + len(start):], maxsplit=1)[0]


def test_api_md_names_every_key_of_the_coco_records():
    """docs/api.md's ``to_coco`` item names each key of a COCO record as the code makes it (a field added to
    the per-instance record reaches the records under its own key: the page must say so)."""
    import numpy as np

    from solov2.data.results import instances_to_coco
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:5, 3:6] = True
    (record,) = instances_to_coco(1, mask, np.array([0]), np.array([0.9]), file_name='a.jpg', class_names=['x'])
    item = doc_item('api.md', '- `to_coco(')
    assert set(record) <= named(item), ('docs/api.md to_coco', sorted(set(record) - named(item)))


def test_the_pages_say_what_a_labelme_shape_carries():
    """What a written labelme shape's ``description`` holds ('score 0.873': the word before each number) is
    named where docs/api.md's ``to_labelme`` item and docs/own_data.md's step 6 describe the shapes."""
    import numpy as np

    from solov2.data.labelme import instance_shapes
    crop = np.zeros((6, 6), bool)
    crop[1:5, 1:5] = True
    shapes = instance_shapes(crop, (0, 0, 6, 6), 'x', 0.87, 1, 'polygon')
    carried = set(re.findall(r'([a-z_]+) [\d.]+', shapes[0]['description']))
    assert carried == {'score'}, shapes[0]['description']       # what the two pages below say
    own = PAGES['own_data.md']
    for page, text in (('api.md', doc_item('api.md', '- `to_labelme(')),
                       ('own_data.md', own[own.index('## 6.'):own.index('```bash', own.index('## 6.') + 200)])):
        sentence = re.search(r"[^.]*shape's\s+(?:`description`|description)[^.]*", text)
        assert sentence and carried <= set(re.findall(r'\w+', sentence.group(0))), (page, carried)


def test_serving_md_names_every_key_of_the_model_answer():
    """docs/serving.md's ``GET /v1/model`` item names each field of the answer's schema (serving/schema.py's
    ``Model``, which tests/serving/test_contract.py holds to the answer)."""
    schema = pytest.importorskip('solov2.serving.schema', reason='needs requirements-serve.txt')
    item = doc_item('serving.md', '- `GET /v1/model`:')
    fields = set(schema.Model.model_fields)
    assert fields <= named(item), ('docs/serving.md GET /v1/model', sorted(fields - named(item)))


def test_every_flag_of_train_and_export_is_in_its_page():
    """Each option of ``solov2 train`` is named in docs/training.md and each of ``solov2 export`` in
    docs/deployment.md (a flag added to the command and not to its page fails here)."""
    import contextlib
    import io

    from solov2.tools import export_model, train
    for main, page in ((train.main, 'training.md'), (export_model.main, 'deployment.md')):
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
            main(['--help'])
        options = shown.getvalue().split('\noptions:\n', 1)[1].split('\n\n', 1)[0]
        flags = set(re.findall(r'^  (?:-\w, )?(--[\w-]+)', options, re.M)) - {'--help', '--debug'}
        assert len(flags) > 5 and not [flag for flag in flags if flag not in PAGES[page]], (
            page, sorted(flag for flag in flags if flag not in PAGES[page]))
