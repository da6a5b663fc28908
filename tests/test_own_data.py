"""docs/own_data.md run as written: the ``python ...`` and ``mv`` commands of its bash blocks (convert,
look, fine-tune the shipped model, evaluate, draw, outline, move, convert again), in page order, on
generated labelme pictures of two classes whose validation split lacks one, in a folder outside the
package's own (``datasets/mine``). The test adds only what makes them take
seconds (a few iterations at 128 px, the dygraph backend); no class list is typed."""
import json
import re
import shlex
import subprocess

from solov2.core.paths import CACHE_ENV
from solov2.tools import browse, demo, labelme2coco, train
from solov2.tools import eval as eval_cli
from tests.helpers import REPO_DIR, make_labelme_folder

PAGE = REPO_DIR / 'docs' / 'own_data.md'
COMMANDS = {'tools/labelme2coco.py': labelme2coco.main, 'train.py': train.main, 'eval.py': eval_cli.main,
            'demo.py': demo.main, 'tools/browse.py': browse.main}
QUICK = {   # script: (flags put first, items added to its --opt)
    'train.py': (['--max-iters', '6', '--log-every', '3'],
                 ['num_workers=0', 'train_shorts=(128,)', 'train_max=128', 'test_short=128', 'test_max=128']),
    'eval.py': (['--backend', 'dygraph'], []),
    'demo.py': (['--backend', 'dygraph'], []),
}


def page_commands():
    """The ``python SCRIPT ARGS`` lines of the page's bash blocks as [SCRIPT, *ARGS], its ``mv`` lines as
    ['mv', LINE]."""
    blocks = re.findall(r'^```bash\n(.*?)^```', PAGE.read_text(encoding='utf-8'), re.MULTILINE | re.DOTALL)
    lines = '\n'.join(blocks).replace('\\\n', ' ').splitlines()
    return [shlex.split(line)[1:] if line.startswith('python ') else ['mv', line]
            for line in lines if line.startswith(('python ', 'mv '))]


def quick(command):
    """A page command's arguments with ``QUICK``'s additions."""
    flags, opts = QUICK.get(command[0], ([], []))
    args = list(command[1:])
    if opts:
        end = args.index('--opt') + 1
        while end < len(args) and not args[end].startswith('--'):
            end += 1
        args[end:end] = opts
    return flags + args


def page_lines(prefix):
    """The lines of the page's example output that start with ``prefix``."""
    return [line for line in PAGE.read_text(encoding='utf-8').splitlines() if line.startswith(prefix)]


