"""The service leans on uvicorn's private parts (serving/wire.py: the ``AutoHTTPProtocol`` subclass,
its ``cycle.more_body``, ``send_400_response``, ``server_state``, ``loop``; tools/serve.py: ``Server``'s
``capture_signals``, ``_captured_signals``, ``handle_exit``, ``supervisors.Multiprocess``): so
requirements-serve.txt pins uvicorn to the releases tested, below an upper bound, and the installed
uvicorn is in that range (CI's fresh venv gets the newest release of it). Each private part is used
here as the service uses it, without a server: a new uvicorn that drops or renames one fails here
by name."""
import asyncio
import contextlib
import inspect
import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

uvicorn = pytest.importorskip('uvicorn', reason='the service needs requirements-serve.txt')

from uvicorn.server import ServerState  # noqa: E402

from solov2.serving.wire import JsonRefusals, Lingering  # noqa: E402

REQUIREMENTS = Path(__file__).resolve().parents[2] / 'requirements-serve.txt'


def uvicorn_range() -> SpecifierSet:
    """The uvicorn requirement's specifiers in requirements-serve.txt."""
    line, = (line for line in REQUIREMENTS.read_text().splitlines() if re.match(r'uvicorn\b', line))
    return SpecifierSet(re.sub(r'^uvicorn(\[\w+\])?', '', line.split('#')[0]).strip())


def test_uvicorn_is_pinned_below_an_upper_bound_and_the_installed_one_is_in_range():
    pinned = uvicorn_range()
    assert any(spec.operator in ('<', '<=', '==', '~=') for spec in pinned), \
        f'uvicorn{pinned} has no upper bound: the service uses its private parts'
    assert version('uvicorn') in pinned, f'uvicorn {version("uvicorn")} is outside the tested range {pinned}'


class Transport:
    """The asyncio transport a protocol writes to, recording what it is asked."""

    def __init__(self):
        self.written, self.closed, self.eof = [], False, False

    def get_extra_info(self, name, default=None):
        return ('127.0.0.1', 1234) if name in ('peername', 'sockname') else default

    def write(self, data):
        self.written.append(data)

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def write_eof(self):
        self.eof = True

    def resume_reading(self):
        pass

    def pause_reading(self):
        pass


async def refuse(scope, receive, send):
    await send({'type': 'http.response.start', 'status': 503, 'headers': [(b'content-length', b'2')]})
    await send({'type': 'http.response.body', 'body': b'no'})


def protocol() -> tuple:
    """(JsonRefusals, its Transport): a connection made, as uvicorn makes one."""
    config = uvicorn.Config(refuse, lifespan='off', log_level='warning', http='solov2.serving.wire:JsonRefusals')
    config.load()
    made = JsonRefusals(config, ServerState(), app_state={})
    transport = Transport()
    made.connection_made(transport)
    return made, transport


def test_the_protocols_private_parts_do_what_the_service_relies_on():
    """``cycle.more_body`` tells a body still coming (so ``Lingering`` shuts its side and drops the
    rest on the protocol's ``loop``); ``send_400_response`` is what a malformed request calls, with
    ``server_state.default_headers`` in the answer."""
    async def run():
        made, transport = protocol()
        assert isinstance(made.transport, Lingering)
        made.data_received(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc')
        await asyncio.sleep(0.05)
        assert made.cycle.more_body is True
        made.transport.close()
        assert transport.eof and not transport.closed and made.transport.dropped == 0
        made.data_received(b'x' * 10)
        assert made.transport.dropped == 10
        made.transport.transport.close()
        await asyncio.sleep(0)

        bad, transport = protocol()
        bad.server_state.default_headers = [(b'server', b'solov2-test')]
        bad.data_received(b'NOT HTTP AT ALL\r\n\r\n')
        await asyncio.sleep(0.05)
        answer = b''.join(transport.written)
        assert answer.startswith(b'HTTP/1.1 400') and b'server: solov2-test' in answer and transport.closed
        assert 'malformed' in json.loads(answer.split(b'\r\n\r\n', 1)[1])['error']
    asyncio.run(run())


def test_the_servers_private_parts_tools_serve_overrides_are_there():
    """tools/serve.py's ``Server`` clears ``_captured_signals`` after ``capture_signals`` and overrides
    ``handle_exit(sig, frame)``; --workers runs ``supervisors.Multiprocess(config, sockets=...)``."""
    from uvicorn.supervisors import Multiprocess
    server = uvicorn.Server(uvicorn.Config(refuse, lifespan='off'))
    with server.capture_signals():
        assert isinstance(server._captured_signals, list)
    assert list(inspect.signature(server.handle_exit).parameters) == ['sig', 'frame']
    assert {'config', 'sockets'} <= set(inspect.signature(Multiprocess).parameters)
    assert isinstance(server.capture_signals(), contextlib.AbstractContextManager)


def test_the_supervisors_private_parts_the_draining_workers_use_are_there():
    """--workers' ``DrainingProcess`` (serving/wire.py) is a ``supervisors.multiprocess.Process(config, sockets)``
    whose ``server`` property builds its server once into ``_server``; on the releases whose ``Multiprocess``
    takes no ``target``, tools/serve.py's supervisor appends them to ``processes`` up to ``processes_num``."""
    import socket

    from uvicorn.supervisors import Multiprocess
    from uvicorn.supervisors.multiprocess import Process

    from solov2.serving.wire import DrainingProcess, DrainingServer
    assert list(inspect.signature(Process).parameters)[:2] == ['config', 'sockets']
    targeted = 'target' in inspect.signature(Multiprocess).parameters
    assert isinstance(Process.__dict__.get('server'), property) or targeted
    config = uvicorn.Config(refuse, lifespan='off', workers=2)
    with socket.socket() as sock:
        worker = DrainingProcess(config, [sock], lambda: None)
        assert isinstance(worker.server, DrainingServer) and worker.server is worker._server
        supervisor = Multiprocess(config, sockets=[sock], **({'target': worker.server.run} if targeted else {}))
        assert supervisor.processes == [] and supervisor.processes_num == 2
