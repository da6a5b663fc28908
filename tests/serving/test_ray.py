"""The service as a Ray Serve deployment, as docs/serving.md's block deploys it (run here as written
but for the port): two replicas on a local Ray instance of 2 CPUs, each with its model in its own
process (each its own replica id), answer through Ray's HTTP proxy (skipped without requirements-ray.txt)."""
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from solov2.core.paths import SAMPLE_IMAGES
from tests.helpers import REPO_DIR, free_port
from tests.serving.running import httpx

ray = pytest.importorskip('ray', reason='the Ray Serve deployment needs requirements-ray.txt')
serve = pytest.importorskip('ray.serve')
BLOCK = re.compile(r'<!--\s*served:[^>]*test_ray\.py[^>]*-->\s*\n```python\n(.*?)^```', re.MULTILINE | re.DOTALL)


def test_the_pages_deployment_runs_two_replicas_that_answer():
    code = BLOCK.search((REPO_DIR / 'docs' / 'serving.md').read_text()).group(1)
    port = free_port()
    try:
        exec(code.replace("'port': 8000", f"'port': {port}"), {})
        with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=60) as client:
            answered, deadline = set(), time.monotonic() + 30
            while len(answered) < 2 and time.monotonic() < deadline:   # Ray spreads requests at random
                with ThreadPoolExecutor(4) as pool:
                    answers = list(pool.map(lambda _: client.get('/v1/model'), range(8)))
                answered |= {answer.json()['replica'] for answer in answers}
            picture = (REPO_DIR / SAMPLE_IMAGES / 'shapes_000057.jpg').read_bytes()
            result = client.post('/v1/segment', content=picture, headers={'Content-Type': 'image/jpeg'})
        assert len(answered) == 2
        assert result.status_code == 200 and result.json()['instances'], result.text
    finally:
        serve.shutdown()
        ray.shutdown()
