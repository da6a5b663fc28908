"""tools/dev/serve_proxy.py on a short run: its table, a row per attack asked for, behind the shipped site
installed in a copy of the distribution's nginx layout (nginx from the system's packages)."""
import pytest

from solov2.tools.dev import nginx_stock, serve_proxy

pytest.importorskip('fastapi', reason='the service needs requirements-serve.txt')


@pytest.mark.skipif(not nginx_stock.NGINX or not nginx_stock.SYSTEM.is_dir(),
                    reason="needs the distribution's nginx (apt install nginx; .ci/run installs it)")
def test_serve_proxy_prints_a_row_per_attack(capsys):
    attacks = ['tricklers, one address', 'a 2 GB Content-Length']
    assert serve_proxy.main(['--seconds', '1', '--scale', '0.2', '--backend', 'dygraph',
                             '--attacks', '|'.join(attacks)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert '2 service(s)' in lines[0] and lines[2].startswith('| attack | good client |')
    rows = [line.split(' | ') for line in lines[4:]]
    assert [row[0] for row in rows] == [f'| {name}' for name in attacks]
    assert all(row[3] == 'yes' for row in rows) and '413' in rows[1][4]


def test_serve_proxy_refuses_an_unknown_attack(capsys):
    with pytest.raises(SystemExit):
        serve_proxy.main(['--attacks', 'a typo'])
    assert "no attack named 'a typo'" in capsys.readouterr().err
