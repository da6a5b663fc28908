"""deploy/Dockerfile and deploy/systemd/solov2@.service (tools/dev/deploy_replay.py), with no container
daemon or systemd running here: the Dockerfile parsed and checked (built from the package index, the cache
baked and pinned, a user without rights, probes, the service on every address of the container); the unit
read by ``systemd-analyze verify``; under ``-m build`` (minutes: a fresh venv from the package index) the
Dockerfile's install and bake steps replayed and its CMD started as its USER: the replica serves the pinned
engine without exporting, its HEALTHCHECK passes, and SIGTERM ends it with 0."""
import json
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from solov2.tools.dev import deploy_replay
from tests.helpers import REPO_DIR, free_port

needs_systemd_analyze = pytest.mark.skipif(deploy_replay.SYSTEMD_ANALYZE is None,
                                           reason='needs systemd-analyze (apt install systemd)')


def test_the_dockerfile_installs_from_the_index_bakes_a_pinned_cache_and_runs_unprivileged_with_probes():
    parsed = deploy_replay.instructions()
    words = [word for word, _ in parsed]
    assert words[0] == 'FROM' and re.fullmatch(r'python:3\.\d+-slim', parsed[0][1])
    runs = ' && '.join(str(text) for word, text in parsed if word == 'RUN')
    installs = [part for part in runs.split(' && ') if 'pip install ' in part]
    assert installs and not any(flag in runs for flag in ('--index-url', '--no-index', '--find-links'))
    for install in installs:
        for name in re.findall(r'-r (\S+)', install):
            assert (REPO_DIR / name).is_file(), name
        assert '-c deploy/constraints.txt' in install, install          # the versions the suite ran
    pinned = [line for line in (REPO_DIR / 'deploy' / 'constraints.txt').read_text().splitlines()
              if line and not line.startswith('#')]
    assert pinned and all(re.fullmatch(r'[a-z0-9-]+==[\w.]+', line) for line in pinned), pinned
    named = {line.split('==')[0] for line in pinned}
    assert {'paddlepaddle', 'opencv-python-headless', 'numpy', 'fastapi', 'uvicorn', 'openvino', 'onnxruntime',
            'paddle2onnx'} <= named
    assert all(not (a == b == 'RUN') for a, b in zip(words, words[1:]))      # hadolint DL3059: no RUN after a RUN
    bake = [part for part in runs.split(' && ') if ' cache bake ' in part]
    assert len(bake) == 1 and '--pin ' in bake[0]
    assert words.index('COPY') < words.index('USER') and runs.index('cache bake') < runs.index('useradd')
    env = deploy_replay.env_of(parsed, {'PATH': '/usr/bin'}, Path('/'))
    assert env['SOLOV2_CACHE'].startswith('//opt/solov2/')
    user = [text for word, text in parsed if word == 'USER']
    assert user and user[-1] not in ('root', '0')
    healthcheck = dict(parsed)['HEALTHCHECK']
    assert '/readyz' in healthcheck and re.search(r'--timeout=\d+s', healthcheck)
    cmd = dict(parsed)['CMD']
    assert cmd[:3] == ['/opt/solov2/venv/bin/solov2', 'serve', '--host'] and cmd[3] == '0.0.0.0'
    assert cmd[cmd.index('--port') + 1] == dict(parsed)['EXPOSE'] == '8000'
    ignored = (REPO_DIR / '.dockerignore').read_text().split()
    assert '.git' in ignored and 'export' in ignored


@needs_systemd_analyze
def test_systemd_reads_the_unit_without_a_complaint():
    code, said = deploy_replay.verify_unit(shutil.which('true'))
    assert (code, said) == (0, '')
    unit = deploy_replay.UNIT.read_text()
    assert re.search(r'^ExecStart=\S+/solov2 serve --port %i ', unit, re.M)
    assert int(re.search(r'^TimeoutStopSec=(\d+)', unit, re.M).group(1)) > 30       # past --timeout-s: a drain
    assert int(re.search(r'^TimeoutStartSec=(\d+)', unit, re.M).group(1)) >= 180    # two first bakes, in turn
    assert re.search(r'^Type=notify$', unit, re.M) and int(re.search(r'^WatchdogSec=(\d+)$', unit, re.M).group(1)) <= 10
    broken = Path(tempfile.mkdtemp()) / 'solov2@.service'
    broken.write_text(unit.replace('TimeoutStopSec=', 'TimeoutStopSecs='))
    assert 'Unknown key' in deploy_replay.verify_unit(shutil.which('true'), broken)[1]     # the check can fail
    shutil.rmtree(broken.parent)


@pytest.mark.build
def test_the_dockerfile_replayed_serves_the_pinned_engine_as_its_user():
    root = Path(tempfile.mkdtemp(prefix='solov2-image-'))
    root.chmod(0o755)                      # its USER reads the venv and the cache below it
    try:
        replayed = deploy_replay.replay(root, log=lambda line: None)
        assert all(line.startswith(('apt-get', 'useradd', 'rm -rf /var/lib/apt')) for line in replayed['skipped'])
        port = free_port()
        service = deploy_replay.run_cmd(replayed, root, port, stderr=subprocess.PIPE, text=True)
        try:
            model, health = ready_model(port, service), subprocess.run(
                deploy_replay.healthcheck_command(replayed, port), env=replayed['env'], timeout=30)
            service.send_signal(signal.SIGTERM)
            said = service.communicate(timeout=60)[1]
        finally:
            service.kill()
        assert (model['backend'], model['precision'], model['pinned']) == ('openvino', 'f32', True), said
        assert health.returncode == 0 and service.returncode == 0, said
        lines = [json.loads(line) for line in said.splitlines()]
        assert not any('exporting' in line['message'] for line in lines), said       # baked: no export at start
        if deploy_replay.SYSTEMD_ANALYZE:
            program = str(root / 'opt/solov2/venv/bin/solov2')
            assert deploy_replay.verify_unit(program) == (0, '')
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ready_model(port: int, service) -> dict:
    """/v1/model of the service on ``port`` once /readyz answers 200 (within 3 minutes)."""
    import httpx
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and service.poll() is None:
        try:
            if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=5).status_code == 200:
                return httpx.get(f'http://127.0.0.1:{port}/v1/model', timeout=5).json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    service.kill()
    pytest.fail(f'not ready within 3 minutes: {service.communicate()[1][-3000:]}')


def test_the_replay_maps_the_image_paths_and_the_user(tmp_path):
    line = deploy_replay.in_root('python -m venv /opt/solov2/venv && chown -R solov2 /opt/solov2/cache', tmp_path,
                                 {'solov2': '10001'})
    assert line.startswith(shlex.quote(deploy_replay.BASE_PYTHON) + ' -m venv ')
    assert f'{tmp_path}/opt/solov2/venv' in line and f'chown -R 10001 {tmp_path}/opt/solov2/cache' in line
    assert deploy_replay.local(['solov2', 'serve', '--host', '0.0.0.0', '--port', '8000'], 9) == [
        'solov2', 'serve', '--host', '127.0.0.1', '--port', '9']
