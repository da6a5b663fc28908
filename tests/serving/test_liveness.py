"""A hung service is taken out: ``/healthz`` answers 503 while the predictor holds pictures past the deadline
without finishing one (a wedged engine call), 200 again once it moves; under systemd (``Type=notify``,
``WatchdogSec=``) the command says READY=1, then pings WATCHDOG=1 while it lives, and none while frozen, so
that systemd kills and restarts it (deploy/systemd/solov2@.service)."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from solov2.core.paths import SAMPLE_IMAGES
from solov2.serving.liveness import Liveness
from tests.helpers import REPO_DIR, free_port
from tests.serving.running import SMALL_MODEL, ServeSettings, httpx, serving


def test_liveness_is_wedged_only_holding_pictures_past_the_deadline_without_finishing_one():
    now, held = [0.0], [0]
    liveness = Liveness(30.0, lambda: held[0], lambda: now[0])
    held[0], now[0] = 10, 31.0                # held since a sample at 0, 31 s ago, nothing finished
    assert liveness.sample() is not None and not liveness.alive()
    liveness.moved()                          # a picture finished
    now[0] = 32.0
    assert liveness.sample() is None and liveness.alive()
    now[0] = 61.0                             # at rest: nothing held however long
    held[0] = 0
    assert liveness.sample() is None
    now[0] = 70.0                             # the loop stopped sampling: not alive
    assert not liveness.alive()


def test_healthz_says_a_wedged_predictor_then_alive_again_once_it_moves(monkeypatch):
    from solov2.serving.app import create_app
    app = create_app(ServeSettings(SMALL_MODEL, timeout_s=1.0))
    picture = (Path(SAMPLE_IMAGES) / 'shapes_000023.jpg').read_bytes()
    with serving(ServeSettings(SMALL_MODEL), app=app) as client:
        backend, freed = app.state.service.model.backend, threading.Event()
        run = backend.run
        monkeypatch.setattr(backend, 'run', lambda *args, **kwargs: (freed.wait(60), run(*args, **kwargs))[1])
        try:
            posted = threading.Thread(target=client.post, args=('/v1/segment',), kwargs={'content': picture})
            posted.start()
            statuses = []
            for _ in range(100):               # 504 after 1 s, then wedged past the 1 s deadline
                statuses.append(client.get('/healthz').status_code)
                if statuses[-1] == 503:
                    break
                time.sleep(0.1)
            said = client.get('/healthz')
            assert said.status_code == 503 and 'wedged' in said.json()['error'], statuses
        finally:
            freed.set()
        for _ in range(100):
            if client.get('/healthz').status_code == 200:
                break
            time.sleep(0.1)
        assert client.get('/healthz').json() == {'alive': True}
        posted.join(30)


def datagrams(receiver: socket.socket, seconds: float) -> list:
    """The datagrams ``receiver`` gets within ``seconds``."""
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        receiver.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(receiver.recv(256))
        except OSError:
            pass
    return got


def test_the_command_tells_systemd_it_is_ready_and_alive_and_goes_silent_when_frozen(tmp_path):
    address, port = str(tmp_path / 'notify'), free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        environment = {**os.environ, 'NOTIFY_SOCKET': address, 'WATCHDOG_USEC': '10000000'}
        environment.pop('WATCHDOG_PID', None)
        service = subprocess.Popen([sys.executable, str(REPO_DIR / 'tools' / 'serve.py'), '--backend', 'dygraph',
                                    '--threads', '1', '--port', str(port)], env=environment,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            said = datagrams(receiver, 1.0)
            for _ in range(120):
                if b'WATCHDOG=1' in said or service.poll() is not None:
                    break
                said += datagrams(receiver, 1.0)
            assert said[:1] == [b'READY=1'] and b'WATCHDOG=1' in said, said
            assert httpx.get(f'http://127.0.0.1:{port}/healthz').status_code == 200
            service.send_signal(signal.SIGSTOP)           # frozen: no ping, so systemd's watchdog ends it
            datagrams(receiver, 0.2)                      # one sent just before
            assert datagrams(receiver, 3.0) == []
            service.send_signal(signal.SIGCONT)
            assert b'WATCHDOG=1' in datagrams(receiver, 4.0)
        finally:
            service.send_signal(signal.SIGCONT)
            service.terminate()
            service.wait(60)
