"""How ``auto`` times its engines (model/inference/auto_backend.py): every engine twice on each
of several sizes new to it (the first call on a size, then the same size again), and the engine
of the lowest cost per picture over both chosen, the earlier candidate where costs are within the
noise (the same on every cold start); stand-in engines on a fake clock, no real time."""
import functools

import numpy as np
import pytest

from solov2.config import CONFIGS
from solov2.model.inference import auto_backend
from solov2.model.inference.auto_backend import (
    BF16,
    MIN_ROUNDS,
    RETIME_GROW,
    TIMING_BUDGET_S,
    TIMING_ROUNDS,
    bf16_hint,
    choice_line,
    measured_choice,
    time_engines,
    timing_batches,
)

AMX = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8']


class _SizeEngine:
    """A backend whose ``run`` takes ``new`` ms of the fake ``clock`` on a size it has not run
    yet, ``repeated`` ms on one it has (as OpenVINO's dynamic-shape model does)."""
    cfg = CONFIGS[9]

    def __init__(self, clock, repeated, new):
        self.clock, self.repeated, self.new, self.seen = clock, repeated, new, set()

    def run(self, batch):
        self.clock[0] += (self.repeated if batch.shape in self.seen else self.new) / 1000
        self.seen.add(batch.shape)


@pytest.mark.parametrize('engines, engine, timings', [
    ({'openvino': (30, 30), 'onnx': (15, 15), BF16: (8, 55)}, BF16, 1),   # AMX: 12.7 ms a picture against 15
    ({'openvino': (14, 60), 'onnx': (15, 15)}, 'onnx', 1),        # a hair faster once a size repeats: 18.6 vs 15
    ({'openvino': (10, 38), 'onnx': (13, 13)}, 'openvino', 2),    # 12.8 vs 13: close, timed again, though the
])                                                                # new sizes alone (38 vs 13) are far apart
def test_the_engine_of_the_lowest_cost_over_repeated_and_new_sizes_wins(engines, engine, timings, monkeypatch):
    """Each engine's medians on a repeated size and on a new one are recorded, and the lower
    ``repeated + (new - repeated) / PICTURES_PER_SIZE`` wins (also in deciding to time again)."""
    clock, batches = [0.0], []
    timed = functools.partial(time_engines, clock=lambda: clock[0])
    monkeypatch.setattr(auto_backend, 'time_engines', lambda backends, sizes: batches.append(sizes) or
                        timed(backends, sizes))
    choice = measured_choice({label: _SizeEngine(clock, *ms) for label, ms in engines.items()})
    assert (choice['engine'], choice['timings'], len(batches), choice['timing_input']) == (
        engine, timings, timings, [1, 3, 320, 448])
    for label, (repeated, new) in engines.items():
        assert (choice['timings_ms'][label], choice['new_size_ms'][label]) == pytest.approx((repeated, new))
    if timings == 2:
        assert not {b.shape for b in batches[0]} & {b.shape for b in batches[1]}    # new sizes for both engines
        assert batches[1][0].shape == (1, 3, 320 + RETIME_GROW, 448 + RETIME_GROW)


def test_the_line_and_the_bf16_hint_name_both_times(monkeypatch):
    monkeypatch.setattr(auto_backend, 'cpu_features', lambda cpuinfo=None: AMX)
    choice = {'engine': 'onnx', 'timings_ms': {'openvino': 21.2, 'onnx': 15.4, BF16: 14.6},
              'new_size_ms': {'openvino': 48.4, 'onnx': 15.0, BF16: 68.0}, 'timing_input': [1, 3, 320, 448]}
    assert choice_line(choice) == ('openvino 21 ms (48 ms on a new size), onnx 15 ms (15 ms on a new size), '
                                   f'{BF16} 15 ms (68 ms on a new size) per picture near 320x448')
    assert bf16_hint(choice, list(choice['timings_ms'])) == (
        "auto: OpenVINO bf16 not used: 15 ms (68 ms on a new size) against onnx f32 15 ms (15 ms on a new size) "
        "(backend='openvino', precision='bf16' runs it)")


def test_time_engines_warms_up_then_alternates_the_order_round_by_round():
    """Two untimed warm-up runs each, then per round each engine once on the warm-up batch
    (untimed) and twice on the round's."""
    clock, order = [0.0], []

    class Engine:
        def __init__(self, name, seconds):
            self.name, self.seconds = name, iter(seconds)

        def run(self, batch):
            order.append((self.name, batch))
            clock[0] += next(self.seconds)

    engines = {'a': Engine('a', [9, 0.01, 7, 0.010, 0.002, 7, 0.050, 0.003, 7, 0.012, 0.002]),
               'b': Engine('b', [9, 0.02, 7, 0.020, 0.019, 7, 0.021, 0.020, 7, 0.5, 0.02])}
    times = time_engines(engines, ['warm-up', 'first', 'second', 'third'], clock=lambda: clock[0])
    assert {kind: [tuple(round(ms, 6) for ms in pair) for pair in pairs] for kind, pairs in times.items()} == {
        'a': [(10, 2), (50, 3), (12, 2)], 'b': [(20, 19), (21, 20), (500, 20)]}
    assert order == [('a', 'warm-up')] * 2 + [('b', 'warm-up')] * 2 + [
        run for name, batch in [('a', 'first'), ('b', 'first'), ('b', 'second'), ('a', 'second'), ('a', 'third'),
                                ('b', 'third')] for run in [(name, 'warm-up'), (name, batch), (name, batch)]]


