"""The toolkit's own loop, as a new user runs it: the demo's results (`--save-json`, or the service page's COCO
download) scored with `eval.py --json-only` against the ground truth `labelme2coco` makes from the same run's
`--save-labelme` files. Every record carries file_name and category_name: matched by them, the model's own masks
score 100.00 (once refused, image ids 0..N-1 against 1..N, and 52.37 with the image ids mapped by hand: classes
numbered in the model's order against name order)."""
import json
import shutil

import pytest

from solov2 import SAMPLE_IMAGES
from solov2.core.paths import SHIPPED_WEIGHTS
from solov2.tools import demo as demo_cli
from solov2.tools import eval as eval_cli
from solov2.tools import labelme2coco

PICTURES = ('shapes_000023.jpg', 'shapes_000042.jpg', 'shapes_000057.jpg', 'shapes_000083.jpg')


@pytest.fixture(scope='module')
def loop(tmp_path_factory):
    """(folder, the demo's --save-json results, labelme2coco's ground truth of its --save-labelme files)."""
    folder = tmp_path_factory.mktemp('loop')
    (folder / 'in').mkdir()
    for name in PICTURES:
        shutil.copy(f'{SAMPLE_IMAGES}/{name}', folder / 'in' / name)
    assert demo_cli.main(['--weights', SHIPPED_WEIGHTS, '--input', str(folder / 'in'), '--output', str(folder / 'out'),
                          '--save-json', str(folder / 'results.json'), '--save-labelme', str(folder / 'labelme'),
                          '--backend', 'dygraph', '--device', 'cpu']) == 0
    assert labelme2coco.main([str(folder / 'labelme'), str(folder / 'gt.json')]) == 0
    return folder, folder / 'results.json', folder / 'gt.json'


def mask_ap(capsys, ann, results) -> str:
    assert eval_cli.main(['--config', '9', '--ann', str(ann), '--json-only', str(results), '--device', 'cpu']) == 0
    lines = capsys.readouterr().out.splitlines()
    return lines[lines.index('mask AP (%)') + 2].split()[0]


def test_the_demo_scores_100_on_its_own_labelme_files(loop, capsys):
    folder, results, gt = loop
    records, truth = json.loads(results.read_text()), json.loads(gt.read_text())
    assert sorted({r['image_id'] for r in records}) == sorted(image['id'] for image in truth['images'])  # 1..N
    assert [c['name'] for c in truth['categories']] != ['circle', 'square', 'triangle', 'star']         # name order
    assert mask_ap(capsys, gt, results) == '100.00'


def test_the_page_download_scores_100_on_the_same_files(loop, capsys):
    """The service page's "COCO results" download of each picture (image_id 0 each: the page knows no
    dataset), put together, scores as the demo's records."""
    running = pytest.importorskip('tests.serving.running')
    from solov2.serving.app import ServeSettings
    folder, _, gt = loop
    downloads = []
    with running.serving(ServeSettings(model=running.SMALL_MODEL)) as client:
        for name in PICTURES:
            answer = client.post('/v1/segment', params={'format': 'coco', 'min_score': 0, 'name': name},
                                 content=(folder / 'in' / name).read_bytes())
            assert answer.status_code == 200, answer.text
            downloads += answer.json()
    assert {r['image_id'] for r in downloads} == {0}
    (folder / 'page.json').write_text(json.dumps(downloads))
    assert mask_ap(capsys, gt, folder / 'page.json') == '100.00'
