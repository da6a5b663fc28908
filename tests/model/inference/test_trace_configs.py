"""The export's tracing (``save_inference_model``: every toolkit forward run as plain Python, no
dy2static rewriting) on every config with random weights, on whichever Paddle line runs the suite
(CI runs this file on Paddle 2.6 too, whose static ``expand`` and friends check more than 3.x's):
the Paddle Inference model it writes reproduces dygraph, as the export's own check measures it
(kernels and mask features within ``VERIFY_TOLERANCE`` on a random input, else ExportError), and the
network traced with the ``regions`` input (what size buckets and ONNX's ``model_regions.onnx`` are
made from) gives each picture of a padded batch its own answer under Paddle Inference. Needs no
deployment extra. The suite runs every block type (ResNet vb and vd, DCN v1 and v2, the enhanced and
light heads); the four 101-layer configs (the same blocks, deeper: 25-30 s each on 2 cores) run
under ``-m benchmark``."""
import numpy as np
import paddle
import pytest

from solov2.config import CONFIGS, with_overrides
from solov2.model.build import build_model
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.export import VERIFY_TOLERANCE, compare_outputs, export
from solov2.model.inference.export_network import ExportableSOLOv2, save_inference_model

DEEP = (4, 8, 10, 12)
NUMBERS = [pytest.param(n, marks=pytest.mark.benchmark) if n in DEEP else n for n in sorted(CONFIGS)]
# an odd and an even multiple of 32 each way, padded into a batch that changes the parity of both
# sides of one picture (P6, stride 64, has ceil(side / 64) rows)
PICTURES, BATCH_HW = [(96, 64), (64, 96)], (128, 128)
SMALL_GRIDS = ['num_grids=(8, 6, 4, 3, 2)']     # the same graph (grids change no parameter), a tenth of the heads' work


@pytest.mark.parametrize('number', NUMBERS)
def test_every_config_traces_to_what_dygraph_computes(number, tmp_path):
    paddle.seed(number)
    lines = export(DygraphBackend(CONFIGS[number], None, 'cpu'), number, tmp_path / 'export', fmt='paddle')
    assert [line for line in lines if line.startswith('inference: max abs diff vs dygraph')], lines


def _paddle_inference(model_file: str):
    """A Paddle Inference predictor of ``model_file`` (params beside it) on one CPU thread:
    ``run(feed)`` -> its outputs as numpy."""
    import paddle.inference as paddle_infer
    config = paddle_infer.Config(model_file, model_file.rsplit('.', 1)[0] + '.pdiparams')
    config.disable_gpu()
    config.disable_mkldnn()           # as the inference backend: Paddle 3's oneDNN interpolate fails on PIR programs
    config.set_cpu_math_library_num_threads(1)
    predictor = paddle_infer.create_predictor(config)

    def run(feed):
        for name, array in feed.items():
            handle = predictor.get_input_handle(name)
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        predictor.run()
        return [predictor.get_output_handle(name).copy_to_cpu() for name in predictor.get_output_names()]
    return run


@pytest.mark.parametrize('number', NUMBERS)
def test_every_config_traces_the_regions_graph_which_gives_each_padded_picture_its_own_answer(number, tmp_path):
    """Two pictures of other sizes zero-padded into one batch with their sizes as ``regions``, run by
    Paddle Inference from the traced regions graph: each picture's kernels and mask features (cropped
    to its own quarter size) are dygraph's on the picture alone."""
    paddle.seed(number)
    model = build_model(with_overrides(CONFIGS[number], SMALL_GRIDS))
    model.eval()
    run = _paddle_inference(save_inference_model(model, str(tmp_path / 'regions'), regions=True))
    rng = np.random.RandomState(number)
    pictures = [rng.standard_normal((1, 3, *hw)).astype(np.float32) for hw in PICTURES]
    batch = np.zeros((len(pictures), 3, *BATCH_HW), np.float32)
    for row, picture in enumerate(pictures):
        batch[row, :, :picture.shape[2], :picture.shape[3]] = picture[0]
    got = run({'image': batch, 'regions': np.array(PICTURES, np.int64)})
    largest = np.max(PICTURES, axis=0) // 4
    assert got[2].shape[2:] == tuple(largest)
    with paddle.no_grad():
        for row, (picture, (height, width)) in enumerate(zip(pictures, PICTURES)):
            alone = [t.numpy() for t in ExportableSOLOv2(model)(paddle.to_tensor(picture))]
            own = [got[0][row:row + 1], got[1][row:row + 1], got[2][row:row + 1, :, :height // 4, :width // 4]]
            diffs = compare_outputs(own, alone)
            assert max(diffs['kernels'], diffs['mask_feat']) < VERIFY_TOLERANCE, (number, row, diffs)
