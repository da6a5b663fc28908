"""How uvicorn runs the service: ``SERVER_OPTIONS`` for ``uvicorn.Config``: its access log off (the
application logs each request), and a request uvicorn cannot parse answered in the service's error
shape, 400 ``{"error", "request_id"}`` (``JsonRefusals``).
"""
import json
import logging
import uuid

from uvicorn.protocols.http.auto import AutoHTTPProtocol

LOG = logging.getLogger(__name__)
SERVER_OPTIONS = {'http': f'{__name__}:JsonRefusals', 'access_log': False}


class JsonRefusals(AutoHTTPProtocol):
    """uvicorn's HTTP protocol, its 400 to a malformed request in the service's JSON shape."""

    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        LOG.info('%s - - 400 a malformed request: %s', request_id, msg)
        body = json.dumps({'error': 'a malformed HTTP request: send HTTP/1.1 with a valid request line and headers',
                           'request_id': request_id}).encode()
        head = [b'HTTP/1.1 400 Bad Request'] + [name + b': ' + value for name, value in
                                                 self.server_state.default_headers]
        head += [b'content-type: application/json', b'content-length: %d' % len(body),
                 b'x-request-id: ' + request_id.encode(), b'connection: close']
        self.transport.write(b'\r\n'.join(head) + b'\r\n\r\n' + body)
        self.transport.close()
