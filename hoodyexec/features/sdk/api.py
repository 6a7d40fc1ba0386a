"""Management API: SDK import from an OpenAPI 3 document, list, get, delete."""

from __future__ import annotations

import falcon
import falcon.asgi

from hoodyexec.errors import BadRequest
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.spec import Scoped

from .schemas import DELETE, GET, IMPORT, LIST, SdkImport
from .service import SdkService


class SdkAPI:
    def __init__(self, ctx: Context) -> None:
        assert ctx.home is not None and ctx.store is not None
        self.ctx = ctx
        self.service = SdkService(ctx.home, ctx.store)

    async def import_(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: SdkImport, query: Scoped
    ) -> None:
        if body.base_url is not None and not body.base_url.startswith(("http://", "https://")):
            raise BadRequest("base_url must be an http(s) URL", field="base_url")
        scope = self.ctx.scope(req, body, query)
        answer, created = await self.service.import_(scope, body)
        await self.ctx.invalidated(scope)
        errors.ok(resp, answer, status=201 if created else 200)

    async def list(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: Scoped
    ) -> None:
        errors.ok(resp, self.service.list(self.ctx.scope(req, None, query)))

    async def get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: Scoped, id: str
    ) -> None:
        errors.ok(resp, self.service.get(self.ctx.scope(req, None, query), id))

    async def delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: Scoped, id: str
    ) -> None:
        scope = self.ctx.scope(req, None, query)
        answer = await self.service.delete(scope, id)
        await self.ctx.invalidated(scope)
        errors.ok(resp, answer)


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None or ctx.store is None:
        return
    api = SdkAPI(ctx)
    ctx.route(IMPORT, api.import_)
    ctx.route(LIST, api.list)
    ctx.route(GET, api.get)
    ctx.route(DELETE, api.delete)