def test_the_page_runs_on_two_classes_with_a_validation_split_that_lacks_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'cache'))
    (tmp_path / 'weights').symlink_to(REPO_DIR / 'weights', target_is_directory=True)
    make_labelme_folder(tmp_path / 'labelme' / 'train', 6, ('brick', 'egg'), seed=1)
    make_labelme_folder(tmp_path / 'labelme' / 'val', 2, ('egg',), seed=2)
    commands = page_commands()
    make_labelme_folder(tmp_path / 'outlined', 2, ('egg',), seed=3)
    (tmp_path / 'photos').mkdir()
    for picture in (tmp_path / 'outlined').glob('*.png'):          # pictures nobody outlined yet
        picture.rename(tmp_path / 'photos' / f'new{picture.name}')
    assert [c[0] for c in commands] == ['tools/labelme2coco.py', 'tools/labelme2coco.py', 'tools/browse.py',
                                        'train.py', 'eval.py', 'demo.py', 'demo.py', 'mv', 'tools/labelme2coco.py']
    assert not [a for c in commands for a in c if 'class_names' in a or 'num_classes' in a or a == '--classes']
    printed = []
    for command in commands:
        if command[0] == 'mv':
            subprocess.run(command[1], shell=True, check=True, cwd=tmp_path)
            continue
        code = COMMANDS[command[0]](quick(command))
        captured = capsys.readouterr()
        assert code == 0, (command, captured.err[-2000:])
        printed.append(captured.out)
    converted_train, converted_val, browsed, trained, evaluated, drawn, outlined, converted_again = printed

    assert not (tmp_path / 'data').exists()
    assert '6 pictures drawn in output/browse; instances per class: brick ' in browsed
    assert len(list((tmp_path / 'output' / 'browse').glob('*.jpg'))) == 6
    annotations = tmp_path / 'datasets' / 'mine' / 'annotations'
    train_coco, val_coco = (json.loads((annotations / f'instances_{s}.json').read_text()) for s in ('train', 'val'))
    assert train_coco['categories'] == val_coco['categories']
    assert [c['name'] for c in val_coco['categories']] == ['brick', 'egg']
    assert {a['category_id'] for a in val_coco['annotations']} == {2}
    assert (annotations / 'classes.txt').read_text() == 'brick\negg\n'
    assert 'classes.txt (kept); no instance of brick' in converted_val

    shown = page_lines('classes from ') + page_lines('start weights ') + page_lines("the model's classes")
    for line in shown:      # the page's example, verbatim
        assert line in trained.splitlines(), (line, trained)
    schedule = [line for line in trained.splitlines() if line.startswith('schedule: ')]
    assert schedule and 'warm-up over the first' in schedule[0] and 'after iteration' in schedule[0]
    meta = json.loads((tmp_path / 'output' / 'mine' / 'best' / 'model.json').read_text())
    assert meta['class_names'] == ['brick', 'egg'] and meta['start_weights'] == 'weights/shapes_r18.pdparams'

    unscored = 'datasets/mine/annotations/instances_val.json has no annotations of brick: scored on egg'
    assert unscored in trained and unscored in evaluated and 'mask AP' in evaluated + trained
    assert 'error' not in evaluated
    pictures = sorted(p.name for p in (tmp_path / 'output' / 'mine_demo').iterdir())
    assert pictures == ['000.jpg', '001.jpg'] and '2 images' in drawn
    assert '2 images' in outlined and not (tmp_path / 'labelme' / 'photos').exists()     # all moved, then removed
    train = tmp_path / 'labelme' / 'train'
    document = json.loads((train / 'new000.json').read_text())
    assert document['imagePath'] == 'new000.png' and (train / 'new000.png').is_file()
    assert {shape['label'] for shape in document['shapes']} <= {'brick', 'egg'}
    again = json.loads((annotations / 'instances_train.json').read_text())
    assert '8 images' in converted_again and {'new000.png', 'new001.png'} <= {i['file_name'] for i in again['images']}
    assert (tmp_path / 'datasets' / 'mine' / 'train' / 'new001.png').is_file()


def test_the_move_step_refuses_to_overwrite_a_file_of_the_same_name(tmp_path):
    """The page's ``mv`` line leaves a corrected file whose name the training folder has where it was, the
    training folder's own unchanged, and fails naming the folder it could not empty (before: a plain ``mv``
    replaced it without a word)."""
    (line,) = [command[1] for command in page_commands() if command[0] == 'mv']
    for folder in ('photos', 'train'):
        (tmp_path / 'labelme' / folder).mkdir(parents=True)
    (tmp_path / 'labelme' / 'train' / '0001.json').write_text('outlined by hand')
    (tmp_path / 'labelme' / 'photos' / '0001.json').write_text('the model, corrected')
    (tmp_path / 'labelme' / 'photos' / '0002.json').write_text('new')
    done = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and 'labelme/photos' in done.stderr, done
    assert (tmp_path / 'labelme' / 'train' / '0001.json').read_text() == 'outlined by hand'
    assert (tmp_path / 'labelme' / 'photos' / '0001.json').read_text() == 'the model, corrected'
    assert (tmp_path / 'labelme' / 'train' / '0002.json').read_text() == 'new'


def test_the_pages_working_folders_are_ignored_by_git():
    """Every top-level folder the page's commands read or write in a checkout is in .gitignore (before:
    ``labelme/`` and ``photos/`` were not)."""
    used = set()
    for command in page_commands():
        words = shlex.split(' '.join(command[1:]))
        for before, word in zip([''] + words, words):
            value = word.split('=')[-1]             # --opt dataset_dir=datasets/mine
            if not value.startswith(('-', '/')) and not value.endswith('.py') and (
                    '/' in value or before in ('--input', '--output')):
                used.add(value.split('/')[0])
    ignored = {line.strip('/') for line in (REPO_DIR / '.gitignore').read_text().splitlines()
               if re.fullmatch(r'/?[\w.-]+/', line)}
    assert {'labelme', 'photos', 'datasets', 'output'} <= used and used - {'weights', 'tools'} <= ignored, used
