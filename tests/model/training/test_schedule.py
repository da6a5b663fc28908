"""Learning-rate schedule: warm-up, step and cosine decay, time-budget progress (hand-computed)."""
import math

import pytest

from solov2.model.training.schedule import (
    cosine_decay,
    learning_rate,
    scaled_lr,
    schedule_line,
    step_decay,
    training_progress,
    warmup_factor,
)


def test_warmup_rises_linearly_from_the_ratio_to_one():
    assert warmup_factor(0, 100, 0.01) == pytest.approx(0.01)
    assert warmup_factor(50, 100, 0.01) == pytest.approx(0.505)
    assert warmup_factor(100, 100, 0.01) == 1.0 and warmup_factor(5000, 100, 0.01) == 1.0
    assert warmup_factor(0, 0, 0.01) == 1.0


def test_step_decay_counts_the_steps_reached():
    assert step_decay(0.74, (0.75, 0.9), 0.1) == 1.0
    assert step_decay(0.75, (0.75, 0.9), 0.1) == pytest.approx(0.1)
    assert step_decay(0.95, (0.75, 0.9), 0.5) == pytest.approx(0.25)


def test_cosine_decay_runs_from_one_to_zero_and_clips():
    assert cosine_decay(0.0) == 1.0 and cosine_decay(-0.3) == 1.0
    assert cosine_decay(0.5) == pytest.approx(0.5)
    assert cosine_decay(0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_decay(1.0) == pytest.approx(0.0) and cosine_decay(1.7) == pytest.approx(0.0)


def test_progress_follows_whichever_of_iterations_and_time_is_further():
    assert training_progress(300, 1200) == 0.25
    assert training_progress(300, 1200, minutes=10.0) == 0.25          # no budget: time ignored
    assert training_progress(300, 1200, minutes=15.0, budget_minutes=30.0) == 0.5
    assert training_progress(900, 1200, minutes=3.0, budget_minutes=30.0) == 0.75
    assert training_progress(300, 1200, minutes=45.0, budget_minutes=30.0) == 1.0


def test_learning_rate_combines_warmup_and_decay():
    assert learning_rate('step', 0, 0.0, 0.02, 10, 0.1, (0.5,), 0.1) == pytest.approx(0.002)
    assert learning_rate('step', 150, 0.6, 0.02, 10, 0.1, (0.5,), 0.1) == pytest.approx(0.002)
    assert learning_rate('step', 150, 0.4, 0.02, 10, 0.1, (0.5,), 0.1) == pytest.approx(0.02)
    assert learning_rate('cosine', 5, 0.5, 0.02, 10, 0.1) == pytest.approx(0.02 * 0.55 * 0.5)
    assert learning_rate('cosine', 500, 1.0, 0.02, 10, 0.1) == pytest.approx(0.0)


def test_linear_scaling_rule():
    assert scaled_lr(0.01, 16, 8) == pytest.approx(0.005)


# ---- the schedule fitted to the run ---------------------------------------------------------------

def _fitted(overrides, per_epoch, max_iters=0, max_minutes=0.0):
    """(fitted config, notes, the schedule line) of config 9 under ``overrides``."""
    from solov2.config import CONFIGS, with_overrides
    from solov2.model.training.schedule import fit_schedule, schedule_line
    from solov2.model.training.start import named_settings
    from solov2.model.training.trainer import Schedule
    cfg, notes = fit_schedule(with_overrides(CONFIGS[9], overrides), CONFIGS[9], named_settings(overrides), per_epoch)
    total = cfg.epochs * per_epoch
    schedule = Schedule(cfg.base_lr, total, per_epoch, max_iters or total, max_minutes,
                        [e / cfg.epochs for e in cfg.lr_steps])
    return cfg, notes, schedule_line(cfg, schedule, cfg.batch_size)


def test_an_unchanged_config_keeps_its_schedule():
    from solov2.config import CONFIGS
    cfg, notes, line = _fitted([], 150)
    assert cfg is CONFIGS[9] and notes == []
    assert line == ('schedule: 12000 iterations (80 epochs of 150, batch 4): warm-up over the first 200, lr 0.002, '
                    'x0.1 after iteration 10500 (epoch 70) and 11400 (epoch 76)')


def test_lr_steps_scale_with_the_epochs_and_the_log_states_them_in_iterations():
    cfg, notes, line = _fitted(['epochs=400'], 150, max_minutes=30)
    assert cfg.lr_steps == (350, 380) and cfg.warmup_iters == 200
    assert notes == ['lr_steps (70, 76) (epochs of 80) scaled to (350, 380) for 400 epochs']
    assert line.startswith('schedule: 60000 iterations (400 epochs of 150, batch 4): warm-up over the first 200, '
                           'lr 0.002, x0.1 after iteration 52500 (epoch 350) and 57000 (epoch 380); or after 30 min')
    cfg, _, line = _fitted(['epochs=10'], 150, max_iters=900)
    assert cfg.lr_steps == (8.75, 9.5) and 'after iteration 1313 (epoch 8.75) and 1425 (epoch 9.5)' in line
    assert line.endswith('; stops after iteration 900 (max_iters)')


def test_a_long_warm_up_is_cut_to_a_tenth_of_a_short_run_unless_named():
    cfg, notes, line = _fitted([], 4)                                  # 320 iterations: 200 would be 62%
    assert cfg.warmup_iters == 32 and notes == ['warmup_iters 200 cut to 32, a tenth of the run']
    assert 'warm-up over the first 32, lr 0.002, x0.1 after iteration 280 (epoch 70)' in line
    cfg, notes, _ = _fitted(['warmup_iters=100'], 4)
    assert cfg.warmup_iters == 100 and notes == []


def test_a_step_before_the_warm_up_ends_or_in_the_first_fifth_is_refused_with_the_fix():
    from solov2.core.errors import InputError
    with pytest.raises(InputError, match=r'lr_steps=\(70, 76\) put the first LR drop at iteration 10500 of 60000, '
                                         r"in the first fifth of the run .* "
                                         r"e\.g\. lr_steps=\(350, 380\) \(the config's share"):
        _fitted(['epochs=400', 'lr_steps=(70, 76)'], 150)
    with pytest.raises(InputError, match='before the warm-up ends at iteration 300 — lower warmup_iters'):
        _fitted(['warmup_iters=300'], 4)


def test_a_cosine_schedule_ends_at_the_last_iteration():
    _, _, line = _fitted(["lr_schedule='cosine'"], 150)
    assert line.endswith('lr 0.002, cosine decay to 0 at iteration 12000')


def test_an_unknown_schedule_is_refused_not_run_as_cosine():
    """A config class or script that names another ``lr_schedule`` gets no cosine in its place."""
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        learning_rate('linear', 0, 0.0, 0.02, 10, 0.1)
    cfg = type('Linear', (), {'epochs': 2, 'warmup_iters': 0, 'lr_schedule': 'linear', 'lr_steps': (), 'lr_gamma': 0.1})
    schedule = type('Schedule', (), {'total_iters': 20, 'per_epoch': 10, 'base_lr': 0.01, 'stop_at': 20,
                                     'max_minutes': 0})
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        schedule_line(cfg, schedule, 2)
