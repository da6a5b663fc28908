"""tools/serve.py as a user starts it: SIGTERM during requests loses none of those accepted,
/readyz answers 503 meanwhile, and it exits 0, each request logged in one line, the probes
not; --workers 2 runs two processes, each with its model, beside a parent that holds none,
and Ctrl-C stops them with exit 0; bad settings, and weights that do not load, end in one
line; the port answers at once, /readyz saying why it is not ready while the model exports (with
--workers too); SIGTERM then ends it at once, leaving no temporary folder."""
import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from solov2.core.paths import CACHE_ENV, SAMPLE_IMAGES
from solov2.model.inference.auto_backend import installed_engines
from solov2.tools import serve
from tests.helpers import REPO_DIR, free_port
from tests.serving.running import httpx, metric_families, wait_ready

PICTURE = (REPO_DIR / SAMPLE_IMAGES / 'shapes_000042.jpg').read_bytes()
STAMP = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d'      # a log line's time: ISO 8601, ms, UTC offset


def start(*options, backend='dygraph', env=None):
    """tools/serve.py with the shipped model in ``backend`` on a free port: (process, client)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(REPO_DIR / 'tools' / 'serve.py'), '--backend', backend,
                                '--threads', '1', '--port', str(port), *options],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return process, httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=60)


def in_flight(client) -> float:
    return metric_families(client)['solov2_in_flight'].samples[0].value


def test_sigterm_finishes_the_requests_in_flight_and_exits_0():
    process, client = start('--max-batch', '8', '--max-wait-ms', '1500')
    try:
        wait_ready(client)
        with ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(client.post, '/v1/segment', content=PICTURE) for _ in range(6)]
            deadline = time.monotonic() + 20
            while in_flight(client) < 6 and time.monotonic() < deadline:    # all six wait for their batch
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            draining = stopping_answer(client)
            statuses = [answer.result().status_code for answer in answers]
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert draining is not None, output
    assert (draining.status_code, draining.json()['error']) == (503, 'the service is stopping'), output
    assert statuses == [200] * 6, output
    assert process.returncode == 0, output
    assert 'Shutting down' in output and 'Finished server process' in output
    request_line = r'INFO solov2\.serving\.app: [0-9a-f]{32} 127\.0\.0\.1 POST /v1/segment 200 \d+ ms$'
    logged = re.findall(f'^{STAMP} {request_line}', output, re.MULTILINE)
    assert len(logged) == 6, output                                 # each request, with the client's address
    assert all(re.match(rf'{STAMP} (INFO|WARNING) (solov2|uvicorn)\S*: ', line) for line in output.splitlines()), output
    assert '/readyz' not in output and '/metrics' not in output     # the probes are quiet
    assert 'HTTP/1.1"' not in output                                # uvicorn's own access log is off


def stopping_answer(client, within_s: float = 10.0):
    """The first answer of /readyz other than 200, asked again and again on new connections (a drain on a
    fast CPU lasts as long as one batch: tens of ms); None when the port closes first."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(client.base_url.join('/readyz'), headers={'Connection': 'close'}, timeout=5)
        except httpx.TransportError:
            return None
        if answer.status_code != 200:
            return answer
        time.sleep(0.002)
    return None


def model_answer(client):
    """GET /v1/model on a connection of its own; None when it is not answered 200 within 10 s."""
    with contextlib.suppress(httpx.TransportError):
        answer = httpx.get(client.base_url.join('/v1/model'), timeout=10, headers={'Connection': 'close'})
        return answer if answer.status_code == 200 else None
    return None


def resident_mb(pid: int) -> float:
    """The resident memory (VmRSS) of process ``pid``, MB."""
    status = (Path('/proc') / str(pid) / 'status').read_text()
    return int(status.split('VmRSS:')[1].split()[0]) / 1024


