"""tools/dev/serve_mixed.py end to end for a second a phase (dygraph, one client of 12 MP photos): the server
starts and stops, and the report has the small client's latency alone and beside them and the worst /healthz."""
import importlib
import re

import pytest

pytest.importorskip('fastapi', reason='the service needs requirements-serve.txt')
pytest.importorskip('httpx', reason='needs requirements-test.txt')


def test_serve_mixed_reports_the_small_client_alone_and_beside_the_large_ones(capsys):
    serve_mixed = importlib.import_module('solov2.tools.dev.serve_mixed')
    assert serve_mixed.main(['--seconds', '1', '--large', '1', '--backend', 'dygraph']) == 0
    alone, beside = capsys.readouterr().out.splitlines()[-2:]
    assert re.fullmatch(r'small client alone: p50 \d+ ms, p95 \d+ ms \(\d+ answers\); worst /healthz [\d.]+ ms', alone)
    assert re.fullmatch(r'beside 1 clients of 12 MP polygons \(min_score 0\): p50 \d+ ms, p95 \d+ ms '
                        r'\(\d+ answers; p95 [\d.]+x alone\); worst /healthz [\d.]+ ms; '
                        r'large answers \d+ of \d+ \([\d.]+ MB each\)', beside)
