"""tools/dev/serve_speed.py end to end on a few requests: both servers start, answer, stop, and
the table has a row each with every figure (dygraph, one thread: the smoke of the benchmark)."""
import importlib
import re

import pytest

pytest.importorskip('fastapi', reason='the service needs requirements-serve.txt')
pytest.importorskip('httpx', reason='needs requirements-test.txt')

FIGURES = (r'\| [\d.]+, [\d.]+, [\d.]+ \| [\d.]+, [\d.]+, [\d.]+ \| [\d.]+x \| ([\d.]+|-) '
           r'\| [\d.]+, \d+, \d+ of 8 \| \d+ / \d+ \| \d+ / \d+ \|')


def test_serve_speed_writes_a_row_per_server(tmp_path):
    serve_speed = importlib.import_module('solov2.tools.dev.serve_speed')
    out = tmp_path / 'serve_speed.md'
    assert serve_speed.main(['--requests', '8', '--rss', '12', '16', '--threads', '1', '--backend', 'dygraph',
                             '--port', '0', '--out', str(out)]) == 0
    text = out.read_text()
    assert 'RSS after 12 / 16 requests' in text
    for server in ('tools/serve.py', 'plain ThreadingHTTPServer'):
        assert re.search(re.escape(server) + r'[^|]* ' + FIGURES, text), text
