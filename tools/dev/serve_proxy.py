"""The service behind deploy/nginx/solov2.conf, installed as docs/serving.md says in a copy of the
distribution's own nginx layout (``nginx_stock``: its nginx.conf, its default site), under attacks, on loopback:

    python tools/dev/serve_proxy.py --seconds 8
    python tools/dev/serve_proxy.py --recipe old.conf --install 'cp deploy/nginx/solov2.conf /etc/nginx/conf.d/'

Starts one ``tools/serve.py`` (the shipped model, ``--backend``) per port the recipe's upstream names, each
with its share of the cores, and nginx; then for each of ``ATTACKS`` a good client on 127.0.0.1 posts a
640x480 JPEG every 0.25 s for ``--seconds`` while the attackers run from other loopback addresses (127.0.0.2
and up; 127.0.1.1 and up for many addresses) or its own. Prints a markdown table: the good client's
statuses, its slowest 200, whether every other answer was JSON saying why (with Retry-After on 429 and 503),
the attackers' statuses, the services' peak resident memory, nginx's, and the ``[error]`` lines nginx logged.
``--install`` replaces the docs' install lines (``;``-separated), e.g. the old recipe dropped into conf.d beside
the default site.
"""
import argparse
import collections
import contextlib
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import cv2  # noqa: E402
import httpx  # noqa: E402

from solov2.core.paths import SAMPLE_IMAGES  # noqa: E402
from solov2.model.runtime import cpu_threads  # noqa: E402
from solov2.tools.dev import nginx_stock, report  # noqa: E402

SERVE = Path(__file__).resolve().parents[1] / 'serve.py'
GOOD = '127.0.0.1'
NGINX = nginx_stock.NGINX
TWO_GB = 2 * 2**30


def picture(width: int = 640, height: int = 480) -> bytes:
    """A JPEG of a sample picture at ``width`` x ``height`` (nearest neighbour: 9990x9990 is 1.5 MB)."""
    image = cv2.resize(cv2.imread(os.path.join(SAMPLE_IMAGES, 'shapes_000042.jpg')), (width, height),
                       interpolation=cv2.INTER_NEAREST)
    return cv2.imencode('.jpg', image)[1].tobytes()


