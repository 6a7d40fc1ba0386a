"""Management API: ``user-openapi/list|generate|spec|merge|schema|validate``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import falcon.asgi
import msgspec

from hoodyexec.engine.store import Scope, safe_path
from hoodyexec.errors import BadRequest, ControlUnavailable, HoodyError
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.ipc.protocol import Describe, Described

from . import build
from .schemas import (
    GENERATE,
    LIST,
    MERGE,
    SCHEMA,
    SPEC,
    VALIDATE,
    UserOpenAPIGenerate,
    UserOpenAPIListQuery,
    UserOpenAPIMerge,
    UserOpenAPISchemaQuery,
    UserOpenAPISpecQuery,
    UserOpenAPIValidate,
)
from .service import SIDECAR, UserOpenAPIService, has_schema, methods_of, sidecar_of

ASK_TIMEOUT = 30.0  # seconds a request worker gets to load and describe the scripts


def asker(ctx: Context) -> Callable[[Describe], Awaitable[Described]]:
    """Describe scripts in one request worker (``ctx.ask``), as a typed answer."""

    async def ask(topic: Describe) -> Described:
        if ctx.ask is None:
            raise ControlUnavailable("no request worker is linked to describe the scripts")
        try:
            reply = await asyncio.wait_for(ctx.ask(topic), ASK_TIMEOUT)
        except TimeoutError:
            raise HoodyError(
                f"describing the scripts took longer than {ASK_TIMEOUT:g} s", status=504
            ) from None
        if reply.error is not None or not isinstance(reply.answer, Described):
            raise HoodyError(reply.error or "no answer", status=reply.code or 500)
        return reply.answer

    return ask


def _under(rel: str, folder: str) -> bool:
    return not folder or rel == folder or rel.startswith(folder + "/")


def _folder(scope: Scope, value: str | None) -> str:
    """A ``directory``/``dir`` filter, normalised (403 outside the instance)."""
    if value is None or value.strip("/") in ("", "."):
        return ""
    return safe_path(scope, value.strip("/"))[1]


class UserOpenAPIAPI:
    def __init__(self, ctx: Context, service: UserOpenAPIService) -> None:
        self.ctx = ctx
        self.service = service

    async def list(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        q: UserOpenAPIListQuery,
    ) -> None:
        scope = self.ctx.scope(req, None, q)
        folder = _folder(scope, q.directory)
        described = await self.service.describe(scope)
        items = []
        for script in described.scripts:
            if not _under(script.file, folder):
                continue
            sidecar = os.path.exists(os.path.join(scope.root, sidecar_of(script.file)))
            item = {
                "path": script.file,
                "routePath": script.route,
                "routes": [build.openapi_path(t) for t in script.templates],
                "methods": methods_of(script),
                "hasSchema": has_schema(script, sidecar),
                "sidecar": sidecar_of(script.file) if sidecar else None,
                "enabled": script.enabled,
            }
            if script.error is not None:
                item["error"] = script.error
            items.append(item)
        errors.json_response(
            resp,
            {
                "success": True,
                "data": {"scripts": items, "count": len(items), "directory": folder or None},
                **scope.to_dict(),
            },
        )

    async def generate(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: UserOpenAPIGenerate,
        _: None,
    ) -> None:
        scope = self.ctx.scope(req, body)
        report = await self.service.generate(scope)
        errors.json_response(resp, {"success": True, **report, **scope.to_dict()})

    async def spec(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        q: UserOpenAPISpecQuery,
    ) -> None:
        scope = self.ctx.scope(req, None, q)
        folder = _folder(scope, q.dir)
        doc = await self.service.current(scope)
        if folder:
            paths = doc.get("paths") or {}
            doc = {
                **doc,
                "paths": {
                    p: item
                    for p, item in paths.items()
                    if isinstance(item, dict)
                    and _under(str(item.get(build.SCRIPT_KEY, "")), folder)
                },
            }
        if q.format == "yaml":
            import yaml

            resp.content_type = "application/yaml"
            resp.data = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
            return
        resp.content_type = "application/json"
        resp.data = msgspec.json.encode(doc)

    async def merge(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: UserOpenAPIMerge,
        _: None,
    ) -> None:
        scope = self.ctx.scope(req, body)
        report = await self.service.merge(scope, body.spec)
        errors.json_response(resp, {"success": True, **report, **scope.to_dict()})

    async def schema(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        q: UserOpenAPISchemaQuery,
    ) -> None:
        if not q.file:
            raise BadRequest("file is required", field="file")
        scope = self.ctx.scope(req, None, q)
        target, rel = safe_path(scope, q.file)
        if rel.endswith(SIDECAR):  # a sidecar names its script
            rel = rel[: -len(SIDECAR)] + ".py"
            target = os.path.join(scope.root, rel)
        found = await self.service.schema(scope, target, rel)
        errors.json_response(resp, {"success": True, **found, **scope.to_dict()})

    async def validate(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: UserOpenAPIValidate,
        _: None,
    ) -> None:
        scope = self.ctx.scope(req, body)
        if (body.path is None) == (body.schema is None):
            raise BadRequest("send either path (a script or sidecar) or schema (an inline sidecar)")
        if body.path is not None:
            target, rel = safe_path(scope, body.path)
            result = await self.service.validate_path(scope, target, rel)
        else:
            result = await self.service.validate_inline(scope, body.schema)
        errors.json_response(resp, {"success": True, **result, **scope.to_dict()})


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = UserOpenAPIAPI(ctx, UserOpenAPIService(asker(ctx)))
    ctx.route(LIST, api.list)
    ctx.route(GENERATE, api.generate)
    ctx.route(SPEC, api.spec)
    ctx.route(MERGE, api.merge)
    ctx.route(SCHEMA, api.schema)
    ctx.route(VALIDATE, api.validate)
