"""model/inference/pipeline.py, the runner: order, batches of one padded size, failures, memory in
flight; the process's helper threads left alone."""
import gc
import inspect
import re
import threading
import time
import types
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import threadpoolctl

from solov2.core.errors import InputError
from solov2.model.inference.pipeline import (
    PipelineOptions,
    PipelineStats,
    Predictor,
    default_finish_workers,
)
from tests.helpers import REPO_DIR


class Fake(Predictor):
    """A predictor as its loop sees it: a picture's number is its first pixel; ``runs`` lists the
    numbers of each network run, a picture's detections are its number plus one."""

    def __init__(self, in_flight_bytes=2**30, workers=2):
        from solov2.config import get_config
        engine = types.SimpleNamespace(check_batch=lambda size: None, cfg=get_config(9), device_outputs=False,
                                       network_on_gpu=False, mixes_sizes=False, run_size=lambda hw: hw, max_batch=0)
        super().__init__(engine, pipeline=PipelineOptions(workers=workers, in_flight_bytes=in_flight_bytes))  # type: ignore[arg-type]
        self.runs, self.queue.network = [], lambda rows, params, padding: self.network(rows, params)

    def prepare(self, image):
        return np.ascontiguousarray(image.transpose(2, 0, 1), np.float32), 'meta'

    def network(self, ready, params=None, max_padding=0.0):
        self.runs.append([int(chw[0, 0, 0]) for chw, _ in ready])
        return [int(chw[0, 0, 0]) + 1 for chw, _ in ready]

    def finish(self, row, meta, params=None):
        return row


def _openblas_threads():
    return [pool['num_threads'] for pool in threadpoolctl.threadpool_info() if pool['internal_api'] == 'openblas']


def _read(item):
    if item == 3:
        raise ValueError('unreadable')
    return np.full((6 if item == 5 else 4, 4, 3), item, np.uint8)


def test_pictures_come_back_in_order_in_batches_helpers_left_alone():
    np.ones((64, 64)) @ np.ones((64, 64))                  # numpy's BLAS is loaded
    cv2.setNumThreads(2)
    before, backend, stats = _openblas_threads(), Fake(), PipelineStats()

    def finish(item, prepared, found):
        assert prepared.image[0, 0, 0] == item and prepared.chw.shape[0] == 3
        return found, cv2.getNumThreads(), _openblas_threads()

    got = list(backend.run_pictures(range(8), _read, finish, batch_size=2, stats=stats))
    assert [item for item, _ in got] == list(range(8))
    assert str(got[3][1]) == 'unreadable' and isinstance(got[3][1], ValueError)
    found = [result for item, result in got if item != 3]
    assert [number for number, _, _ in found] == [1, 2, 3, 5, 6, 7, 8]
    assert sorted(map(sorted, backend.runs)) == [[0, 1], [2], [4], [5], [6, 7]]   # the bad picture out, sizes apart
    assert all(threads == 2 and blas == before for _, threads, blas in found)
    assert cv2.getNumThreads() == 2 and _openblas_threads() == before and stats.done == 7


def test_one_picture_a_run_unless_a_batch_size_is_given_which_must_be_at_least_one():
    backend = Fake()
    assert [found for _, found in backend.run_pictures([0, 1, 2], _read)] == [1, 2, 3]
    assert sorted(backend.runs) == [[0], [1], [2]]            # one a run (in the order they were read)
    with pytest.raises(InputError, match='batch_size must be a whole number of at least 1, not 0'):
        list(backend.run_pictures([0], _read, batch_size=0))


def test_default_finish_workers():
    assert [default_finish_workers(cores) for cores in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]


def _alive_at_most(widths, in_flight_bytes, cost=lambda item: None):
    """The most pictures and bytes read and not yet finished at once, running pictures [1, width, 3]
    (15 bytes a column read and prepared) through a runner whose finishing is slow, each counted
    from the start of its read; and the pictures finished."""
    lock, alive, most = threading.Lock(), [0, 0], [0, 0]

    def read(item):
        with lock:
            alive[:] = alive[0] + 1, alive[1] + 15 * widths[item]
            most[:] = max(most[0], alive[0]), max(most[1], alive[1])
        return np.zeros((1, widths[item], 3), np.uint8)

    def finish(item, prepared, found):
        time.sleep(0.05)
        with lock:
            alive[:] = alive[0] - 1, alive[1] - 15 * widths[item]
        return item

    predictor = Fake(in_flight_bytes)
    done = [item for item, _ in predictor.run_pictures(range(len(widths)), read, finish, cost=cost)]
    assert _budget_back(predictor) == 0             # all given back
    return most, done


