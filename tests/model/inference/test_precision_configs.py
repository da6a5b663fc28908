"""OpenVINO bf16 and INT8 against OpenVINO f32 on every config with random weights (one class's
bias raised, so that the model finds things; test sizes 96 / 160): the network's kernels and
mask features on three drawn pictures (``_batch``), and the instances on two
(``instance_match.compare_instances``: kept at mask IoU >= 0.98, more, score differences).

The suite runs config 5 (a COCO config); every config runs under ``-m benchmark`` (an export and
a quantization each), config 9 (the shipped model's) among them: in the suite its precisions are
measured on the shipped model's real weights instead (test_precision_accuracy.py: mask AP of f32,
bf16 and INT8 against dygraph). Bounds: INT8 (calibrated on the two
pictures) kernels and mask features correlate >= 0.8 with f32 (random weights: ~30% mean
error, so its instances are reported, not bounded; the shipped model's AP is in
test_precision_accuracy.py); bf16 kernels and mask features within 0.15, mean mask-feature
error under 3% of their mean size, where the CPU runs bf16 (test_openvino.py's ``BF16_TOL``,
``BF16_REL``). On a CPU without native bf16 OpenVINO compiles a bf16 request as f32 (its
compiled ``INFERENCE_PRECISION_HINT`` reads f32, the outputs are f32's): there is nothing to
measure, and the backend refuses bf16 there. INT8 runs a batch of two sizes as each picture
alone (to ``BUCKET_TOL``), on the same configs.
``-s`` prints one row per config and precision."""
import pytest

pytest.importorskip('onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('nncf', reason='deploy test: needs requirements-deploy.txt')

import numpy as np
import openvino as ov

from solov2.config import CONFIGS
from solov2.data.transforms import read_image
from solov2.model.inference.instance_match import compare_instances
from solov2.model.inference.openvino_backend import OpenVinoBackend, has_bf16
from solov2.model.inference.pipeline import Predictor
from tests.model.inference.test_export import _batch, image_dir  # noqa: F401  (a fixture)
from tests.model.inference.test_openvino import BF16_REL, BF16_TOL, BUCKET_TOL, INT8_CORRELATION, small_lanes

pytestmark = [pytest.mark.deploy,
              pytest.mark.filterwarnings("ignore:Tensor do not have 'place':UserWarning"),
              pytest.mark.filterwarnings('ignore:The Attr\\(force_cpu\\):UserWarning')]
SUITE = (5,)
EVERY_CONFIG = [n if n in SUITE else pytest.param(n, marks=pytest.mark.benchmark) for n in sorted(CONFIGS)]
PROPERTY_SET = [(96, 128, 1), (64, 128, 2), (128, 96, 3)]   # drawn pictures (H, W, seed): two INT8 buckets' compiles


def _lanes(number, pytestconfig, run_builds, images):
    """(OpenVINO f32, {precision: its backend}) of config ``number``'s random model (its export, INT8
    folder and compiled models: ``small_lanes``, test_openvino.py's bucket test reads config 5's too):
    INT8 always, bf16 where the CPU has it."""
    export, int8, compiled = small_lanes(run_builds, pytestconfig, number, images)
    lanes = {'int8': OpenVinoBackend(str(int8), threads=1, precision='int8', compiled_cache=compiled)}
    if has_bf16(ov.Core()):
        lanes['bf16'] = OpenVinoBackend(str(export), threads=1, precision='bf16', compiled_cache=compiled)
    return OpenVinoBackend(str(export), threads=1, compiled_cache=compiled), lanes


@pytest.mark.parametrize('number', EVERY_CONFIG)
def test_bf16_and_int8_against_f32(number, pytestconfig, run_builds, image_dir):  # noqa: F811
    f32, lanes = _lanes(number, pytestconfig, run_builds, image_dir)
    pictures = [read_image(path) for path in sorted(image_dir.iterdir())]
    for precision, backend in lanes.items():
        correlations, errors = [], []
        for height, width, seed in PROPERTY_SET:
            batch = _batch(height, width, seed)
            got, want = backend.run_numpy(batch), f32.run_numpy(batch)
            correlations.append(min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(got[1:], want[1:])))
            errors.append((max(np.abs(a - b).max() for a, b in zip(got[1:], want[1:])),
                           np.abs(got[2] - want[2]).mean() / np.abs(want[2]).mean()))
        ours, theirs = Predictor(backend), Predictor(f32)
        stats = [compare_instances(ours.detect(image), theirs.detect(image)) for image in pictures]
        print(f"\nconfig {number} {precision}: correlation >= {min(correlations):.3f}, max abs error "
              f"{max(e[0] for e in errors):.3g}, mean mask_feat error {max(e[1] for e in errors):.1%}; instances "
              f"kept {sum(s['kept'] for s in stats)} of {sum(s['instances'] for s in stats)}, "
              f"{sum(s['extra'] for s in stats)} more, lowest IoU {min(s['min_iou'] for s in stats):.3f}, "
              f"scores up to {max(s['max_score_diff'] for s in stats):.3f} apart")
        assert sum(s['instances'] for s in stats) > 0, number          # the raised bias: f32 finds things
        if precision == 'int8':
            assert min(correlations) >= INT8_CORRELATION, (number, correlations)
        else:
            assert max(e[0] for e in errors) <= BF16_TOL and max(e[1] for e in errors) <= BF16_REL, (number, errors)


@pytest.mark.parametrize('number', EVERY_CONFIG)
def test_int8_runs_a_batch_of_several_sizes_as_each_picture_alone(number, pytestconfig, run_builds,
                                                                   image_dir):  # noqa: F811
    """The INT8 model on one batch of a 64x128 and a 64x64 picture, padded to the 96x128 bucket with
    each picture's size as ``regions``: each gets its outputs alone, to float rounding.
    ``Region.upsample2`` copies a picture's last column into the next with a select; written as a
    multiply-add, NNCF quantized the two products on grids of their own, and the smaller picture's
    mask features differed at its last column (config 5: by 23% of their largest value)."""
    _, int8, compiled = small_lanes(run_builds, pytestconfig, number, image_dir)
    backend = OpenVinoBackend(str(int8), threads=1, precision='int8', buckets=True, compiled_cache=compiled)
    wide, square = _batch(64, 128, seed=3), _batch(64, 64, seed=4)
    both = np.concatenate([wide, np.pad(square, ((0, 0), (0, 0), (0, 0), (0, 64)))])
    together = backend.run_numpy(both, np.array([[64, 128], [64, 64]], np.int64))
    for member, alone in enumerate([backend.run_numpy(wide), backend.run_numpy(square)]):
        rows, cols = alone[2].shape[2:]
        got = [together[0][member], together[1][member], together[2][member, :, :rows, :cols]]
        for name, output, want in zip(('scores', 'kernels', 'mask_feat'), got, alone):
            assert np.abs(output - want[0]).max() <= BUCKET_TOL * np.abs(want).max(), (number, member, name)
