"""train.py end to end on a tiny shapes dataset: the loss goes down, resume is exact,
checkpoints are atomic."""
import contextlib
import json
import logging
import shutil
import types

import numpy as np
import pytest

from solov2.api import Segmenter, evaluate
from solov2.api.training import TrainOptions
from solov2.api.training import train as train_from_python
from solov2.model.checkpoint import CheckpointError, load_paddle_params
from solov2.model.training import run as run_module
from solov2.model.training.hooks import EvalHook
from solov2.model.training.run_log import RunLog, significant
from solov2.model.training.state import find_checkpoint, save_training_state
from solov2.model.training.trainer import TrainState
from solov2.tools import train
from tests.helpers import REPO_DIR, TINY_TRAINING, launch_two_cpu_processes, make_tiny_shapes

TINY = TINY_TRAINING


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp('shapes'))


@pytest.fixture(scope='module')
def trained(shapes, tmp_path_factory):
    """``trained(*options)`` -> the run folder of ``_run`` with those options, trained once a
    module for the tests that start from it (each on its own ``_copy``)."""
    done = {}

    def run(*options):
        if options not in done:
            out = tmp_path_factory.mktemp('trained') / 'run'
            assert _run(shapes, out, *options) == 0
            done[options] = out
        return done[options]
    return run


def _copy(run, tmp_path, name='run'):
    """A test's own copy of the run folder ``run`` (a run folder records no path of its own)."""
    return shutil.copytree(run, tmp_path / name)


def _run(shapes, out, *extra):
    return train.main(['--config', '9', '--output', str(out), '--log-every', '1',
                       '--checkpoint-every', '100', '--opt', f'dataset_dir={shapes}', *TINY, *extra])


def _weights(out, tag='last', name='model.pdparams'):
    return load_paddle_params(str(out / tag / name))