def test_large_pictures_in_flight_are_bounded_by_bytes_small_ones_are_not():
    (most, _), done = _alive_at_most([200] * 10, in_flight_bytes=9001)
    assert most <= 3 and done == list(range(10))
    (most, _), done = _alive_at_most([200] * 10, in_flight_bytes=10)     # larger than the budget: one at a time
    assert most == 1 and done == list(range(10))
    (most, _), done = _alive_at_most([2] * 10, in_flight_bytes=9001)
    assert most >= 5 and done == list(range(10))                # reads run ahead of the slow finishing


def test_pictures_whose_cost_is_known_before_reading_are_read_ahead_within_the_budget():
    """Small pictures, then large ones (3,000 bytes each, 3 fit the budget): with their cost known
    before they are read, never more than the budget read at once, large ones never loaded
    ahead on the strength of the small one before; of unknown cost, the first alone."""
    widths = [2] * 4 + [200] * 8 + [2] * 4
    (_, most), done = _alive_at_most(widths, in_flight_bytes=9001, cost=lambda item: 15 * widths[item])
    assert most <= 9001 and done == list(range(len(widths)))
    (_, most), _ = _alive_at_most([200] * 4, in_flight_bytes=2999, cost=lambda item: 15 * 200)
    assert most == 3000                                                  # each alone when it alone is over it
    (most, _), _ = _alive_at_most([2] * 10, in_flight_bytes=9001, cost=lambda item: None if item else 1)
    assert most >= 5


NETWORK = {'run', 'run_numpy', 'batch_regions', 'check_batch', 'run_size', 'compile_ahead', 'expect', 'class_names',
           'label', 'placed'}


def _public_methods(cls) -> set:
    return {name for name in dir(cls) if not name.startswith('_') and isinstance(
        inspect.getattr_static(cls, name), (types.FunctionType, property))}


def test_an_engine_runs_the_network_only_and_the_predictor_does_the_rest():
    """The engine interface is the network's (a batch and its regions in, its outputs out; what a
    batch may hold; compile-ahead; its label); preparing, the network stage with its post-processing and
    finishing are the predictor's, on every engine, none of them overriding it; an engine is made by its
    constructor, never by patching a copy of another."""
    from solov2.model.inference import (
        backend,
        dygraph_backend,
        onnxruntime_backend,
        openvino_backend,
        paddle_inference_backend,
    )
    assert _public_methods(backend.Backend) == NETWORK
    engines = [dygraph_backend.DygraphBackend, onnxruntime_backend.OnnxBackend, openvino_backend.OpenVinoBackend,
               paddle_inference_backend.InferenceBackend]
    assert _public_methods(Predictor) == {'read', 'prepare', 'network', 'finish', 'run_pictures', 'submit', 'detect',
                                          'close', 'request'}
    for engine in engines:
        assert not _public_methods(engine) & (_public_methods(Predictor) | {'forward', 'batch', 'finish_outputs'}), \
            engine.__name__
        source = inspect.getsource(inspect.getmodule(engine))
        assert not re.search(r'copy\.copy\(self\)|\breplace\(self\b', source), f'{engine.__name__}: a patched copy'


def test_post_processing_on_the_device_asks_for_an_engine_whose_outputs_stay_there():
    """``on_device=True`` on an engine that answers numpy arrays (every exported one) is refused at
    once by name, not an AttributeError at the first picture; dygraph's is taken."""
    from solov2.config import get_config
    from solov2.model.inference.backend import Backend
    from solov2.model.inference.dygraph_backend import DygraphBackend
    exported = types.SimpleNamespace(cfg=get_config(9), device_outputs=Backend.device_outputs, network_on_gpu=False)
    with pytest.raises(ValueError, match='on_device .* Paddle tensors'):
        Predictor(exported, on_device=True)  # type: ignore[arg-type]
    assert Predictor(exported).on_device is False  # type: ignore[arg-type]
    dygraph = types.SimpleNamespace(cfg=get_config(9), device_outputs=DygraphBackend.device_outputs,
                                    network_on_gpu=False)
    assert Predictor(dygraph, on_device=True).on_device is True  # type: ignore[arg-type]


