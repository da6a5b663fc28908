"""Label Studio's API as the ML backend routes (serving/label_studio.py) use it: a task's picture fetched from the
Label Studio the operator named (``label_studio_url``), with the token the operator gave (``label_studio_token``),
following no redirect.

Label Studio 1.23 gives two kinds of token (its docs' "Access tokens"; ``label_studio_sdk``'s ``TokensClientExt``
tells them apart the same way): a personal access token, a JWT whose ``token_type`` claim is 'refresh', is sent
to ``POST /api/token/refresh/`` as ``{"refresh": ...}`` for a short-lived access token, which requests carry as
``Authorization: Bearer <access>`` (renewed before its ``exp`` claim, and once on a 401); a legacy token (40 hex
digits) is sent as ``Authorization: Token <token>``; an access token given as is (it lasts minutes) as ``Bearer``.
The token's last refusal is ``problem``: logged once at start (``check``) and shown by ``/label-studio/health``.
"""
import base64
import binascii
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from solov2.serving.limits import HttpError

REFRESH = '/api/token/refresh/'          # Label Studio's exchange of a personal access token for an access token
WHO_AM_I = '/api/current-user/whoami'    # what a legacy token is checked against at start
RENEW_S = 30.0                           # an access token is renewed this long before it expires
DETAIL_BYTES = 4096                      # most of a refusal's body read for its reason


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: the token goes to the Label Studio the operator named, nowhere else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def jwt_claims(token: str) -> Optional[dict]:
    """The claims of a JWT (its middle part, base64url JSON; not verified: Label Studio verifies it), None when
    ``token`` is not one."""
    parts = token.split('.')
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + '=' * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def refusal_detail(error: urllib.error.HTTPError) -> str:
    """Label Studio's reason in a refusal's body (its ``detail``), else the HTTP reason."""
    try:
        body = json.loads(error.read(DETAIL_BYTES) or b'null')
    except (ValueError, OSError):
        body = None
    detail = body.get('detail') if isinstance(body, dict) else None
    return str(detail or error.reason)