def status_of(connection: socket.socket) -> int:
    """The status of the answer on ``connection`` (0: closed or reset before one came)."""
    head = b''
    with contextlib.suppress(OSError):
        while b'\r\n' not in head and len(head) < 4096:
            chunk = connection.recv(4096)
            if not chunk:
                break
            head += chunk
    parts = head.split(b' ', 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def raw_post(source: str, port: int, pieces: Iterable[bytes], length: int, pause: float,
             stop: threading.Event, headers: bytes = b'') -> int:
    """POST a body of ``length`` bytes from ``source`` (with ``headers``, CRLF-ended lines), sent as ``pieces``
    ``pause`` s apart; its answer's status (-1: stopped meanwhile)."""
    with socket.socket() as connection:
        connection.bind((source, 0))
        connection.settimeout(30)
        try:
            connection.connect(('127.0.0.1', port))
            connection.sendall(b'POST /v1/segment HTTP/1.1\r\nHost: solov2\r\nContent-Type: image/jpeg\r\n'
                               b'Content-Length: %d\r\nConnection: close\r\n%s\r\n' % (length, headers))
            for piece in pieces:
                if stop.is_set():
                    return -1
                connection.sendall(piece)
                stop.wait(pause)
        except OSError:
            pass
        return status_of(connection)


def trickled(body: bytes, port: int) -> Callable[[str, threading.Event], int]:
    """``in_threads``' work: ``body`` sent in 20 pieces 0.2 s apart (4 s), then its answer read."""
    step = -(-len(body) // 20)
    return lambda source, stop: raw_post(source, port, (body[i:i + step] for i in range(0, len(body), step)),
                                         len(body), 0.2, stop)


def slow_body(port: int) -> Callable[[str, threading.Event], int]:
    """``in_threads``' work: a 4 kB body sent a byte at a time, each 1 to 8 s after the last (under nginx's 10 s
    ``client_body_timeout``: never finished in a run), then its answer read."""
    pauses = random.Random(86)
    return lambda source, stop: raw_post(source, port, (b'x' for _ in range(4096)), 4096, pauses.uniform(1, 8), stop)


def spoofed(body: bytes, port: int, statuses: collections.Counter) -> Callable[[str, threading.Event], int]:
    """``in_threads``' work: ``trickled`` with an ``X-Forwarded-For`` claiming another address each time; and once
    per call a GET of /metrics claiming 127.0.0.1, its status counted as '/metrics NNN'."""
    claims = iter(range(10**9))

    def post(source: str, stop: threading.Event) -> int:
        claim = next(claims)
        with contextlib.suppress(httpx.TransportError):
            with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
                said = client.get(f'http://127.0.0.1:{port}/metrics', headers={'X-Forwarded-For': '127.0.0.1'})
                statuses[f'/metrics {said.status_code}'] += 1
        step = -(-len(body) // 20)
        return raw_post(source, port, (body[i:i + step] for i in range(0, len(body), step)), len(body), 0.2, stop,
                        b'X-Forwarded-For: 198.51.%d.%d\r\n' % (claim // 250 % 250, claim % 250 + 1))
    return post


def huge(port: int, held: List[tuple]) -> Callable[[str, threading.Event], int]:
    """``in_threads``' work: a body said to be 2 GB, sent at up to 128 MB/s (a 1 Gbit/s link) until the other
    end closes; (seconds, MB sent) of each connection added to ``held``."""
    zeros = bytes(2**20)

    def post(source: str, stop: threading.Event) -> int:
        began, sent = time.monotonic(), [0]

        def pieces():
            for _ in range(TWO_GB // len(zeros)):
                sent[0] += 1
                yield zeros
        status = raw_post(source, port, pieces(), TWO_GB, 1 / 128, stop)
        held.append((time.monotonic() - began, sent[0]))
        return status
    return post


def in_threads(count: int, sources: List[str], work: Callable[[str, threading.Event], int],
               stop: threading.Event, statuses: collections.Counter) -> List[threading.Thread]:
    """``count`` threads, spread over ``sources``, each running ``work(source, stop)`` again until ``stop``
    and counting the statuses it returns (-1: stopped meanwhile, not counted)."""
    def loop(source: str) -> None:
        while not stop.is_set():
            status = work(source, stop)
            if status >= 0:
                statuses[status] += 1
    threads = [threading.Thread(target=loop, args=(sources[i % len(sources)],), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def slowloris(count: int, source: str, port: int, stop: threading.Event, statuses: collections.Counter) -> None:
    """Until ``stop``: ``count`` connections from ``source`` sending a header line every 2 s, each reconnecting
    when closed (its status counted, 0 for a close without one)."""
    selector, due = selectors.DefaultSelector(), {}

    def connect() -> None:
        connection = socket.socket()
        connection.setblocking(False)
        connection.bind((source, 0))
        with contextlib.suppress(BlockingIOError):
            connection.connect(('127.0.0.1', port))
        due[connection] = 0.0
        selector.register(connection, selectors.EVENT_READ)

    for _ in range(count):
        connect()
    while not stop.is_set():
        for key, _ in selector.select(0.05):
            connection = key.fileobj
            with contextlib.suppress(OSError):
                data = connection.recv(4096)
                statuses[int(data.split(b' ')[1]) if data.startswith(b'HTTP/') else 0] += 1
            selector.unregister(connection)
            due.pop(connection)
            connection.close()
            connect()
        now = time.monotonic()
        for connection, when in list(due.items()):
            if now >= when:
                with contextlib.suppress(OSError):
                    connection.send(b'POST /v1/segment HTTP/1.1\r\n' if when == 0.0 else b'X-Slow: 1\r\n')
                due[connection] = now + 2.0
    for connection in due:
        connection.close()


def posting(body: bytes, port: int, pause: float = 0.0) -> Callable[[str, threading.Event], int]:
    """``in_threads``' work: one whole POST of ``body`` through httpx, ``pause`` s after its answer."""
    def post(source: str, stop: threading.Event) -> int:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60) as client:
                status = client.post(f'http://127.0.0.1:{port}/v1/segment', content=body,
                                     headers={'Content-Type': 'image/jpeg'}).status_code
        except httpx.TransportError:
            status = 0
        time.sleep(pause)
        return status
    return post


def attack(name: str, port: int, stop: threading.Event, statuses: collections.Counter, scale: float,
           big: bytes, small: bytes, held: List[tuple]) -> List[threading.Thread]:
    """Start attack ``name`` of ``ATTACKS`` on ``port`` (``scale``: its share of the clients) until ``stop``
    (the restart and the freeze: ``run_attack``'s)."""
    many = max(2, round(32 * scale))
    if name == 'tricklers, one address':
        return in_threads(many, ['127.0.0.2'], trickled(small, port), stop, statuses)
    if name == 'tricklers, two addresses':
        return in_threads(many, ['127.0.0.2', '127.0.0.3'], trickled(small, port), stop, statuses)
    if name == 'slowloris, reconnecting':
        thread = threading.Thread(target=slowloris, args=(max(2, round(1000 * scale)), '127.0.0.4', port, stop,
                                                          statuses), daemon=True)
        thread.start()
        return [thread]
    if name == 'near-limit pictures re-posted':
        return in_threads(max(2, round(16 * scale)), ['127.0.0.5'], posting(big, port), stop, statuses)
    if name == "a flood from the good client's address":
        return in_threads(max(2, round(8 * scale)), [GOOD], posting(small, port), stop, statuses)
    if name.startswith('slow bodies, '):
        addresses = int(name.split()[2])
        return in_threads(many, [f'127.0.1.{i}' for i in range(1, addresses + 1)], slow_body(port), stop, statuses)
    if name == 'a 2 GB Content-Length':
        return in_threads(2, ['127.0.0.6'], huge(port, held), stop, statuses)
    if name == 'a spoofed X-Forwarded-For':
        return in_threads(max(2, round(12 * scale)), [SPOOFER], spoofed(small, port, statuses), stop, statuses)
    raise ValueError(f'no attack named {name!r}: {", ".join(ATTACKS)}')


ATTACKS = ('tricklers, one address', 'tricklers, two addresses', 'slow bodies, 8 addresses',
           'slow bodies, 32 addresses', 'slowloris, reconnecting',
           'near-limit pictures re-posted', "a flood from the good client's address", 'a 2 GB Content-Length',
           'a restart of one service', 'a service frozen 20 s', 'a spoofed X-Forwarded-For')
SPOOFER = '127.0.0.7'        # an address that is not the trusted balancer's (``Deployment``'s ``balancer``)


def good_client(port: int, body: bytes, seconds: float) -> List[tuple]:
    """(status, seconds, answer) of ``body`` posted from ``GOOD`` every 0.25 s for ``seconds`` (status 0:
    the connection failed)."""
    done = []
    with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=60,
                      transport=httpx.HTTPTransport(local_address=GOOD)) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                answer = client.post('/v1/segment', content=body, headers={'Content-Type': 'image/jpeg'})
                done.append((answer.status_code, time.monotonic() - began, answer))
            except httpx.TransportError:
                done.append((0, time.monotonic() - began, None))
            time.sleep(0.25)
    return done


def explained(answer: Optional[httpx.Response]) -> bool:
    """An answer the good client can act on: 200, or JSON ``{"error", "request_id"}`` saying why, with
    Retry-After on 429 and 503."""
    if answer is None:
        return False
    if answer.status_code == 200:
        return True
    try:
        said = answer.json()
    except ValueError:
        return False
    retry = answer.status_code not in (429, 503) or answer.headers.get('retry-after', '').isdigit()
    return isinstance(said, dict) and bool(said.get('error')) and bool(said.get('request_id')) and retry


def memory_mb(pid: int, field: str = 'VmRSS') -> float:
    """A process's ``field`` of /proc/PID/status in MB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return 0.0


def process_tree(pid: int) -> List[int]:
    """``pid`` and its children (nginx's master and workers)."""
    children = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(')', 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return [pid, *children]


def start_service(port: int, backend: str, threads: int, log: Path, notify: str = '') -> subprocess.Popen:
    """``tools/serve.py`` at its defaults but ``--port``, ``--backend`` and ``--threads``, once ready (its
    log in ``log``; ``notify``: systemd's ``NOTIFY_SOCKET`` for it)."""
    environment = {**os.environ, **({'NOTIFY_SOCKET': notify, 'WATCHDOG_USEC': '10000000'} if notify else {})}
    process = subprocess.Popen([sys.executable, str(SERVE), '--port', str(port), '--backend', backend,
                                '--threads', str(threads)], stdout=subprocess.DEVNULL, stderr=log.open('ab'),
                               env=environment)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=5).status_code == 200:
                return process
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise RuntimeError(f'the service on port {port} did not start (exit {process.returncode}): '
                       + ' | '.join(log.read_text(errors='replace').strip().splitlines()[-3:]))


def stop_service(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Watchdog:
    """systemd's watchdog as deploy/systemd/solov2@.service sets it (``WatchdogSec``), for the services of a
    ``Deployment``: each service's ``NOTIFY_SOCKET`` read, and one that sent no WATCHDOG=1 for ``seconds``
    killed (SIGABRT, as systemd) and started again (``Restart=on-failure``). A stand-in: no systemd runs here."""

    def __init__(self, deployment: 'Deployment', seconds: float):
        self.deployment, self.seconds, self.closed = deployment, seconds, threading.Event()
        self.sockets, self.last, self.kills = {}, {}, 0

    def address(self, i: int) -> str:
        if i not in self.sockets:
            self.sockets[i] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sockets[i].bind(str(self.deployment.folder / f'notify{i}'))
            self.sockets[i].setblocking(False)
        self.last[i] = time.monotonic() + 300          # its start: READY=1 comes first
        return str(self.deployment.folder / f'notify{i}')

    def start(self) -> None:
        threading.Thread(target=self.run, name='watchdog', daemon=True).start()

    def run(self) -> None:
        while not self.closed.wait(0.2):
            for i, receiver in list(self.sockets.items()):
                with contextlib.suppress(BlockingIOError):
                    while receiver.recv(256):
                        self.last[i] = time.monotonic()
                if time.monotonic() - self.last[i] > self.seconds:
                    self.kills += 1
                    self.deployment.services[i].send_signal(signal.SIGABRT)
                    self.deployment.services[i].send_signal(signal.SIGCONT)      # as systemd: a stopped one too
                    self.deployment.services[i].wait()
                    self.deployment.services[i] = self.deployment.start(i)

    def close(self) -> None:
        self.closed.set()
        for receiver in self.sockets.values():
            receiver.close()


class Deployment:
    """The services a recipe's upstream names and nginx with the recipe installed (``nginx_stock``) in
    ``folder``, trusting ``balancer``'s ``X-Forwarded-For`` when given (an address or a range), their hangs
    ended by a ``Watchdog`` of ``watchdog_s`` when above 0; ``restart(i)`` stops service ``i`` and starts it
    again, ``freeze(i)`` stops it (SIGSTOP) for 20 s."""

    def __init__(self, folder: Path, recipe: Path, lines: List[str], backend: str, balancer: str = '',
                 watchdog_s: float = 0.0):
        self.folder, self.backend = folder, backend
        self.watchdog = Watchdog(self, watchdog_s) if watchdog_s > 0 else None
        named = nginx_stock.upstream_ports(recipe.read_text())
        self.ports = {port: free_port() for port in named}
        self.threads = cpu_threads(0, len(named))
        self.services = [self.start(i) for i in range(len(named))]
        if self.watchdog is not None:
            self.watchdog.start()
        self.port = free_port()
        self.etc = nginx_stock.install(folder, lines, recipe)
        nginx_stock.localize(folder, self.etc, self.port, self.ports)
        if balancer:
            nginx_stock.trust_balancer(self.etc, balancer)
        passed, said = nginx_stock.check(folder, self.etc)
        if not passed:
            self.close()
            raise RuntimeError(f'nginx -t failed: {said.strip()}')
        self.nginx = nginx_stock.start(folder, self.etc, self.port)

    def start(self, i: int) -> subprocess.Popen:
        return start_service(list(self.ports.values())[i], self.backend, self.threads, self.folder / f'service{i}.log',
                             self.watchdog.address(i) if self.watchdog else '')

    def freeze(self, i: int, after: float, seconds: float = 20.0) -> None:
        """Service ``i`` stopped (SIGSTOP) ``after`` s from now for ``seconds`` (or until a watchdog ends it)."""
        time.sleep(after)
        frozen = self.services[i]
        frozen.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and frozen.poll() is None:
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            frozen.send_signal(signal.SIGCONT)
        if self.watchdog is not None:           # a restart under way: wait for it, as for ``restart``
            while self.services[i] is frozen and frozen.poll() is not None:
                time.sleep(0.1)

    def restart(self, i: int, after: float) -> None:
        time.sleep(after)
        stop_service(self.services[i])
        self.services[i] = self.start(i)

    def error_lines(self) -> int:
        log = self.folder / 'log' / 'error.log'
        return sum('[error]' in line for line in log.read_text(errors='replace').splitlines()) if log.exists() else 0

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        if getattr(self, 'nginx', None) is not None:
            nginx_stock.stop(self.nginx)
        for service in self.services:
            stop_service(service)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def run_attack(deployment: Deployment, name: str, seconds: float, scale: float, big: bytes, small: bytes) -> dict:
    """One attack's row: the good client's answers while it runs (set up for a second first), the attackers'
    statuses, the services' peak and nginx's resident memory, nginx's new ``[error]`` lines."""
    for service in deployment.services:
        with contextlib.suppress(OSError):
            Path(f'/proc/{service.pid}/clear_refs').write_text('5')      # the peak becomes the current use
    stop, statuses, errors, held = threading.Event(), collections.Counter(), deployment.error_lines(), []
    if name in ('a restart of one service', 'a service frozen 20 s'):
        work = deployment.restart if name == 'a restart of one service' else deployment.freeze
        threads = [threading.Thread(target=work, args=(0, 1.0), daemon=True)]
        threads[0].start()
    else:
        threads = attack(name, deployment.port, stop, statuses, scale, big, small, held)
    try:
        time.sleep(1.0)
        answers = good_client(deployment.port, small, seconds)
    finally:
        nginx_mb = sum(memory_mb(pid) for pid in process_tree(deployment.nginx.pid))
        stop.set()
        for thread in threads:
            thread.join(120)
    return {'attack': name, 'good': collections.Counter(status for status, _, _ in answers),
            'worst_200_s': max((s for status, s, _ in answers if status == 200), default=None),
            'answers': answers, 'explained': all(explained(answer) for _, _, answer in answers),
            'attackers': statuses, 'service_mb': max(memory_mb(s.pid, 'VmHWM') for s in deployment.services),
            'nginx_mb': nginx_mb, 'error_lines': deployment.error_lines() - errors, 'held': max(held, default=None)}


def table(rows: List[dict]) -> str:
    """The rows as a markdown table."""
    def statuses(counts: collections.Counter) -> str:
        return ', '.join(f'{n} x {status or "closed"}' for status, n in sorted(counts.items(), key=str)) or '-'
    lines = ['| attack | good client | slowest 200 (s) | every other answer JSON, why and Retry-After | attackers | '
             "services' peak RSS (MB) | nginx RSS (MB) | nginx [error] lines |", '|' + ' --- |' * 8]
    for row in rows:
        worst = '-' if row['worst_200_s'] is None else f'{row["worst_200_s"]:.2f}'
        longest = (f', the longest connection {row["held"][0]:.1f} s, {row["held"][1]} MB sent' if row['held'] else
                   '')
        lines.append(f'| {row["attack"]} | {statuses(row["good"])} | {worst} | {"yes" if row["explained"] else "no"} | '
                     f'{statuses(row["attackers"])}{longest} | {row["service_mb"]:.0f} | {row["nginx_mb"]:.0f} | '
                     f'{row["error_lines"]} |')
    return '\n'.join(lines)


def run(args) -> str:
    recipe = Path(args.recipe)
    lines = [line.strip() for line in args.install.split(';')] if args.install else nginx_stock.install_lines()
    small, big = picture(), picture(9990, 9990) if 'near-limit pictures re-posted' in args.attacks else b''
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        deployment = Deployment(Path(folder), recipe, lines, args.backend, args.balancer, args.watchdog_s)
        try:
            rows = [run_attack(deployment, name, args.seconds, args.scale, big, small) for name in args.attacks]
        finally:
            deployment.close()
    head = (f'{report.machine_line(deployment.threads)}; load average {load:.1f} at the start; backend '
            f'{args.backend}; {len(deployment.services)} service(s); {args.seconds:g} s each; recipe {recipe.name}')
    return '\n'.join([head, '', table(rows)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=8.0, help="the good client's seconds under each attack")
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--recipe', default=str(nginx_stock.RECIPE), help='the nginx file (default the shipped one)')
    parser.add_argument('--install', default='', help="install lines, ';'-separated (default docs/serving.md's)")
    parser.add_argument('--attacks', type=lambda text: [name.strip() for name in text.split('|')],
                        default=list(ATTACKS), help=f"'|'-separated, of: {' | '.join(ATTACKS)}")
    parser.add_argument('--scale', type=float, default=1.0, help="the share of each attack's clients")
    parser.add_argument('--balancer', default='127.0.0.9',
                        help='the address (or a range) the site trusts as a load balancer (its real_ip lines)')
    parser.add_argument('--watchdog-s', type=float, default=10.0,
                        help="systemd's WatchdogSec, played here for each service (0: none)")
    args = parser.parse_args(argv)
    for name in args.attacks:
        if name not in ATTACKS:
            parser.error(f'no attack named {name!r}')
    print(run(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