DECODER_CALL = re.compile(r'\b(?:read_image|decode_image|imdecode|imread|Image\.open)\(')
DECODER_HOMES = {'data/transforms.py': 'the decoders themselves', 'model/inference/reading.py': 'the one reader',
                 'data/coco.py': "training's dataset, which reads for augmentation, not for a model",
                 'tools/labelme2coco.py': 'the mask PNG inside a labelme file, not a picture',
                 'tools/browse.py': "a dataset's pictures drawn as training reads them (data/coco.py's pixel limit)"}


def test_every_picture_a_model_reads_goes_through_its_reader():
    """Product code outside ``DECODER_HOMES`` calls no image decoder: the API, the demo, evaluation,
    quantization, training's picture, auto's bf16 check and the service read through
    ``Predictor.read`` (``reading.PictureReader``: one pixel limit, fast decode and colour rule)."""
    from tests.test_layout import tracked_python_files
    calls = {path: DECODER_CALL.findall((REPO_DIR / path).read_text()) for path in tracked_python_files()
             if not path.startswith(('tests/', 'tools/dev/')) and path not in DECODER_HOMES}
    assert {path: found for path, found in calls.items() if found} == {}


def test_a_picture_submitted_goes_through_the_stages_within_the_one_budget_run_pictures_shares():
    """``Predictor.submit`` (the service's driver): the answer of ``detect``, its cost taken from the predictor's
    budget at admission and held until its finishing ends, a failed read its answer's error, a picture whose
    request was cancelled before its read never read; ``run_pictures`` holds the same budget while its pictures
    are in flight, and both give all of it back."""
    from solov2 import Segmenter
    from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
    predictor = Segmenter(SHIPPED_WEIGHTS, backend='dygraph', threads=1).predictor
    picture = predictor.read(str(REPO_DIR / SAMPLE_IMAGES / 'shapes_000023.jpg'))
    held = []

    def finish(item, prepared, row):
        held.append(predictor.budget.used)
        return predictor.finish(row, prepared.meta)
    found = predictor.submit(picture, lambda rgb: rgb, finish, cost=1000).future.result(30)
    want = predictor.detect(picture)
    assert held == [1000] and _budget_back(predictor) == 0
    np.testing.assert_array_equal(found.masks, want.masks)
    np.testing.assert_allclose(found.scores, want.scores, rtol=1e-5)
    with pytest.raises(ValueError, match='unreadable'):
        predictor.submit(3, _read, finish).future.result(30)
    reads, gate = [], threading.Event()
    blockers = [predictor.submit(picture, lambda rgb: gate.wait(30) and rgb, finish)          # every reader busy
                for _ in range(predictor.queue.reading.workers)]
    late = predictor.submit(picture, lambda rgb: reads.append(1) or rgb, finish)
    late.cancel()
    gate.set()
    assert all(blocker.future.result(30) for blocker in blockers) and not reads and _budget_back(predictor) == 0
    run = predictor.run_pictures([picture] * 3, lambda rgb: rgb)
    next(run)
    assert predictor.budget.used > 0
    run.close()
    assert _budget_back(predictor) == 0


def test_submit_owns_admission_wait_refuse_or_force_and_gives_the_cost_back_itself():
    """The budget is the request queue's alone: ``submit`` takes a request's cost as its ``admission`` says
    (``WAIT`` for room, ``REFUSE`` at once with ``Refused``, ``FORCE`` whatever the others hold) and gives it back
    once its work ends; no caller takes or gives, so a cost never taken is never given back (the budget never
    goes below 0); an unknown admission is refused by name."""
    from solov2.model.inference.pipeline import FORCE, REFUSE, Refused
    predictor, gate = Fake(in_flight_bytes=1000), threading.Event()
    slow = predictor.submit(0, lambda item: gate.wait(30) and _read_any(item), lambda *args: args[2], cost=800)
    with pytest.raises(Refused, match='no room'):
        predictor.submit(1, _read_any, lambda *args: args[2], cost=300, admission=REFUSE).future.result(10)
    waiting = predictor.submit(2, _read_any, lambda *args: args[2], cost=300)
    forced = predictor.submit(3, _read_any, lambda *args: args[2], cost=300, admission=FORCE)
    assert forced.future.result(10) == 4 and not waiting.wait(0.2)       # waits for the room the first holds
    gate.set()
    assert slow.future.result(10) == 1 and waiting.future.result(10) == 3
    assert _budget_back(predictor) == 0
    free = predictor.submit(4, _read_any, lambda *args: args[2])          # no cost: nothing taken, nothing given
    assert free.future.result(10) == 5 and _budget_back(predictor) == 0 and predictor.budget.used >= 0
    with pytest.raises(InputError, match="admission is one of wait, refuse, force, not 'later'"):
        predictor.submit(5, _read_any, lambda *args: args[2], admission='later')


