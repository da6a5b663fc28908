"""The operator's routes (docs/label_studio.md, "Model versions"), mounted only when the service has an
``admin_token``; each request sends it as ``Authorization: Bearer TOKEN`` (else 401). Not in the OpenAPI.

``GET /v1/admin/versions``: the versions folder's versions (``VersionRecord``), the one serving and those served
before it. ``POST /v1/admin/versions/{name}``: serve that version (``Service.switch``: opened, warmed up, switched
atomically; the answer comes once it serves). ``POST /v1/admin/rollback``: serve the one served before.
409 while another switch is under way; 400 naming the problem (no versions folder, no such version).
"""
import asyncio
import dataclasses
import hmac
from typing import Optional

from fastapi import APIRouter, FastAPI, Request

from solov2.serving.limits import HttpError

PREFIX = '/v1/admin'


def add_admin_routes(app: FastAPI, token: str) -> None:
    """Mount the admin routes (module docstring) on ``app``, each refused 401 without ``token``."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    expected = f'Bearer {token}'.encode()

    def service_of(request: Request):
        given = request.headers.get('authorization', '').encode()
        if not hmac.compare_digest(given, expected):
            raise HttpError(401, 'this route needs the admin token: send "Authorization: Bearer TOKEN"',
                            {'WWW-Authenticate': 'Bearer'})
        service = request.app.state.service
        if service.store is None:
            raise HttpError(400, 'this service has no versions folder (versions): it serves one model')
        return service

    @router.get('/versions')
    async def versions(request: Request):
        """The versions held (their records), the one serving and those served before it."""
        service = service_of(request)
        store = service.store
        records = await asyncio.to_thread(lambda: [dataclasses.asdict(store.record(name)) for name in store.names()])
        return {**store.serving(), 'versions': records}

    @router.post('/versions/{name}')
    async def serve(name: str, request: Request):
        """Serve the version ``name`` once it is warmed up."""
        return await switched(service_of(request), name)

    @router.post('/rollback')
    async def rollback(request: Request):
        """Serve the version served before this one."""
        return await switched(service_of(request), None)
    app.include_router(router)


async def switched(service, name: Optional[str]) -> dict:
    """``{"serving": name}`` once ``service`` serves the version ``name`` (None: the one before); 409 while
    another switch is under way, 503 before the model is loaded."""
    if service.problem is not None:
        raise HttpError(503, service.problem, {'Retry-After': '1'}, 'not ready')
    if service.switching.locked():
        raise HttpError(409, 'a switch of version is under way: try again once it ends')
    return {'serving': await asyncio.to_thread(service.switch, name)}
