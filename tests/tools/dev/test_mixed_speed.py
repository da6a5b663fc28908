"""tools/dev/mixed_speed.py end to end on the tiny exported model of tests/model/inference/test_export.py and
its INT8 folder (tools/quantize.py on the two test pictures): its section lands in an existing report
with a row per folder and a column per variant, the rest of the report kept. Marked ``deploy``."""
import re

import pytest

pytest.importorskip('onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('openvino', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('nncf', reason='deploy test: needs requirements-deploy.txt')

from solov2.tools import quantize  # noqa: E402
from solov2.tools.dev import mixed_speed, report  # noqa: E402
from tests.model.inference.test_export import (  # noqa: E402
    hot,  # noqa: F401  (the module fixture: weights + export folder)
    image_dir,  # noqa: F401
)

pytestmark = [pytest.mark.deploy, pytest.mark.benchmark,
              pytest.mark.filterwarnings("ignore:Tensor do not have 'place':UserWarning"),
              pytest.mark.filterwarnings('ignore:The Attr\\(force_cpu\\):UserWarning')]
CELL = r'\d+\.\d\d \(\d+\.\d\dx; \d+ models?, \d+\.\d s\)'


def test_mixed_speed_writes_its_section_with_a_row_per_folder(hot, image_dir, tmp_path):  # noqa: F811
    int8 = tmp_path / 'int8'
    assert quantize.main(['--model-dir', str(hot[1]), '--images', str(image_dir), '--output', str(int8)]) == 0
    out = tmp_path / 'bench'
    out.with_suffix('.md').write_text('# Benchmark\n\nthe end-to-end table\n')
    assert mixed_speed.main(['--model-dir', str(hot[1]), '--int8-dir', str(int8), '--images', str(image_dir),
                             '--random', '2', '--rounds', '1', '--out', str(out)]) == 0
    text = out.with_suffix('.md').read_text()
    assert text.startswith('# Benchmark\n\nthe end-to-end table\n\n' + mixed_speed.MARKERS[0])
    section = report.existing_section(text, mixed_speed.MARKERS)
    assert f'Machine: {report.machine_line(0)};' in section and '--random 2 --rounds 1' in section
    assert '| folder | f32 | f32-buckets | int8 | int8-per-size | onnx |' in section
    rows = [[cell.strip() for cell in line.strip('|').split('|')] for line in section.splitlines()
            if re.search(CELL, line)]
    assert [row[0] for row in rows] == [f'{image_dir} (2 pictures)', '2 random sizes']
    for cells in rows:
        assert len(cells) == 6 and all(re.fullmatch(CELL, cell) for cell in cells[1:])
        assert cells[1].split(' (')[1].startswith('1.00x;')            # f32 against itself
