"""docs/serving.md's calls run as written against the service its Start block starts
(``python tools/serve.py``, the shipped model on the default engine): each block marked
``<!-- served: ... test_docs_serving.py -->`` (the curl lines, the Python client), with the page's port replaced by a
free one, from the checkout's root; every curl answer is JSON, the Python client prints an
instance."""
import json
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_DIR, free_port
from tests.serving.running import httpx, wait_ready

PAGE = REPO_DIR / 'docs' / 'serving.md'
SERVED = re.compile(r'<!--\s*served:[^>]*test_docs_serving\.py\s*-->\s*\n```(bash|python)\n(.*?)^```',
                    re.MULTILINE | re.DOTALL)
PAGE_PORT = '127.0.0.1:8000'


@pytest.fixture(scope='module')
def port():
    """The port of ``python tools/serve.py`` running from the checkout, as the page starts it."""
    chosen = free_port()
    server = subprocess.Popen([sys.executable, 'tools/serve.py', '--port', str(chosen)], cwd=REPO_DIR,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f'http://127.0.0.1:{chosen}', timeout=30) as client:
            wait_ready(client, timeout_s=300)
        yield chosen
    finally:
        server.terminate()
        server.wait(60)


def test_the_page_marks_its_calls():
    assert [kind for kind, _ in SERVED.findall(PAGE.read_text())] == ['bash', 'python']


@pytest.mark.parametrize('kind, code', SERVED.findall(PAGE.read_text()), ids=lambda value: value[:6])
def test_a_served_block_runs_against_the_service(port, kind, code):
    code = code.replace(PAGE_PORT, f'127.0.0.1:{port}')
    if kind == 'python':
        done = subprocess.run([sys.executable, '-c', code], cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
        return
    for line in code.strip().splitlines():
        done = subprocess.run(['bash', '-c', line + ' --fail --silent --show-error'], cwd=REPO_DIR,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (line, done.stderr)
        assert json.loads(done.stdout), line
