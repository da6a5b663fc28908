"""``auto``'s fast lane (model/inference/auto_backend.py): OpenVINO bf16 is a candidate only with
precision unset, on a CPU with native bf16 (avx512_bf16 or AMX, stood in for here: this
module's CPU need not have it), and is timed only when it keeps f32's instances
(model/inference/instance_match.py); where a bf16 CPU runs f32, one line says why."""
import contextlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from solov2.data.masks import CroppedMasks
from solov2.model.inference import auto_backend
from solov2.model.inference.auto_backend import BF16, bf16_hint, candidates, engine_spec, timed_choice
from solov2.model.inference.backend import BackendError
from solov2.model.inference.instance_match import MIN_MASK_IOU, SEEN_SCORE, compare_instances, disagreement
from solov2.model.inference.postprocess import Detections
from solov2.model.inference.spec import ModelSpec

AMX = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8']
ZEN4 = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16']
AVX2 = ['avx2']


def _detections(boxes, labels, scores, size=(40, 50)) -> Detections:
    """Pasted detections: rectangle masks [N, 40, 50] at ``boxes`` (y0, x0, y1, x1)."""
    masks = np.zeros((len(boxes), *size), bool)
    for mask, (y0, x0, y1, x1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = True
    return Detections(CroppedMasks.from_dense(masks), np.asarray(labels, np.int64), np.asarray(scores, np.float32))


BOXES = [(0, 0, 20, 20), (10, 25, 30, 50), (30, 0, 40, 10), (0, 40, 8, 50)]
F32 = _detections(BOXES, [0, 1, 0, 2], [0.9, 0.8, 0.5, 0.2])      # the last under SEEN_SCORE


@pytest.mark.parametrize('got, holds, kept, extra', [
    (_detections(BOXES[::-1], [2, 0, 1, 0], [0.2, 0.5, 0.81, 0.9]), True, 3, 0),      # reordered: the same
    (_detections([(0, 0, 20, 21)] + BOXES[1:], [0, 1, 0, 2], [0.9, 0.8, 0.5, 0.2]), True, 2, 0),  # IoU 0.952
    (_detections([(0, 0, 20, 24)] + BOXES[1:], [0, 1, 0, 2], [0.9, 0.8, 0.5, 0.2]), False, 2, 0),  # IoU 0.833
    (_detections([(0, 0, 20, 22), (10, 25, 30, 49)] + BOXES[2:], [0, 1, 0, 2], [0.9, 0.8, 0.5, 0.2]),
     False, 1, 0),                                                                      # IoU 0.909 and 0.96: mean 0.956
    (_detections(BOXES[:3], [0, 1, 0], [0.9, 0.8, 0.5]), True, 3, 0),                   # the one under the floor lost
    (_detections(BOXES[:2] + BOXES[3:], [0, 1, 2], [0.9, 0.8, 0.2]), False, 2, 0),      # a seen one lost
    (_detections(BOXES + [(0, 30, 5, 40)], [0, 1, 0, 2, 2], [0.9, 0.8, 0.5, 0.2, 0.4]), False, 3, 1),   # one more
    (_detections(BOXES + [(0, 30, 5, 40)], [0, 1, 0, 2, 2], [0.9, 0.8, 0.5, 0.2, 0.32]), True, 3, 0),  # near the floor
    (_detections(BOXES, [0, 0, 0, 2], [0.9, 0.8, 0.5, 0.2]), False, 2, 1),              # another class
    (_detections(BOXES, [0, 1, 0, 2], [0.9, 0.7, 0.5, 0.2]), False, 3, 0),              # a score 0.1 off
    (_detections([(0, 0, 20, 21)] + BOXES[1:] + BOXES[:1], [0, 1, 0, 2, 0], [0.9, 0.8, 0.5, 0.2, 0.11]),
     True, 2, 0),                             # Matrix NMS's decayed duplicate of the first, its mask nearer f32's
    (_detections([(0, 0, 20, 21)] + BOXES[1:] + BOXES[:1], [0, 1, 0, 2, 0], [0.9, 0.8, 0.5, 0.2, 0.88]),
     False, 3, 1),                            # two near scores: the mask nearer f32's is paired, the other is more
])
def test_the_answer_is_kept_when_the_seen_instances_are_alike(got, holds, kept, extra):
    stats = compare_instances(got, F32, SEEN_SCORE)
    assert (stats['kept'], stats['extra'], disagreement(stats) is None) == (kept, extra, holds), stats
    assert disagreement(compare_instances(F32, F32)) is None and compare_instances(F32, F32)['min_iou'] == 1.0
    if not holds:
        assert f'(>= {MIN_MASK_IOU}), lowest' in disagreement(stats)


LOW = _detections(BOXES[:2], [0, 1], [0.25, 0.2])      # a model that scores nothing SEEN_SCORE high here


@pytest.mark.parametrize('bf16, problem', [
    (LOW, None),
    (_detections(BOXES[1:2], [1], [0.2]), 'a.jpg: 1 instances: mask IoU mean 0.000'),   # f32's best lost
    (_detections(BOXES[:1], [0], [0.25]), None),                           # a lower one lost: not compared
    (_detections(BOXES[:2], [0, 1], [0.25, 0.31]), 'lowest 1.000 (>= 0.9), 1 more'),   # the second now above
])
def test_where_f32_scores_nothing_seen_its_best_instances_are_compared(bf16, problem, monkeypatch):
    """A picture where f32 scores no instance ``SEEN_SCORE`` high (a COCO model on the sample pictures)
    is not a pass on no evidence: f32's best instance and those as high are compared."""
    monkeypatch.setattr(auto_backend, 'Predictor', lambda backend: contextlib.nullcontext(SimpleNamespace(
        detect=lambda image: backend, read=lambda path: None)))
    found = auto_backend.bf16_problem(LOW, bf16, ['a.jpg'])  # type: ignore[arg-type]
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize('features, precision, engines, bf16', [
    (AMX, None, ['openvino', 'onnx'], True),
    (ZEN4, None, ['openvino', 'onnx'], True),          # AVX-512 BF16 without AMX
    (AVX2, None, ['openvino', 'onnx'], False),         # no native bf16: f32 engines only
    (AMX, 'f32', ['openvino', 'onnx'], False),         # precision='f32': today's f32 answers
    (AMX, None, ['onnx'], False),                      # no OpenVINO
])
def test_bf16_is_a_candidate_only_on_a_native_bf16_cpu_with_precision_unset(features, precision, engines, bf16,
                                                                            monkeypatch):
    monkeypatch.setattr(auto_backend, 'cpu_features', lambda cpuinfo=None: features)
    assert candidates(engines, precision) == engines + ([BF16] if bf16 else [])
    spec = ModelSpec('w.pdparams', threads=1)
    assert [engine_spec(label, spec, Path('x')).precision for label in (BF16, 'onnx')] == ['bf16', 'f32']


class _Engine:
    cfg = None


@pytest.mark.parametrize('problem, medians, engine', [
    (None, {'openvino': 30, 'onnx': 32, BF16: 12}, BF16),             # kept the instances, faster
    (None, {'openvino': 30, 'onnx': 32, BF16: 40}, 'openvino'),       # kept them, slower
    ('shapes_000023.jpg: kept 2 of 3 instances', {'openvino': 30, 'onnx': 32}, 'openvino'),   # kept out, untimed
])
def test_bf16_is_timed_only_when_it_keeps_the_f32_instances(problem, medians, engine, monkeypatch):
    monkeypatch.setattr(auto_backend, 'cpu_features', lambda cpuinfo=None: AMX)
    checked = []
    monkeypatch.setattr(auto_backend, 'bf16_problem', lambda f32, bf16: checked.append((f32, bf16)) or problem)

    def measured(backends):
        assert sorted(backends) == sorted(medians)
        return {'engine': min(medians, key=medians.get), 'timings_ms': medians, 'new_size_ms': medians,
                'timing_input': [1, 3, 320, 448], 'timings': 1}

    monkeypatch.setattr(auto_backend, 'measured_choice', measured)
    backends = {label: _Engine() for label in ('openvino', 'onnx', BF16)}
    choice = timed_choice(backends)
    assert choice['engine'] == engine and checked == [(backends['openvino'], backends[BF16])]
    assert choice.get('bf16_kept_out') == problem
    hint = bf16_hint(choice, list(backends))
    assert (hint is None) == (engine == BF16)
    if problem:
        assert hint == f'auto: OpenVINO bf16 not used: its instances differ from f32 ({problem})'
    elif engine != BF16:
        assert hint == ('auto: OpenVINO bf16 not used: 40 ms (40 ms on a new size) against openvino f32 30 ms '
                        "(30 ms on a new size) (backend='openvino', precision='bf16' runs it)")


def test_a_bf16_cpu_told_f32_hears_of_bf16_once_and_an_avx2_cpu_hears_nothing(monkeypatch):
    choice = {'engine': 'onnx', 'timings_ms': {'openvino': 30, 'onnx': 20}}
    monkeypatch.setattr(auto_backend, 'cpu_features', lambda cpuinfo=None: AMX)
    assert 'with precision unset auto tries OpenVINO bf16' in bf16_hint(choice, ['openvino', 'onnx'])
    monkeypatch.setattr(auto_backend, 'cpu_features', lambda cpuinfo=None: AVX2)
    assert bf16_hint(choice, ['openvino', 'onnx']) is None


def test_precision_unset_lets_auto_choose_and_bf16_is_not_asked_of_auto():
    """``precision`` defaults to None (auto's choice); 'f32' holds auto to f32; bf16 or int8 asked
    of auto is refused in one line that says auto takes bf16 itself."""
    assert ModelSpec().precision is None
    assert ModelSpec(backend='auto', precision='f32').check() is None
    with pytest.raises(BackendError, match="precision='bf16' needs backend='openvino' .auto chooses bf16 itself"):
        ModelSpec(backend='auto', precision='bf16').check()