def test_a_predictor_dropped_unclosed_is_freed_at_once_and_its_finishing_threads_end():
    """Nothing the predictor holds holds it back (its queue keeps ``network_rows``, not its method): one a
    program drops without ``close`` is freed by its last reference, the garbage collector off, and its threads
    end (its request queue is closed as it is freed)."""
    from solov2 import Segmenter
    from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
    engine = Segmenter(SHIPPED_WEIGHTS, backend='dygraph', threads=1).backend
    before = set(threading.enumerate())
    gc.disable()
    try:
        predictor = Predictor(engine, pipeline=PipelineOptions(workers=1))
        predictor.detect(predictor.read(sorted(Path(SAMPLE_IMAGES).glob('*.jpg'))[0]))
        started = [thread for thread in set(threading.enumerate()) - before if thread.name.startswith('solov2-')]
        dropped = weakref.ref(predictor)
        del predictor
        assert started and dropped() is None
        for thread in started:
            thread.join(10)
        assert not [thread.name for thread in started if thread.is_alive()]
    finally:
        gc.enable()


def test_a_predictor_closes_at_once_and_closing_it_again_is_nothing():
    """An idle predictor's ``close`` returns at once with its threads ended, and so do a second ``close`` and the one
    its finalizer makes as it is freed. Before, a second close waited 10 s for an answer from a queue that had
    stopped: each ``Segmenter.close`` and ``set_pipeline`` (whose old predictor is then freed) took 10 s."""
    predictor = Fake()
    threads, began = predictor.queue.threads, time.monotonic()
    predictor.close()
    assert not [thread for thread in threads if thread.is_alive()]
    predictor.close()
    del predictor                   # its finalizer closes its queue again
    assert time.monotonic() - began < 5


def test_run_pictures_is_a_window_over_requests_and_the_network_runs_on_the_predictors_thread(monkeypatch):
    """Every picture of ``run_pictures`` is a request of the predictor's (the one queue, its one admission), at
    most ``window`` ahead of the consumer; the network runs on the predictor's own thread, never the caller's."""
    predictor, made, threads = Fake(), [], set()
    request, network = Predictor.request, predictor.network
    monkeypatch.setattr(Predictor, 'request', lambda self, item, *args: made.append(item) or
                        request(self, item, *args))
    predictor.network = lambda ready, params=None: threads.add(threading.current_thread().name) or network(ready)
    run = predictor.run_pictures(range(20), _read, window=4)
    assert next(run) == (0, 1) and len(made) <= 5
    assert [item for item, _ in run] == list(range(1, 20)) and made == list(range(20))
    assert list(predictor.run_pictures([0, 1], _read, batch_size=2)) == [(0, 1), (1, 2)]
    assert {name.rsplit('_', 1)[0] for name in threads} == {'solov2-network'}


def test_a_finished_network_row_is_finished_before_more_pictures_are_decoded():
    """Four pictures submitted at once, each read taking 0.3 s, one finishing thread: the first picture is
    finished while the others are still being read (its own stage's thread), not after every queued
    read; reading and finishing threads named for what they run."""
    predictor, events, lock = Fake(workers=1), [], threading.Lock()

    def read(item):
        time.sleep(0.3)
        with lock:
            events.append(('read', item, threading.current_thread().name))
        return np.full((4, 4, 3), item, np.uint8)

    def finish(item, prepared, row):
        with lock:
            events.append(('finish', item, threading.current_thread().name))
        return row
    answers = [predictor.submit(item, read, finish) for item in range(4)]
    assert [answer.future.result(30) for answer in answers] == [1, 2, 3, 4]
    order = [(stage, item) for stage, item, _ in events]
    assert order.index(('finish', 0)) < order.index(('read', 3)), order
    assert {name.rsplit('_', 1)[0] for stage, _, name in events if stage == 'read'} == {'solov2-read'}
    assert {name.rsplit('_', 1)[0] for stage, _, name in events if stage == 'finish'} == {'solov2-finish'}


