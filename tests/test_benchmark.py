"""tools/benchmark.py end to end on a small input: every implementation runs and the
report (markdown table + PNG) names each of them with a number."""
import re

from tools import benchmark


def test_benchmark_writes_table_and_plot(tmp_path):
    out = tmp_path / 'bench'
    assert benchmark.main(['--configs', '1', '--backends', 'dygraph', 'inference', '--num-images', '2',
                           '--size', '96', '--runs', '1', '--opt', 'test_short=64', 'test_max=96',
                           '--out', str(out)]) == 0
    report = out.with_suffix('.md').read_text()
    assert out.with_suffix('.png').stat().st_size > 1000
    for name in ('ours, dygraph', 'ours, inference', 'PaddleDetection 2.6'):
        row = next(line for line in report.splitlines() if name in line)
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert cells[1] == '64x64'
        assert float(cells[4]) > 0                      # end-to-end images/s
        assert re.fullmatch(r'\d+\.\d\dx', cells[5])    # ratio to PaddleDetection
    facts = report.split('network GFLOP')[1]
    assert re.search(r'\| 1 Light448R50 \| 64x64 \| \d+ \| [\d.]+ / [\d.]+ \|', facts)
