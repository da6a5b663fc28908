"""The service as a Ray Serve deployment on a local Ray instance: two replicas, each with its
model in its own process, answer through Ray's HTTP proxy (skipped without requirements-ray.txt)."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from solov2.core.paths import SAMPLE_IMAGES
from tests.helpers import REPO_DIR, free_port
from tests.model.serving.running import SMALL_MODEL, ServeSettings, httpx

ray = pytest.importorskip('ray', reason='the Ray Serve deployment needs requirements-ray.txt')
serve = pytest.importorskip('ray.serve')


def test_two_replicas_answer():
    from solov2.model.serving.ray_deployment import deployment
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={'host': '127.0.0.1', 'port': port})
        serve.run(deployment(ServeSettings(**SMALL_MODEL), replicas=2, cpus_per_replica=1), route_prefix='/')
        with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=60) as client:
            answered, deadline = set(), time.monotonic() + 30
            while len(answered) < 2 and time.monotonic() < deadline:   # Ray spreads requests at random
                with ThreadPoolExecutor(4) as pool:
                    answers = list(pool.map(lambda _: client.get('/v1/model'), range(8)))
                answered |= {answer.json()['process'] for answer in answers}
            picture = (REPO_DIR / SAMPLE_IMAGES / 'shapes_000057.jpg').read_bytes()
            result = client.post('/v1/segment', content=picture, headers={'Content-Type': 'image/jpeg'})
        assert len(answered) == 2
        assert result.status_code == 200 and result.json()['instances'], result.text
    finally:
        serve.shutdown()
        ray.shutdown()