def test_interrupted_and_resumed_run_equals_uninterrupted(shapes, tmp_path):
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    assert _run(shapes, straight, '--max-iters', '4') == 0
    assert _run(shapes, resumed, '--max-iters', '3') == 0       # stops mid-epoch 2
    assert _run(shapes, resumed, '--max-iters', '4', '--resume', 'auto') == 0
    for name in ('model.pdparams', 'ema.pdparams'):
        a, b = _weights(straight, name=name), _weights(resumed, name=name)
        assert a.keys() == b.keys()
        worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
        assert worst <= 1e-6, (name, worst)
    logs = (resumed / 'train_log.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in logs[1:]] == ['1', '2', '3', '4']
    assert (resumed / 'curves.png').is_file() and (resumed / 'best' / 'model.json').is_file()


def test_time_budget_stops_training_after_saving(trained):
    out = trained('--max-minutes', '1e-4')                       # spent after the first step
    logs = (out / 'train_log.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in logs[1:]] == ['1']
    assert find_checkpoint(str(out / 'last')) is not None


def test_interrupted_save_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    out = _copy(trained('--max-iters', '1'), tmp_path)
    before = _weights(out)
    import solov2.model.training.state as train_state

    def crash(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr(train_state.paddle, 'save', crash)
    import paddle

    from solov2.config import CONFIGS
    from solov2.model.build import build_model
    net = build_model(CONFIGS[9])
    opt = paddle.optimizer.Momentum(0.1, parameters=net.parameters())
    with pytest.raises(OSError):
        save_training_state(out, 'last', net, opt, {'iteration': 99}, 9, CONFIGS[9])
    after = _weights(out)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert not [p for p in out.iterdir() if p.name.startswith('.')]   # the temporary folder is removed
    (out / 'last').rename(out / 'last.old')            # crash between the two renames
    assert find_checkpoint(str(out / 'last')) == out / 'last.old'


def test_bad_arguments_fail_in_one_line(shapes, tmp_path, capsys):
    assert train.main(['--config', '9', '--output', str(tmp_path), '--opt', 'dataset_dir=/nowhere']) == 2
    assert train.main(['--config', '9', '--output', str(tmp_path), '--resume', str(tmp_path / 'x'),
                       '--opt', f'dataset_dir={shapes}', *TINY]) == 2
    assert train.main(['--config', '9', '--output', str(tmp_path), '--opt', f'dataset_dir={shapes}',
                       *TINY, "lr_schedule='linear'"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith('error: ') for line in errors)


def test_amp_where_paddle_cannot_run_it_trains_in_float32_saying_so(shapes, tmp_path, capsys):
    """Paddle's auto_cast does nothing on a CPU place: --amp bf16 --device cpu trains (in
    float32) and says so; the checkpoint records no loss scaler (bf16 has none)."""
    out = tmp_path / 'amp'
    assert _run(shapes, out, '--max-iters', '2', '--amp', 'bf16', '--device', 'CPU') == 0
    assert "warning: amp='bf16' needs a GPU (Paddle's auto_cast does nothing on the CPU); training in float32" in (
        capsys.readouterr().out)
    assert json.loads((out / 'last' / 'state.json').read_text())['scaler'] == {}


def test_ranks_share_rank0_minutes_and_the_mean_positives(tmp_path):
    """The time-based LR and stop read rank 0's clock on every rank, whatever their own says,
    and the loss is normalised by the positives averaged over the ranks."""
    script = tmp_path / 'clock.py'
    script.write_text(
        'import types, paddle, paddle.distributed as dist\n'
        'from solov2.model.training.distributed import mean_positives, rank0_minutes\n'
        'paddle.set_device("cpu"); dist.init_parallel_env()\n'
        'rank = dist.get_rank()\n'
        'assert rank0_minutes(1.5 + 10 * rank, 2) == 1.5\n'
        'assert rank0_minutes(7.25, 1) == 7.25\n'
        'targets = types.SimpleNamespace(num_masks=3 + 4 * rank, num_positives=2 + 2 * rank)\n'
        'assert mean_positives(targets, 2) == (5.0, 3.0)\n'
        'assert mean_positives(targets, 1) is None\n')
    launch_two_cpu_processes(tmp_path, str(script))


def test_two_cpu_processes_train_under_a_time_budget(shapes, tmp_path):
    """Data parallel on CPU (gloo, one math thread each): both ranks stop at the budget."""
    out = tmp_path / 'parallel'
    launch_two_cpu_processes(tmp_path, str(REPO_DIR / 'train.py'), '--config', '9', '--device', 'cpu',
                             '--output', str(out), '--log-every', '1', '--max-minutes', '0.03',
                             '--opt', f'dataset_dir={shapes}', *TINY, 'epochs=500')
    logs = (out / 'train_log.csv').read_text().splitlines()
    stopped_at = int(logs[-1].split(',')[0])
    assert 1 <= stopped_at < 500                     # the budget, not the epochs, ended it
    assert 'batch 4' in (tmp_path / 'logs' / 'workerlog.0').read_text()   # 2 ranks x 2 images


def test_training_lowers_the_loss(shapes, tmp_path):
    """Eight epochs on six images: the mean loss of the last logged iterations is well below
    that of the first ones (the model learns, not merely runs)."""
    out = tmp_path / 'learn'
    assert _run(shapes, out, 'epochs=8') == 0
    rows = (out / 'train_log.csv').read_text().splitlines()
    header = rows[0].split(',')
    losses = [float(row.split(',')[header.index('loss')]) for row in rows[1:]]
    assert len(losses) == 24
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < 0.8 * first, (first, last)


def test_visualdl_log_has_the_curves_and_a_picture(shapes, tmp_path):
    LogReader = pytest.importorskip('visualdl', reason='needs VisualDL (requirements-test.txt)').LogReader
    out, vdl = tmp_path / 'run', tmp_path / 'vdl'
    assert _run(shapes, out, '--max-iters', '2', '--vdl-dir', str(vdl)) == 0
    (log_file,) = vdl.iterdir()
    reader = LogReader(file_path=str(log_file))
    tags = reader.get_tags()
    for name in ('train/loss', 'train/loss_ins', 'train/loss_cate', 'train/lr', 'train/iterations_per_s',
                 'eval/AP', 'eval/AP50'):
        assert name in tags['scalar'], name
    assert [r.id for r in reader.get_data('scalar', 'train/loss')] == [1, 2]
    assert [r.id for r in reader.get_data('scalar', 'eval/AP')] == [2]
    assert tags['image'] == ['eval/picture']


def test_non_finite_weights_are_never_saved(trained, tmp_path):
    """A run whose weights turn NaN stops with one line and keeps the healthy checkpoint."""
    out = _copy(trained('--max-iters', '1'), tmp_path)
    healthy = _weights(out)
    import paddle

    from solov2.config import CONFIGS
    from solov2.model.build import build_model
    net = build_model(CONFIGS[9])
    first = next(p for p in net.parameters() if p.ndim == 4)
    first.set_value(np.full(first.shape, np.nan, np.float32))
    opt = paddle.optimizer.Momentum(0.1, parameters=net.parameters())
    with pytest.raises(CheckpointError, match='not finite'):
        save_training_state(out, 'last', net, opt, {'iteration': 99}, 9, CONFIGS[9])
    kept = _weights(out)
    assert all(np.array_equal(healthy[k], kept[k]) for k in healthy)
    assert not [p for p in out.iterdir() if p.name.startswith('.')]   # no temporary folder left


def test_a_nan_loss_stops_the_run_in_one_line(shapes, tmp_path, capsys):
    out = tmp_path / 'diverge'
    assert _run(shapes, out, '--max-iters', '3', '--opt', f'dataset_dir={shapes}', *TINY,
                'base_lr=1e30', 'warmup_iters=0', 'grad_clip=0.0') == 1
    printed = capsys.readouterr()
    errors = printed.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith('error: ') and 'no checkpoint was saved' in errors[0]
    logged = [line.split()[1] for line in printed.out.splitlines() if line.startswith('iter ')]
    assert f'at iteration {len(logged) + 1};' in errors[0] and logged == [f'{k}/3' for k in range(1, len(logged) + 1)]


def test_a_run_folder_belongs_to_one_run(shapes, trained, tmp_path, capsys):
    out = _copy(trained('--max-iters', '1'), tmp_path)
    assert _run(shapes, out, '--max-iters', '1') == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('error: ') and "resume='auto'" in error and 'overwrite=True' in error
    assert _run(shapes, out, '--max-iters', '2', '--overwrite') == 0
    rows = (out / 'train_log.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in rows[1:]] == ['1', '2']


def test_resume_keeps_the_time_budget_and_drops_log_rows_past_the_checkpoint(shapes, trained, tmp_path, capsys):
    out = _copy(trained('--max-minutes', '1e-4'), tmp_path, 'budget')     # spent after the first step
    with open(out / 'train_log.csv', 'a') as log:                    # logged after the checkpoint
        log.write('7,1,0.1,0.001,1.0,1.0,1.0,1.0\n')
    capsys.readouterr()
    assert _run(shapes, out, '--resume', 'auto') == 0                # no --max-minutes: the run's own
    assert (f'{out} is finished at iteration 1: its 0.0001-minute budget is spent; to train on, resume with a '
            'larger max_minutes=') in capsys.readouterr().out
    rows = (out / 'train_log.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in rows[1:]] == ['1']
    assert '"max_minutes": 0.0001' in (out / 'last' / 'state.json').read_text()


def test_resume_auto_on_a_finished_run_does_nothing_but_name_the_option_to_train_on(shapes, trained, tmp_path,
                                                                                    capsys):
    out = tmp_path / 'run'
    assert _run(shapes, out) == 0                                    # the config's 2 epochs: 6 iterations
    stopped = _copy(trained('--max-iters', '2'), tmp_path, 'stopped')
    files = {name: (out / name).read_bytes() for name in ('train_log.csv', 'eval_log.csv', 'last/state.json',
                                                          'best/model.pdparams', 'curves.png')}
    capsys.readouterr()
    assert _run(shapes, out, '--resume', 'auto') == 0
    printed = capsys.readouterr().out
    more = [f'dataset_dir={shapes}', *TINY[:-1], 'epochs=4', 'lr_steps=(1.75, 1.9)']   # the drops (at 2 epochs) stay
    assert (f'{out} is finished at iteration 6, the end of its 2 epochs; to train on, resume with more epochs, '
            f'e.g. overrides={more!r}\n') in printed
    assert 'eval @' not in printed and 'iter ' not in printed
    assert {name: (out / name).read_bytes() for name in files} == files
    assert _run(shapes, stopped, '--resume', 'auto', '--max-iters', '2') == 0
    assert (f'{stopped} is finished at iteration 2 (max_iters=2); to train on, resume with a max_iters= above 2 '
            '(the schedule has 6)') in capsys.readouterr().out
    assert [line.split(',')[0] for line in (stopped / 'eval_log.csv').read_text().splitlines()[1:]] == ['2']


def test_a_run_whose_only_checkpoint_is_best_continues_from_it(shapes, trained, tmp_path, capsys):
    """--eval-every shorter than --checkpoint-every can leave best/ without last/."""
    out = _copy(trained('--max-iters', '2'), tmp_path)
    shutil.rmtree(out / 'last')
    assert _run(shapes, out, '--max-iters', '3') == 2                # still a run: not started over
    assert "resume='auto'" in capsys.readouterr().err
    assert _run(shapes, out, '--max-iters', '3', '--resume', 'auto') == 0
    assert f'resumed from {out / "best"} at iteration 2' in capsys.readouterr().out
    assert [line.split(',')[0] for line in (out / 'train_log.csv').read_text().splitlines()[1:]] == ['1', '2', '3']


def test_resume_refuses_another_config_and_damaged_state_in_one_line(shapes, trained, tmp_path, capsys):
    out = _copy(trained('--max-iters', '1'), tmp_path)
    assert train.main(['--config', '5', '--output', str(out), '--resume', 'auto',
                       '--opt', f'dataset_dir={shapes}', *TINY]) == 2
    assert 'was trained with config=9, not config=5: resume with config=9' in capsys.readouterr().err
    (out / 'last' / 'state.json').write_text('{"iteration": ')
    assert _run(shapes, out, '--resume', 'auto') == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('error: ') and 'state.json is damaged' in error and '\n' not in error


def test_resume_without_opt_continues_with_the_runs_overrides(trained, tmp_path, capsys):
    out = _copy(trained('--max-iters', '1'), tmp_path)
    assert train.main(['--config', '9', '--output', str(out), '--resume', 'auto', '--log-every', '1',
                       '--max-iters', '2']) == 0
    assert "resuming with the run's overrides=[" in capsys.readouterr().out
    rows = (out / 'train_log.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in rows[1:]] == ['1', '2']


def test_resume_sets_every_weight_from_the_checkpoint_and_reads_no_start_weights(shapes, tmp_path, capsys,
                                                                                  monkeypatch):
    """A resumed run builds no random weights and loads no pretrained file (the checkpoint sets
    every weight): the run's command resumes after its start weights are gone."""
    start, out = tmp_path / 'start.pdparams', tmp_path / 'run'
    shutil.copy(REPO_DIR / 'weights' / 'shapes_r18.pdparams', start)
    assert _run(shapes, out, '--max-iters', '1', '--opt', f'pretrained={start}') == 0      # --opt twice: both kept
    start.unlink()
    built = []
    build_model = run_module.build_model
    monkeypatch.setattr(run_module, 'build_model', lambda cfg, **kw: built.append(kw) or build_model(cfg, **kw))
    capsys.readouterr()
    assert _run(shapes, out, '--max-iters', '2', '--resume', 'auto', '--opt', f'pretrained={start}') == 0
    assert f'resumed from {out / "last"} at iteration 1' in capsys.readouterr().out
    assert built == [{'random_weights': False}]


def test_train_from_python_returns_the_summary_and_logs_instead_of_printing(shapes, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger='solov2.model')
    started = []
    summary = train_from_python(
        TrainOptions(config=9, output=str(tmp_path / 'run'), overrides=(f'dataset_dir={shapes}', *TINY),
                     max_iters=2, log_every=1, weights=str(REPO_DIR / 'weights' / 'shapes_r18.pdparams')),
        on_start=lambda trainer, out: started.append((trainer.state.iteration, out)))
    assert capsys.readouterr().out == ''
    assert started == [(0, tmp_path / 'run')]
    assert summary.iteration == 2 and summary.best_iteration == 2 and summary.run_folder == tmp_path / 'run'
    assert summary.best_weights == tmp_path / 'run' / 'best' / 'ema.pdparams' and summary.best_weights.is_file()
    assert find_checkpoint(str(summary.last_checkpoint)) == tmp_path / 'run' / 'last'
    state = json.loads((summary.last_checkpoint / 'state.json').read_text())
    assert 0 <= summary.best_ap <= 100 and summary.best_ap == pytest.approx(100 * state['best_ap'])
    seg = Segmenter(str(summary.best_weights), backend='dygraph', device='cpu', overrides=TINY)
    stats = evaluate(seg, str(shapes / 'annotations' / 'instances_val.json'), str(shapes / 'val'))
    assert stats['AP'] == pytest.approx(summary.best_ap, abs=0.01)       # training scores as evaluate() does
    assert state['ema_updates'] == 2 and state['max_minutes'] == 0
    assert any(m.startswith('iter 1/2 epoch 1 ') for m in caplog.messages)
    assert any(m.startswith('eval @ 2: mask AP ') for m in caplog.messages)


def test_evaluation_swaps_the_ema_in_once_and_reports_percent(tmp_path):
    """One EMA swap gives both the metrics and the picture; evaluate's percent (solov2.api.evaluate)
    go to the log line and eval_log.csv as they are, the state keeps COCO's fraction (comparable
    across resumes)."""
    import paddle

    from solov2.model.training.ema import ModelEMA

    class Counted(paddle.nn.Linear):
        swaps = 0

        def set_state_dict(self, *args, **kwargs):
            Counted.swaps += 1
            return super().set_state_dict(*args, **kwargs)

    model = Counted(2, 2)
    ema = ModelEMA(model)
    ema.shadow['weight'].set_value(np.full((2, 2), 7.0, np.float32))
    seen = []

    def evaluate(net, cfg, processes, placement):
        seen.append(float(net.weight.numpy()[0, 0]))
        return {'AP': 2.8, 'AP50': 10.0, 'AP75': 1.23456}

    def picture(net, cfg, placement):
        seen.append(float(net.weight.numpy()[0, 0]))
        return np.zeros((4, 4, 3), np.uint8)

    saved = []
    hook, reported = EvalHook(evaluate, saved.append, RunLog(tmp_path), 0, picture), []
    hook.report = lambda *heard: reported.append(heard)
    trainer = types.SimpleNamespace(model=model, ema=ema, cfg=None, state=TrainState(iteration=5, minutes=0.5),
                                    hold=contextlib.nullcontext)
    hook.after_train(trainer)
    assert seen == [7.0, 7.0] and Counted.swaps == 2          # EMA in, training weights back: one swap
    assert float(model.weight.numpy()[0, 0]) != 7.0
    assert saved == ['best'] and trainer.state.best_ap == pytest.approx(0.028)
    rows = (tmp_path / 'eval_log.csv').read_text().splitlines()
    assert rows[0].startswith('iteration,minutes,AP,AP50,AP75') and rows[1] == '5,0.5,2.8,10.0,1.23'
    assert reported[0][0] == 5 and reported[0][2].shape == (4, 4, 3)


def test_log_values_have_no_float_noise():
    assert significant(0.00020810000000000002) == 0.0002081 and repr(significant(0.1 + 0.2)) == '0.3'


def test_the_command_lines_defaults_are_the_options_defaults():
    assert train.options_from_args(train.parse_args(['--config', '9'])) == TrainOptions(config=9)
    options = train.options_from_args(train.parse_args(['--config', '9', '--opt', 'a=1', 'b=2', '--amp']))
    assert options.overrides == ('a=1', 'b=2') and options.amp


def test_resume_given_a_model_file_names_the_option_that_starts_from_it(tmp_path):
    from solov2.core.paths import SHIPPED_WEIGHTS
    with pytest.raises(CheckpointError, match=r"is a model, not a training checkpoint: start a new run from it "
                                              r"with weights='.*shapes_r18\.pdparams' \(resume= continues"):
        find_checkpoint(SHIPPED_WEIGHTS)
    (tmp_path / 'last').mkdir()
    (tmp_path / 'last' / 'state.json').write_text('{"iteration": 3}')
    (tmp_path / 'last' / 'model.pdparams').write_bytes(b'')
    with pytest.raises(CheckpointError, match=f"model file: resume from its checkpoint folder, resume='{tmp_path}/la"):
        find_checkpoint(str(tmp_path / 'last' / 'model.pdparams'))


def test_classes_from_a_file_in_its_order_and_start_weights_that_clash_are_refused(shapes, tmp_path, capsys):
    from solov2.core.paths import SHIPPED_WEIGHTS
    (tmp_path / 'classes.txt').write_text('star\ntriangle\nsquare\ncircle\n')
    out = tmp_path / 'run'
    assert _run(shapes, out, '--max-iters', '1', '--classes', str(tmp_path / 'classes.txt')) == 0
    assert (f'classes from {tmp_path / "classes.txt"}: star, triangle, square, circle (config 9 has 4: circle, '
            'square, triangle, star)') in (printed := capsys.readouterr().out)
    assert (f"the model's classes matched by name to the categories of {shapes}/annotations/instances_train.json "
            '(label->category id): star 0->4, triangle 1->3, square 2->2, circle 3->1') in printed
    assert json.loads((out / 'last' / 'model.json').read_text())['class_names'] == ['star', 'triangle', 'square',
                                                                                    'circle']
    nosidecar = tmp_path / 'nosidecar.pdparams'
    nosidecar.write_bytes(open(SHIPPED_WEIGHTS, 'rb').read())
    cases = [
        (['--weights', str(nosidecar)], 'has no sidecar .json naming its config — pass --config N as well'),
        ([], 'pass --config N (a config number), or --weights a model whose sidecar .json names one'),
        (['--config', '9', '--weights', SHIPPED_WEIGHTS, '--opt', f'dataset_dir={shapes}', *TINY,
          f'pretrained={SHIPPED_WEIGHTS}'], 'both give start weights'),
        (['--config', '9', '--classes', str(tmp_path / 'classes.txt'), '--opt', f'dataset_dir={shapes}', *TINY,
          'num_classes=4', "class_names=('a', 'b', 'c', 'd')"],
         '--classes and --opt class_names and num_classes both give the classes — use one'),
    ]
    for argv, fragment in cases:
        assert train.main(['--output', str(tmp_path / 'other'), *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith('error: ') and fragment in error and '\n' not in error, error


def test_a_training_run_resolves_its_device_once(shapes, tmp_path, monkeypatch):
    """The placement's device (``run.run_settings``) is the one the model is built on: one
    ``resolve_device`` a run."""
    from solov2.model.training import run
    real, resolved = run.resolve_device, []
    monkeypatch.setattr(run, 'resolve_device', lambda device: resolved.append(device) or real(device))
    train_from_python(TrainOptions(config=9, output=str(tmp_path / 'run'), max_iters=1, device='cpu', threads=1,
                                   overrides=(f'dataset_dir={shapes}', *TINY)))
    assert resolved == ['cpu']
