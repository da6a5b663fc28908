"""Ctrl-C at a random moment of a ``Segmenter`` call, many times over, through the public API:

    python tools/dev/interrupt_stress.py --trials 10000

One ``Segmenter`` (the shipped model, dygraph, one thread); each trial calls it on a list of 12 small pictures
with ``batch_size`` 1-3 in this process's main thread and sends SIGINT to that thread (a real signal, as Ctrl-C
is) after a random 0-30 ms; then the same ``Segmenter`` must answer one picture (within ``--wedge-s`` seconds,
asked from another thread so that a wedge is seen, not suffered) and its budget must be all given back within
2 s. Prints the trials, the interrupts that landed in the call, the wedges, the interrupted calls that took
over 2 s to return after the signal, the budgets left short, the slowest return after a signal and the time.
"""
import argparse
import os
import random
import signal
import sys
import threading
import time
from typing import Dict, List

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import numpy as np  # noqa: E402

from solov2 import ModelSpec, Segmenter  # noqa: E402
from solov2.core.paths import SHIPPED_WEIGHTS  # noqa: E402
from solov2.tools.dev import report  # noqa: E402

MOST_RETURN_S = 2.0        # the longest an interrupted call may take to return after the signal


def pictures(count: int = 12, side: int = 96) -> List[np.ndarray]:
    """``count`` small BGR pictures (a bright square on grey, each shifted)."""
    made = []
    for index in range(count):
        picture = np.full((side, side, 3), 90, np.uint8)
        picture[10 + index:50 + index, 20:70] = (40, 200, 220)
        made.append(picture)
    return made


def budget_back(segmenter: Segmenter, seconds: float = 2.0) -> bool:
    """Whether the predictor's bytes in use fall to 0 within ``seconds``."""
    deadline = time.monotonic() + seconds
    while segmenter.predictor.budget.used and time.monotonic() < deadline:
        time.sleep(0.002)
    return segmenter.predictor.budget.used == 0


def answers_one(segmenter: Segmenter, picture: np.ndarray, seconds: float) -> bool:
    """Whether ``segmenter`` answers ``picture`` within ``seconds`` (asked from a thread of its own)."""
    answered: list = []
    asker = threading.Thread(target=lambda: answered.append(segmenter(picture)), daemon=True)
    asker.start()
    asker.join(seconds)
    return bool(answered)


def trial(segmenter: Segmenter, images: List[np.ndarray], rng: random.Random, tally: Dict[str, float],
          wedge_s: float) -> bool:
    """One call interrupted at a random 0-30 ms (main thread only); whether the segmenter still serves."""
    main, sent = threading.get_ident(), []
    assert threading.current_thread() is threading.main_thread(), 'run it in the main thread (signals land there)'

    def interrupt():
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)
    timer = threading.Timer(rng.uniform(0.0, 0.03), interrupt)
    try:
        try:
            timer.start()
            segmenter(images, batch_size=rng.randint(1, 3))
        finally:
            timer.join()
            time.sleep(0.001)          # a signal sent as the call ended lands here, inside the try
    except KeyboardInterrupt:
        took = time.monotonic() - sent[0]
        tally['interrupted'] += 1
        tally['slowest'] = max(tally['slowest'], took)
        tally['over 2 s'] += took > MOST_RETURN_S
    tally['trials'] += 1
    if not answers_one(segmenter, images[0], wedge_s):
        tally['wedged'] += 1
        return False
    tally['budget short'] += not budget_back(segmenter)
    return True


def stress(segmenter: Segmenter, trials: int, seed: int = 0, wedge_s: float = 30.0) -> Dict[str, float]:
    """``trials`` interrupted calls of ``segmenter`` (``trial``); the tally (stops at the first wedge)."""
    rng, images = random.Random(seed), pictures()
    names = ('trials', 'interrupted', 'wedged', 'over 2 s', 'budget short', 'slowest')
    tally: Dict[str, float] = dict.fromkeys(names, 0.0)
    segmenter(images[:2])           # warm
    for _ in range(trials):
        if not trial(segmenter, images, rng, tally, wedge_s):
            break
    return tally


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or '').split('\n\n')[0])
    parser.add_argument('--trials', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--wedge-s', type=float, default=30.0, help='seconds after which an unanswered picture is '
                                                                    'a wedge')
    parser.add_argument('--overrides', nargs='*', default=[], help='config changes, e.g. test_short=64 test_max=64 '
                                                                   '(smaller network runs: more trials a minute)')
    args = parser.parse_args(argv)
    began = time.monotonic()
    spec = ModelSpec(str(SHIPPED_WEIGHTS), backend='dygraph', threads=1, overrides=args.overrides)
    with Segmenter(spec) as segmenter:
        tally = stress(segmenter, args.trials, args.seed, args.wedge_s)
    print(report.machine_line(1) + f'; overrides {args.overrides or "none"}; load {os.getloadavg()[0]:.1f}')
    print(f"{tally['trials']:.0f} trials, {tally['interrupted']:.0f} interrupted in the call: {tally['wedged']:.0f} "
          f"wedged, {tally['over 2 s']:.0f} returned over {MOST_RETURN_S:g} s after the signal (slowest "
          f"{tally['slowest'] * 1000:.0f} ms), {tally['budget short']:.0f} budgets short; "
          f'{time.monotonic() - began:.0f} s')
    return 1 if tally['wedged'] or tally['over 2 s'] or tally['budget short'] else 0


if __name__ == '__main__':
    sys.exit(main())
