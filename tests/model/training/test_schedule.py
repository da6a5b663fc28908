"""Learning-rate schedule: warm-up, step and cosine decay, time-budget progress (hand-computed)."""
import math

import pytest

from solov2.model.training.schedule import (
    cosine_decay,
    learning_rate,
    scaled_lr,
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
    with pytest.raises(ValueError, match='linear'):
        learning_rate('linear', 0, 0.0, 0.02, 10, 0.1)


def test_linear_scaling_rule():
    assert scaled_lr(0.01, 16, 8) == pytest.approx(0.005)