@pytest.mark.skipif(not Path('/proc/self/status').exists(), reason='reads resident memory from /proc')
def test_workers_run_a_model_each_beside_a_small_parent_and_stop_on_ctrl_c_with_exit_0():
    """Each of two processes answers with its own model; the parent, which opened the model in a
    child process, holds neither it nor Paddle (importing Paddle alone takes 300 MB)."""
    process, client = start('--workers', '2', '--log-format', 'json')
    try:
        wait_ready(client)
        answered = set()
        deadline = time.monotonic() + 90
        while len(answered) < 2 and time.monotonic() < deadline:      # each process readies its own model
            with ThreadPoolExecutor(4) as pool:        # a new connection each: the kernel hands them to either process
                answers = list(pool.map(lambda _: model_answer(client), range(8)))
            answered |= {answer.json()['replica'] for answer in answers if answer is not None}
            time.sleep(0.2)
        assert client.post('/v1/segment', content=PICTURE).status_code == 200
        parent_mb = resident_mb(process.pid)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert len(answered) == 2, output
    lines = [json.loads(line) for line in output.splitlines()]      # the parent's and each worker's, one format
    assert all(re.fullmatch(STAMP, line['time']) and line['level'] in ('INFO', 'WARNING') for line in lines), output
    assert sum(line['message'].startswith('ready: ') for line in lines) == 2, output
    assert sum(' POST /v1/segment 200 ' in line['message'] for line in lines) == 1, output
    assert parent_mb < 150, f'{parent_mb:.0f} MB\n{output}'
    assert process.returncode == 0, output


def test_bad_settings_end_in_one_line(capsys):
    assert serve.main(['--backend', 'onnx']) == 2
    shown = capsys.readouterr().err
    assert 'model_dir=' in shown and shown.count('\n') == 1, shown


@pytest.mark.parametrize('argv, words', [
    (['--queue-size', '0'], 'argument --queue-size: takes a whole number of at least 1, not 0 ('),
    (['--max-body-mb', '0'], 'argument --max-body-mb: takes a number above 0, not 0 ('),
    (['--workers', '0'], 'argument --workers: takes a whole number of at least 1, not 0 ('),
    (['--timeout-s', 'nan'], 'argument --timeout-s: takes a number above 0, not nan ('),     # once a bug (exit 1)
    (['--threads', '-1'], 'argument --threads: takes a whole number of at least 0, not -1 (')])
def test_a_bad_limit_is_reported_under_its_flag(argv, words, capsys):
    """The command's flags, not the settings' Python names (which ``ServeSettings`` still checks), in one line."""
    with pytest.raises(SystemExit) as info:
        serve.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith('error: ' + words) and err.count('\n') == 1, err


def test_weights_that_do_not_load_end_it_in_one_line(tmp_path):
    """The port opens before the model (uvicorn's lines come first); the error ends it: its last
    line, no traceback, exit 2."""
    broken = tmp_path / 'broken.pdparams'
    broken.write_bytes(b'not a checkpoint')
    process, _ = start('--weights', str(broken))
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2, output
    assert output.strip().splitlines()[-1].startswith(f'error: {broken} is not a Paddle .pdparams file'), output
    assert 'Traceback' not in output


@pytest.mark.deploy
@pytest.mark.skipif(not installed_engines(), reason='deploy test: --backend auto exports only with '
                                                    'requirements-deploy.txt (else it opens dygraph at once)')
@pytest.mark.parametrize('options, reason', [([], 'the model is loading: exporting it once'),
                                             (['--workers', '2'], 'the model is loading: opening it once')])
