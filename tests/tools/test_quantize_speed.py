"""``quantize``'s last lines: INT8's network timed against f32's on the calibration pictures
(``model.inference.quantize.int8_speed``, here on stand-in engines that sleep), both figures printed
and whether INT8 pays on this CPU for this model (``tools/quantize.speed_lines``); its progress in one
line a stage (``Bars``), not a line per size bucket compiled."""
import io
import time

import numpy as np
import pytest

pytest.importorskip('openvino', reason='quantize needs requirements-deploy.txt')

from solov2.model.inference.quantize import INT8_PAYS, Int8Speed, int8_speed  # noqa: E402
from solov2.tools import cli  # noqa: E402
from solov2.tools import quantize as quantize_cli  # noqa: E402


class Sleeper:
    """An engine whose network takes ``ms`` milliseconds a run; ``calls`` records (name, shape)."""

    def __init__(self, name: str, ms: float, calls: list):
        self.name, self.ms, self.calls = name, ms, calls

    def run_numpy(self, batch):
        self.calls.append((self.name, batch.shape))
        time.sleep(self.ms / 1000)
        return []


def test_int8_speed_times_both_engines_on_the_same_pictures_in_turn():
    calls = []
    f32, int8 = Sleeper('f32', 4, calls), Sleeper('int8', 12, calls)
    pictures = [np.zeros((3, 32, 64), np.float32), np.zeros((3, 32, 64), np.float32), np.zeros((3, 64, 32), np.float32)]
    speed = int8_speed(f32, int8, pictures)
    assert speed.pictures == 3 and not speed.pays and speed.speedup < 0.6
    assert 3.5 <= speed.f32_ms < speed.int8_ms and speed.int8_ms >= 11.5
    names = [name for name, _ in calls]        # a size new to them untimed first; the first engine alternates
    assert names == ['f32', 'int8'] * 2 + ['int8', 'f32'] + ['f32', 'int8'] * 2
    assert int8_speed(int8, f32, pictures).pays


def test_int8_speed_times_as_many_pictures_as_the_budget_takes():
    calls, seen = [], []
    speed = int8_speed(Sleeper('f32', 20, calls), Sleeper('int8', 20, calls),
                       [np.zeros((3, 32, 32), np.float32)] * 50, budget_s=0.3,
                       progress=lambda done, total: seen.append((done, total)))
    assert 1 <= speed.pictures < 10 and seen[-1] == (speed.pictures, speed.pictures)


@pytest.mark.parametrize('f32_ms, int8_ms, pays', [(10.4, 12.3, False), (697.2, 362.0, True)])
def test_the_last_lines_give_both_figures_and_say_whether_int8_pays(f32_ms, int8_ms, pays):
    speed = Int8Speed(f32_ms, int8_ms, 5)
    assert speed.pays == pays == (f32_ms / int8_ms >= INT8_PAYS)
    timing, verdict = quantize_cli.speed_lines(speed, 'export/shapes')
    assert f'5 calibration pictures: INT8 {int8_ms:.1f} ms, f32 {f32_ms:.1f} ms a picture' in timing
    assert f"(INT8 at {f32_ms / int8_ms:.2f}x f32's speed)" in timing
    if pays:
        assert verdict.startswith(f"INT8 pays here: {f32_ms / int8_ms:.2f}x f32's speed")
    else:
        assert verdict.startswith(f"INT8 does not pay on this CPU for this model ({int8_ms:.1f} ms against f32's "
                                  f'{f32_ms:.1f} ms): run f32 instead (--backend openvino --model-dir export/shapes')


def test_each_stage_is_one_progress_line(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(cli.sys, 'stderr', stream)
    bars = quantize_cli.Bars()
    compiling, timing = bars('compiling INT8 for this CPU ', 'model'), bars('timing f32 and INT8 ')
    for done in range(1, 8):
        compiling(done, 7)
    for done in range(1, 4):
        timing(done, 3 if done > 1 else 20)      # its total known after the first picture
    bars.close()
    lines = stream.getvalue().splitlines()
    assert [line.split('[')[0] for line in lines] == ['compiling INT8 for this CPU ', 'timing f32 and INT8 ']
    assert '[7/7]' in lines[0] and '[3/3]' in lines[1]
