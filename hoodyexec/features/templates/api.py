"""Management API: templates (list, preview, generate, custom CRUD).

Custom templates live in the instance's private ``_hoody/templates/`` folder.
"""

from __future__ import annotations

import os
from typing import Any

import falcon
import falcon.asgi
import msgspec

from hoodyexec.errors import NotFound
from hoodyexec.features.templates.service import TemplateStore, parse_variables
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.spec import Scoped

from .schemas import (
    CREATE,
    DELETE,
    GENERATE,
    LIST,
    META_FIELDS,
    PREVIEW,
    UPDATE,
    TemplateCreateBody,
    TemplateGenerateBody,
    TemplateListQuery,
    TemplatePreviewQuery,
    TemplateUpdateBody,
)


class TemplatesAPI:
    def __init__(self, ctx: Context) -> None:
        assert ctx.store is not None
        self.ctx = ctx
        self.store = ctx.store

    def templates(self, req: falcon.asgi.Request, body: Any, query: Any) -> TemplateStore:
        scope = self.ctx.scope(req, body, query)
        return TemplateStore(os.path.join(scope.root, "_hoody", "templates"))

    async def list(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        query: TemplateListQuery,
    ) -> None:
        items = self.templates(req, None, query).list(
            category=query.category or None,
            include_builtin=query.includeBuiltin,
            include_custom=query.includeCustom,
        )
        categories = sorted({t["category"] for t in items if t.get("category")})
        errors.json_response(
            resp,
            {"success": True, "templates": items, "count": len(items), "categories": categories},
        )

    async def preview(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        query: TemplatePreviewQuery,
    ) -> None:
        variables = parse_variables(query.variables) if query.variables else {}
        store = self.templates(req, None, query)
        template = store.get(query.name)
        code = store.render(query.name, variables)
        errors.json_response(
            resp,
            {
                "success": True,
                "name": query.name,
                "code": code,
                "filename": template.filename,
                "variables": [msgspec.to_builtins(v) for v in template.variables],
            },
        )

    async def generate(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: TemplateGenerateBody,
        query: Scoped,
    ) -> None:
        store = self.templates(req, body, query)
        template = store.get(body.name)
        code = store.render(body.name, body.variables)
        out: dict[str, Any] = {"success": True, "name": body.name, "code": code, "saved": False}
        if body.saveFile:
            path = body.outputPath or template.filename
            scope = self.ctx.scope(req, body, query)
            written = self.store.write(scope, path, code)
            await self.ctx.invalidated(scope, written.path)
            out.update(
                saved=True,
                path=written.path,
                route=written.route or None,
                validated=written.validated,
            )
        errors.json_response(resp, out, status=201 if out["saved"] else 200)

    async def create(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: TemplateCreateBody,
        query: Scoped,
    ) -> None:
        metadata = body.metadata
        if metadata is None:
            metadata = {k: v for k in META_FIELDS if (v := getattr(body, k)) is not None}
        template = self.templates(req, body, query).create_custom(body.name, body.code, metadata)
        errors.json_response(
            resp, {"success": True, "template": msgspec.to_builtins(template)}, status=201
        )

    async def update(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: TemplateUpdateBody,
        query: Scoped,
        name: str,
    ) -> None:
        template = self.templates(req, None, query).update_custom(
            name, code=body.code, metadata=body.metadata
        )
        errors.json_response(resp, {"success": True, "template": msgspec.to_builtins(template)})

    async def delete(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        query: Scoped,
        name: str,
    ) -> None:
        if not self.templates(req, None, query).delete_custom(name):
            raise NotFound(f"No custom template {name!r}", name=name)
        errors.json_response(resp, {"success": True, "deleted": name})


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = TemplatesAPI(ctx)
    ctx.route(LIST, api.list)
    ctx.route(PREVIEW, api.preview)
    ctx.route(GENERATE, api.generate)
    ctx.route(CREATE, api.create)
    ctx.route(UPDATE, api.update)
    ctx.route(DELETE, api.delete)
