"""Management API: templates (list, preview, generate, custom CRUD).

Custom templates live in the instance's private ``_hoody/templates/`` folder.
"""

from __future__ import annotations

import os
from typing import Any

import falcon
import falcon.asgi
import msgspec

from hoodyexec.errors import BadRequest
from hoodyexec.features.templates.service import TemplateStore, parse_variables
from hoodyexec.http import errors
from hoodyexec.http.body import flag, json_body, need
from hoodyexec.http.context import Context


class TemplatesAPI:
    def __init__(self, ctx: Context) -> None:
        assert ctx.store is not None
        self.ctx = ctx
        self.store = ctx.store

    def templates(
        self, req: falcon.asgi.Request, body: dict[str, Any] | None = None
    ) -> TemplateStore:
        scope = self.ctx.scope(req, body)
        return TemplateStore(os.path.join(scope.root, "_hoody", "templates"))

    async def on_get_list(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        p = req.params
        items = self.templates(req).list(
            category=p.get("category") or None,
            include_builtin=flag(p.get("includeBuiltin"), "includeBuiltin", True),
            include_custom=flag(p.get("includeCustom"), "includeCustom", True),
        )
        categories = sorted({t.get("category") for t in items if t.get("category")})
        errors.json_response(
            resp,
            {"success": True, "templates": items, "count": len(items), "categories": categories},
        )

    async def on_get_preview(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        name = req.get_param("name")
        if not name:
            raise BadRequest("name query parameter is required", field="name")
        text = req.get_param("variables")
        variables = parse_variables(text) if text else {}
        store = self.templates(req)
        template = store.get(name)
        code = store.render(name, variables)
        errors.json_response(
            resp,
            {
                "success": True,
                "name": name,
                "code": code,
                "filename": template.filename,
                "variables": [msgspec.to_builtins(v) for v in template.variables],
            },
        )

    async def on_post_generate(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        name = need(body, "name")
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            raise BadRequest("variables must be an object", field="variables")
        store = self.templates(req, body)
        template = store.get(name)
        code = store.render(name, variables)
        out: dict[str, Any] = {"success": True, "name": name, "code": code, "saved": False}
        if flag(body.get("saveFile"), "saveFile", False):
            path = body.get("outputPath") or template.filename
            if not isinstance(path, str):
                raise BadRequest("outputPath must be a string", field="outputPath")
            written = self.store.write(self.ctx.scope(req, body), path, code)
            out.update(
                saved=True,
                path=written["path"],
                route=written.get("route"),
                validated=written["validated"],
            )
        errors.json_response(resp, out, status=201 if out["saved"] else 200)

    async def on_post_create(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        name = need(body, "name")
        code = need(body, "code")
        metadata = body.get("metadata") or {
            k: v for k, v in body.items() if k not in ("name", "code")
        }
        if not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object", field="metadata")
        template = self.templates(req, body).create_custom(name, code, metadata)
        errors.json_response(
            resp, {"success": True, "template": msgspec.to_builtins(template)}, status=201
        )

    async def on_put_update(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str
    ) -> None:
        body = await json_body(req)
        code = body.get("code")
        metadata = body.get("metadata")
        if code is not None and not isinstance(code, str):
            raise BadRequest("code must be a string", field="code")
        if metadata is not None and not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object", field="metadata")
        template = self.templates(req, body).update_custom(name, code=code, metadata=metadata)
        errors.json_response(resp, {"success": True, "template": msgspec.to_builtins(template)})

    async def on_delete_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str
    ) -> None:
        self.templates(req).delete_custom(name)
        errors.json_response(resp, {"success": True, "deleted": name})


def register(app: falcon.asgi.App, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = TemplatesAPI(ctx)
    base = "/api/v1/exec/templates/"
    app.add_route(base + "list", api, suffix="list")
    app.add_route(base + "preview", api, suffix="preview")
    app.add_route(base + "generate", api, suffix="generate")
    app.add_route(base + "create-custom", api, suffix="create")
    app.add_route(base + "update-custom/{name}", api, suffix="update")
    app.add_route(base + "delete-custom/{name}", api, suffix="delete")
