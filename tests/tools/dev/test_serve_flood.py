"""tools/dev/serve_flood.py end to end for two seconds (dygraph, two flooding clients: the smoke of the
benchmark): the server starts and stops, and the report has the small client's answers, the flood's
statuses, the 503s by reason from /metrics and the peak memory."""
import importlib
import re

import pytest

pytest.importorskip('fastapi', reason='the service needs requirements-serve.txt')
pytest.importorskip('httpx', reason='needs requirements-test.txt')

from tests.helpers import free_port  # noqa: E402


def test_serve_flood_reports_both_clients_and_the_refusals(capsys):
    serve_flood = importlib.import_module('solov2.tools.dev.serve_flood')
    assert serve_flood.main(['--seconds', '2', '--flood', '2', '--backend', 'dygraph', '--port', str(free_port())]) == 0
    text = capsys.readouterr().out
    assert re.search(r'small client \(640x480 every 0\.5 s\): \{200: \d+\}, worst [\d.]+ s', text), text
    assert re.search(r"flood: \{[^}]*\}; 503s by reason: \{('in-flight budget': \d+)?\}", text), text
    assert re.search(r'server peak resident memory: \+\d+ MB', text), text
