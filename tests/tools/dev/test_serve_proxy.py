"""tools/dev/serve_proxy.py on a short run: a line per attack and door, the good client's statuses
and worst latency (nginx from the system's packages)."""
import os
import re

import pytest

from solov2.tools.dev import serve_proxy

pytest.importorskip('fastapi', reason='the service needs requirements-serve.txt')


@pytest.mark.skipif(not serve_proxy.NGINX and not os.environ.get('SOLOV2_REQUIRE_SYSTEM_PACKAGES'),
                    reason='needs nginx (apt install nginx; .ci/run installs it)')
def test_serve_proxy_reports_each_attack_with_and_without_nginx(capsys):
    assert serve_proxy.main(['--seconds', '1']) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    doors = [f'{attack}, {door}' for attack in ('tricklers', 'slowloris', 'both')
             for door in ('the service alone', 'behind nginx')]
    assert [line.split(':')[0] for line in lines] == doors
    assert all(re.search(r'good client \{.*\}, worst [\d.]+ s$', line) for line in lines), lines