class LabelStudioClient:
    """The Label Studio at ``url`` (None: none named) as the routes reach it with ``token`` (None: none given);
    each call waits at most ``timeout_s``. Safe from many threads: the access token is renewed under a lock."""

    def __init__(self, url: Optional[str], token: Optional[str], timeout_s: float):
        self.url = url.rstrip('/') if url else None
        self.token, self.timeout_s = token, timeout_s
        token_type = (jwt_claims(token or '') or {}).get('token_type')
        self.personal = token_type == 'refresh'
        self.short = token_type == 'access'      # an access token given as is: Bearer, until it expires
        self.lock = threading.Lock()
        self.access: Optional[str] = None
        self.expires = 0.0                       # the access token's ``exp`` (seconds since the epoch)
        self.problem: Optional[str] = None       # the token's last refusal, None once Label Studio takes it

    @property
    def kind(self) -> str:
        """The token's kind, as a log line names it."""
        return 'personal access token' if self.personal else 'access token' if self.short else \
            'legacy token' if self.token else 'no token'

    def check(self) -> Optional[str]:
        """At start: the token tried once (a personal one exchanged, a legacy one shown to ``WHO_AM_I``); the
        reason Label Studio refuses it or cannot be reached, None when it takes it or nothing was given."""
        if not (self.url and self.token):
            return None
        try:
            if self.personal:
                self.authorization(renew=True)
            else:
                self.fetch(self.url + WHO_AM_I, DETAIL_BYTES)
        except HttpError as exc:
            return exc.message
        return None

    def authorization(self, renew: bool = False) -> dict[str, str]:
        """The ``Authorization`` header for a request: ``Token`` for a legacy token, ``Bearer`` and an access
        token for a personal one (exchanged when it has none, it is about to expire, or ``renew``); 502 when
        Label Studio refuses the exchange."""
        if not self.token:
            return {}
        if not self.personal:
            return {'Authorization': f"{'Bearer' if self.short else 'Token'} {self.token}"}
        with self.lock:
            if renew or self.access is None or time.time() > self.expires - RENEW_S:
                self.access, self.expires = self.exchange()
            return {'Authorization': f'Bearer {self.access}'}

    def exchange(self) -> tuple[str, float]:
        """(an access token, its expiry) for the personal access token, from ``REFRESH``; 502 naming Label
        Studio's reason when it refuses or cannot be reached."""
        request = urllib.request.Request(f'{self.url}{REFRESH}', json.dumps({'refresh': self.token}).encode(),
                                         {'Content-Type': 'application/json'}, method='POST')
        try:
            with urllib.request.build_opener(NoRedirect).open(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read(DETAIL_BYTES))
        except urllib.error.HTTPError as exc:
            raise self.refused(f'refused the personal access token at {REFRESH} ({exc.code}: '
                               f'{refusal_detail(exc)}): make a new one in its Account & Settings') from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HttpError(502, f'Label Studio at {self.url} could not be reached to exchange the personal access '
                                 f'token: {exc}') from None
        access = answer.get('access') if isinstance(answer, dict) else None
        if not isinstance(access, str):
            raise self.refused(f'answered {REFRESH} without an access token')
        self.problem = None
        return access, float((jwt_claims(access) or {}).get('exp', time.time() + 60))

    def refused(self, why: str) -> HttpError:
        """Label Studio's refusal of the token as the 502 a task's failure carries, kept as ``problem``."""
        self.problem = f'Label Studio at {self.url} {why}'
        return HttpError(502, self.problem)

    def fetch(self, address: str, max_bytes: int) -> bytes:
        """The body at ``address`` on Label Studio, at most ``max_bytes`` + 1 of it, with the token (a personal
        one's access token renewed once on a 401); 502 when Label Studio cannot be reached or refuses."""
        try:
            return self.read(address, max_bytes, renew=False)
        except urllib.error.HTTPError as exc:
            if exc.code != 401 or not self.personal:
                raise self.answered(exc, address) from None
        try:
            return self.read(address, max_bytes, renew=True)
        except urllib.error.HTTPError as exc:
            raise self.answered(exc, address) from None

    def read(self, address: str, max_bytes: int, renew: bool) -> bytes:
        """One try of ``fetch``: urllib's HTTPError for a refusal, 502 when Label Studio cannot be reached."""
        request = urllib.request.Request(address, headers=self.authorization(renew))
        try:
            with urllib.request.build_opener(NoRedirect).open(request, timeout=self.timeout_s) as response:
                data = response.read(max_bytes + 1)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            raise HttpError(502, f'{address} could not be fetched: {exc}') from None
        if self.token:
            self.problem = None
        return data

    def answered(self, error: urllib.error.HTTPError, address: str) -> HttpError:
        """The 502 of Label Studio's refusal to give ``address``; a 401 or 403 is the token's (``problem``)."""
        if error.code not in (401, 403):
            return HttpError(502, f'Label Studio answered {error.code} for {address}')
        if not self.token:
            return HttpError(502, f'Label Studio answered {error.code} for {address}: give the service a Label '
                                  'Studio token (LABEL_STUDIO_API_KEY, docs/label_studio.md)')
        detail = refusal_detail(error)
        hint = ': give a personal access token instead' if 'legacy' in detail.lower() or self.short else ''
        return self.refused(f'refused the {self.kind} (LABEL_STUDIO_API_KEY) for {address} ({error.code}: '
                            f'{detail}){hint}')

    def address(self, where: str) -> str:
        """The full URL of a task's picture on this Label Studio; 400 for one elsewhere or without ``url``."""
        if not self.url:
            raise HttpError(400, f'its picture {where} is on Label Studio, and this service was not given its '
                                 'address (label_studio_url)')
        address = urllib.parse.urljoin(self.url + '/', where)
        if not address.startswith(self.url + '/'):
            raise HttpError(400, f'its picture {where} is not on the Label Studio this service fetches from '
                                 f'({self.url})')
        return address

    def state(self) -> dict[str, Any]:
        """What ``/label-studio/health`` says of Label Studio: its address, the token's kind and last refusal."""
        return {'url': self.url, 'token': self.kind, **({'problem': self.problem} if self.problem else {})}