def test_the_port_answers_while_the_model_exports_and_sigterm_ends_it_at_once_leaving_nothing(options, reason,
                                                                                             tmp_path):
    """One process, or --workers' parent while a child exports the model once."""
    process, client = start('--device', 'cpu', *options, backend='auto', env={**os.environ, CACHE_ENV: str(tmp_path)})
    try:
        next(line for line in process.stdout if 'auto: exporting' in line)
        time.sleep(1)                                   # into the export, tens of seconds of it left
        alive, ready = client.get('/healthz'), client.get('/readyz')
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        process.kill()
    assert process.returncode == 143, output
    assert output.strip().splitlines()[-1] == ('interrupted (SIGTERM): stopped while loading, nothing was '
                                               'written: run the same command again')
    assert took < 5, f'{took:.1f} s\n{output}'
    assert alive.status_code == 200 and ready.status_code == 503, output
    assert ready.json()['error'].startswith(reason), ready.text
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith('.')] == [], output


def test_workers_answer_healthz_within_a_second_from_bind_to_stop_and_drain_on_sigterm():
    """tools/dev/serve_probes.py's timeline of --workers 2: a probe every 0.1 s is answered 200 within a second
    while the model opens once, while the workers start (they used to wait 7-11 s in the backlog), once
    ready and while a SIGTERM under load drains (new requests 503 'stopping'), until the port closes."""
    from solov2.tools.dev import serve_probes
    result = serve_probes.timeline(argparse.Namespace(workers=2, backend='dygraph', threads=1, clients=3,
                                                      keep_alive=False, pause=0.0, ready_s=2.0, timeout_s=120.0))
    said = '\n'.join(serve_probes.lines(result))
    probes = [probe for phase in result['phases'].values() for probe in probe_list(phase)]
    assert max(seconds for _, seconds in probes) < 1.0, said
    assert {status for status, _ in probes} == {200}, said
    assert result['after_term']['503 the service is stopping'] > 0 and result['exit'] == 0, said


@pytest.mark.parametrize('workers', [1, 2])
def test_sigterm_with_keep_alive_clients_drains_each_process_resets_nothing_and_answers_until_the_exit(workers):
    """SIGTERM while 8 clients post on kept connections (pausing up to 0.5 s between): each serving process (the
    one, or each of --workers') drains, its new requests 503 'stopping' with ``Connection: close`` (a kept
    connection ends on an answer), no client's connection is reset, and the port answers until the process
    ends (Paddle's teardown at the interpreter's exit kept it refused 2 s before; --workers' processes did not
    drain)."""
    from solov2.tools.dev import serve_probes
    result = serve_probes.timeline(argparse.Namespace(workers=workers, backend='dygraph', threads=1, clients=8,
                                                      keep_alive=True, pause=0.5, ready_s=2.0, timeout_s=120.0))
    said = '\n'.join(serve_probes.lines(result))
    assert 'reset' not in result['after_term'] and result['exit'] == 0, said
    # one process ends as its port closes (0.15-0.2 s measured, 2-4.4 s before); --workers' parent after its
    # stand-in's 0.5 s grace for the connections it holds (0.8-1.1 s at load 15)
    assert result['drained'] == workers and result['closed_before_exit_s'] < (1.0 if workers == 1 else 2.0), said


def probe_list(probes):
    """The probes from the first one answered: before it the port is not bound yet."""
    answered = [i for i, (status, _) in enumerate(probes) if status != 'refused']
    return probes[answered[0]:] if answered else probes


def test_once_its_model_has_loaded_a_process_keeps_what_it_made_from_the_collector(caplog):
    """After the load the objects made so far are frozen (a full collection scanned them all, 75-100 ms
    holding the interpreter's lock); a load that failed is logged and freezes nothing."""
    import gc
    import logging
    from types import SimpleNamespace
    gc.unfreeze()       # what a command run in this process froze before
    try:
        serve.worker_loaded(SimpleNamespace(failure=None, problem=None))
        assert gc.get_freeze_count() > 10_000
        gc.unfreeze()
        with caplog.at_level(logging.ERROR, logger='solov2.serving.app'):
            serve.worker_loaded(SimpleNamespace(failure=OSError('no such file'),
                                                problem='the model did not load: no such file'))
        assert gc.get_freeze_count() == 0 and 'the model did not load: no such file' in caplog.text
    finally:
        gc.unfreeze()
