"""docs/serving.md's nginx configuration, run in nginx from the system's packages (.ci/run installs
it) in front of the service (tools/dev/serve_proxy.py), on loopback addresses: reconnecting
tricklers and slowloris connections from two addresses leave a good client from a third answered
200 within 2 s each time, its answers those of the service alone, and the service's log names the
client's address, not nginx's."""
import logging
import os

import pytest

from solov2.tools.dev import serve_proxy
from tests.helpers import free_port
from tests.serving.running import SMALL_MODEL, ServeSettings, serving

pytestmark = pytest.mark.skipif(not serve_proxy.NGINX and not os.environ.get('SOLOV2_REQUIRE_SYSTEM_PACKAGES'),
                                reason='needs nginx (apt install nginx; .ci/run installs it)')


def test_behind_the_documented_nginx_a_good_client_is_answered_while_others_trickle_and_stall(tmp_path, caplog):
    body = serve_proxy.picture()
    with serving(ServeSettings(SMALL_MODEL)) as client:
        alone = client.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'}).json()
        port = free_port()
        nginx = serve_proxy.start_nginx(tmp_path, port, int(client.base_url.port))
        try:
            caplog.set_level(logging.INFO, logger='solov2.serving.app')
            answers = serve_proxy.under_attack(port, body, 8.0, serve_proxy.TRICKLERS, serve_proxy.SLOWLORIS)
        finally:
            nginx.terminate()
            nginx.wait(30)
    assert [status for status, _, _ in answers] == [200] * len(answers) and len(answers) >= 10
    assert max(seconds for _, seconds, _ in answers) < 2.0, [round(s, 2) for _, s, _ in answers]
    assert all(answer.json() == alone for _, _, answer in answers)
    logged = [record.getMessage() for record in caplog.records if 'POST /v1/segment 200' in record.getMessage()]
    assert len(logged) >= len(answers) and all(f' {serve_proxy.GOOD} POST' in line for line in logged)
    refused = [line for line in (tmp_path / 'access.log').read_text().splitlines()
               if line.startswith(serve_proxy.TRICKLING) and '" 429 ' in line]
    assert refused                  # an address over its connections is refused by nginx, not the service