@pytest.mark.parametrize('warm_s, rounds', [(0.01, TIMING_ROUNDS), (0.8, 3), (1.0, 2), (2.7, MIN_ROUNDS)])
def test_a_slow_model_is_timed_in_as_many_rounds_as_fit_the_budget(warm_s, rounds):
    """A round runs each engine three times: as many rounds as the last warm-up runs say fit in
    TIMING_BUDGET_S (15 s), MIN_ROUNDS (1) at least (config 0 on 2 cores: 2.7 s a run)."""
    clock = [0.0]
    engines = {kind: _SizeEngine(clock, 1000 * warm_s, 1000 * warm_s) for kind in ('openvino', 'onnx')}
    times = time_engines(engines, timing_batches(CONFIGS[9]), clock=lambda: clock[0])
    assert {kind: len(pairs) for kind, pairs in times.items()} == {'openvino': rounds, 'onnx': rounds}
    assert TIMING_BUDGET_S == 15.0 and MIN_ROUNDS == 1


def test_each_timing_round_is_a_size_no_engine_has_seen():
    batches = timing_batches(CONFIGS[9])
    shapes = [b.shape for b in batches]
    assert len(batches) == TIMING_ROUNDS + 1 and len(set(shapes)) == len(shapes)
    assert shapes[0] == (1, 3, 320, 448)        # a 4:3 picture at config 9's test size, padded to 32
    assert all(h % 32 == 0 and w % 32 == 0 and h >= 320 and w >= 448 for _, _, h, w in shapes)
    assert all(b.dtype == np.float32 for b in batches)


def _same(ms):
    """``time_engines``' rounds of an engine as fast on a new size as on a repeated one."""
    return [(value, value) for value in ms]


@pytest.mark.parametrize('openvino, onnx, engine', [
    ([30, 30, 30, 30, 30], [30, 30, 30, 30, 30], 'openvino'),     # a tie: the first
    ([30, 90, 30, 30, 30], [33, 32, 34, 33, 33], 'openvino'),     # a busy moment during one round
    ([179, 35, 36, 34, 35], [230, 38, 37, 38, 39], 'openvino'),   # a slow start, then ~8% apart
    ([35, 34, 36, 35, 35], [27, 28, 40, 27, 29], 'onnx'),         # faster, one noisy round
])
def test_the_engine_with_the_lower_median_round_is_chosen(openvino, onnx, engine, monkeypatch):
    """An outlier round (either engine) changes nothing: the medians decide."""
    monkeypatch.setattr(auto_backend, 'time_engines', lambda backends, batches: {'openvino': _same(openvino),
                                                                                  'onnx': _same(onnx)})
    backend = type('Engine', (), {'cfg': CONFIGS[9]})()
    assert measured_choice({'openvino': backend, 'onnx': backend})['engine'] == engine


@pytest.mark.parametrize('first, second, engine, timings', [
    ({'openvino': [30] * 5, 'onnx': [31] * 5}, {'openvino': [36] * 5, 'onnx': [25] * 5}, 'onnx', 2),  # 3% apart
    ({'openvino': [30] * 5, 'onnx': [29] * 5}, {'openvino': [20] * 5, 'onnx': [29] * 5}, 'openvino', 2),
    ({'openvino': [30] * 5, 'onnx': [36] * 5}, None, 'openvino', 1),                 # a clear winner: 20% apart
    ({'openvino': [40, 41, 39, 40, 40], 'onnx': [30, 29, 31, 30, 30]}, None, 'onnx', 1),
])
def test_close_timings_are_timed_again_on_new_sizes(first, second, engine, timings, monkeypatch):
    """Engines within RETIME_MARGIN are timed a second time on sizes neither has seen, and the
    medians over both timings decide (here the second one reverses the first); a clear winner is
    timed once."""
    calls = []

    def stand_in(backends, batches):
        calls.append([b.shape for b in batches])
        return {kind: _same(ms) for kind, ms in (first, second)[len(calls) - 1].items()}

    monkeypatch.setattr(auto_backend, 'time_engines', stand_in)
    backend = type('Engine', (), {'cfg': CONFIGS[9]})()
    choice = measured_choice({'openvino': backend, 'onnx': backend})
    assert (choice['engine'], choice['timings'], len(calls)) == (engine, timings, timings)
    if timings == 2:
        assert not set(calls[0]) & set(calls[1])                  # new sizes for both engines
        assert calls[1][0] == (1, 3, 320 + RETIME_GROW, 448 + RETIME_GROW)


def _noisy(truth, seed):
    """A ``time_engines`` stand-in: each engine's true ms in ``truth``, each run off by up to 10% (a busy machine)."""
    rng = np.random.RandomState(seed)
    return lambda backends, batches: {kind: [tuple(ms * rng.uniform(0.9, 1.1, 2)) for _ in range(TIMING_ROUNDS)]
                                      for kind, ms in truth.items()}


@pytest.mark.parametrize('truth, engine', [({'openvino': 30, 'onnx': 29, BF16: 29.5}, 'openvino'),
                                           ({'openvino': 30, 'onnx': 24, BF16: 29}, 'onnx')])
def test_cold_starts_under_a_noisy_clock_choose_the_same_engine(truth, engine, monkeypatch):
    """Ten cold choices, each on its own noise: engines within the noise of each other give the earlier
    candidate every time (not whichever the moment favours), and a clearly faster one (20%) wins every time."""
    backend = type('Engine', (), {'cfg': CONFIGS[9]})()
    chosen = []
    for seed in range(10):
        monkeypatch.setattr(auto_backend, 'time_engines', _noisy(truth, seed))
        chosen.append(measured_choice(dict.fromkeys(truth, backend))['engine'])
    assert chosen == [engine] * 10
