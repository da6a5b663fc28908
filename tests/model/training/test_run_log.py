"""What a run shows of itself: the progress lines (their total under a time budget, the last iteration logged)
and curves.png's panels (a marker on each point of a short curve)."""
import logging
from types import SimpleNamespace

import matplotlib.axes

from solov2.model.training import hooks
from solov2.model.training.run_log import RunLog
from solov2.model.training.trainer import Schedule, TrainState

LOSSES = {'loss': 1.0, 'loss_ins': 0.6, 'loss_cate': 0.4}


class BudgetTrainer(SimpleNamespace):
    """The trainer LogHook reads: each step takes ``step_s`` seconds of the run's budget."""

    @property
    def finished(self) -> bool:
        return self.state.iteration >= self.schedule.stop_at or self.schedule.timed_out(self.state.minutes)


def test_a_run_ended_by_its_time_budget_shows_where_it_will_end_and_logs_its_last_iteration(tmp_path, caplog,
                                                                                         monkeypatch):
    """A 3-minute fine-tune of a 240-iteration schedule at 37 iterations in 3 minutes: 'iter 20/~37', and
    iteration 37 logged (before: 'iter 20/240', the last 17 iterations unlogged)."""
    now = [0.0]
    monkeypatch.setattr(hooks.time, 'perf_counter', lambda: now[0])
    step_s = 3 * 60 / 36.6
    trainer = BudgetTrainer(state=TrainState(), schedule=Schedule(0.01, 240, 120, 240, max_minutes=3.0), epoch=0,
                            lr=0.01)
    log = RunLog(tmp_path)
    hook = hooks.LogHook(log, every=20, total_batch=2)
    caplog.set_level(logging.INFO, logger=hooks.logger.name)
    while not trainer.finished:
        now[0] += step_s
        trainer.state.iteration += 1
        trainer.state.minutes = now[0] / 60
        hook.after_step(trainer, LOSSES)
    lines = [message.split(' epoch')[0] for message in caplog.messages]
    assert trainer.state.iteration == 37 and lines == ['iter 20/~37', 'iter 37/37']
    assert [row.split(',')[0] for row in log.train_csv.read_text().splitlines()[1:]] == ['20', '37']


def test_curves_mark_the_points_of_a_short_loss_curve(tmp_path, monkeypatch):
    """One logged row: the loss panel's lines carry markers (a line through one point draws nothing)."""
    styles = []
    real = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, 'plot', lambda self, *a, **k: styles.append(k) or real(self, *a, **k))
    log = RunLog(tmp_path)
    log.add(log.train_csv, {'iteration': 20, 'epoch': 1, 'minutes': 1.5, 'lr': 0.01, **LOSSES, 'images_per_s': 2.0})
    log.plot()
    assert (tmp_path / 'curves.png').is_file()
    assert [style.get('marker') for style in styles] == ['o', 'o', 'o']