def test_an_engine_gets_everything_it_holds_when_it_is_built():
    """No product code sets an attribute on an engine once built (auto's fallback is a constructor's
    argument): what an engine holds is what its constructor was given."""
    from solov2.config import get_config
    from solov2.core.paths import SHIPPED_WEIGHTS
    from solov2.model.inference.dygraph_backend import DygraphBackend
    from tests.test_layout import tracked_python_files
    assert DygraphBackend(get_config(9), SHIPPED_WEIGHTS, 'cpu', threads=1, fallback='why').fallback == 'why'
    setting = re.compile(r'^\s*(?:backend|engine|dygraph|bf16|f32)\.(?!_)\w+\s*=[^=]', re.MULTILINE)
    found = {path: setting.findall((REPO_DIR / path).read_text()) for path in tracked_python_files()
             if not path.startswith(('tests/', 'tools/dev/'))}
    assert {path: lines for path, lines in found.items() if lines} == {}


def _in_a_thread(job, seconds=15):
    """``job()`` on a thread of its own (an interrupt it raises stays there): what it returned or raised;
    AssertionError when it has not ended within ``seconds`` (a run that hangs)."""
    ended = []

    def run():
        try:
            ended.append(job())
        except BaseException as exc:      # the interrupt the test injected, among others
            ended.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert ended, f'still running after {seconds} s'
    return ended[0]


def test_an_interrupt_of_the_caller_at_any_moment_only_ends_its_wait_300_times():
    """Ctrl-C (a real SIGINT to this thread) at a random 0-30 ms of a ``Segmenter`` call on 12 small pictures, 300
    times (``tools/dev/interrupt_stress.py`` runs 10,000): the call ends within 2 s of each, the same ``Segmenter``
    answers the next picture and its budget comes back whole. The caller's thread only submits and waits, so an
    interrupt lands in nothing the predictor's threads need."""
    from solov2 import ModelSpec, Segmenter
    from solov2.core.paths import SHIPPED_WEIGHTS
    from solov2.tools.dev.interrupt_stress import stress
    if threading.current_thread() is not threading.main_thread():
        pytest.fail('signals land in the main thread: run this test there')
    with Segmenter(ModelSpec(str(SHIPPED_WEIGHTS), backend='dygraph', threads=1,
                             overrides=['test_short=64', 'test_max=64'])) as segmenter:
        tally = stress(segmenter, 300, wedge_s=20)
    assert tally['trials'] == 300 and tally['interrupted'] >= 150, tally
    assert tally['wedged'] == tally['over 2 s'] == tally['budget short'] == 0, tally


def _read_any(item):
    return np.full((4, 4, 3), item, np.uint8)


def _budget_back(predictor, seconds=10):
    """The predictor's bytes in use once they fall to 0 (pictures called off give theirs back as they stop)."""
    deadline = time.monotonic() + seconds
    while predictor.budget.used and time.monotonic() < deadline:
        time.sleep(0.01)
    return predictor.budget.used


def test_a_run_stopped_early_cancels_the_pictures_queued_behind_and_returns_at_once():
    """A consumer that stops after the first result (Ctrl-C in its loop, a ``break``): the pictures read
    ahead and waiting for the network are cancelled, not run (one network run at most ends after it); the run
    returns at once (it only stops waiting) and every byte comes back as the work under way ends."""
    predictor, lock = Fake(), threading.Lock()
    network = predictor.network

    def slow(ready, params=None, max_padding=0.0):
        time.sleep(0.2)
        with lock:
            return network(ready, params)
    predictor.queue.network = lambda rows, params, padding: slow(rows, params)

    def stop_early():
        run = predictor.run_pictures(range(8), _read_any)
        assert next(run) == (0, 1)
        with lock:
            ran = len(predictor.runs)
        began = time.monotonic()
        run.close()
        return ran, time.monotonic() - began
    ran, took = _in_a_thread(stop_early)
    time.sleep(0.5)
    assert len(predictor.runs) - ran <= 1 and took < 0.1 and _budget_back(predictor) == 0, (predictor.runs, ran)
