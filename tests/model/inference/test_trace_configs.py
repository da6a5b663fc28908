"""The export's tracing (``save_inference_model``: every toolkit forward run as plain Python, no
dy2static rewriting) on every config with random weights: the Paddle Inference model it writes
reproduces dygraph, as the export's own check measures it (kernels and mask features within
``VERIFY_TOLERANCE`` on a random input, else ExportError). Needs no deployment extra. The suite
runs every block type (ResNet vb and vd, DCN v1 and v2, the enhanced and light heads); the four
101-layer configs (the same blocks, deeper: 25-30 s each on 2 cores) run under ``-m benchmark``."""
import paddle
import pytest

from solov2.config import CONFIGS
from solov2.model.inference.export import export

DEEP = (4, 8, 10, 12)


@pytest.mark.parametrize('number', [pytest.param(n, marks=pytest.mark.benchmark) if n in DEEP else n
                                    for n in sorted(CONFIGS)])
def test_every_config_traces_to_what_dygraph_computes(number, tmp_path):
    paddle.seed(number)
    lines = export(number, CONFIGS[number], None, tmp_path / 'export', fmt='paddle')
    assert [line for line in lines if line.startswith('inference: max abs diff vs dygraph')], lines
