"""Management API: scripts (write, read, list, delete, move, tree) and exec ids."""

from __future__ import annotations

import falcon
import falcon.asgi

from hoodyexec.errors import BadRequest
from hoodyexec.http import errors
from hoodyexec.http.body import flag, json_body, need
from hoodyexec.http.context import Context


class ScriptsAPI:
    def __init__(self, ctx: Context) -> None:
        assert ctx.home is not None and ctx.store is not None
        self.ctx = ctx
        self.home = ctx.home
        self.store = ctx.store
        self.scope = ctx.scope

    async def on_post_write(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        path = need(body, "path")
        content = need(body, "content")
        result = self.store.write(
            self.scope(req, body),
            path,
            content,
            create_dirs=flag(body.get("createDirs"), "createDirs", True),
            validate=flag(body.get("validate"), "validate", True),
        )
        errors.json_response(resp, result, status=201 if result["created"] else 200)

    async def on_get_read(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        path = req.get_param("path")
        if not path:
            raise BadRequest("path query parameter is required", field="path")
        errors.json_response(resp, self.store.read(self.scope(req), path))

    async def on_get_list(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        p = req.params
        tags = p.get("tags")
        if isinstance(tags, str):
            tags = [t for t in tags.replace(" ", ",").split(",") if t]
        result = self.store.list(
            self.scope(req),
            dir=p.get("dir") or "",
            filter=p.get("filter") or None,
            metadata=flag(p.get("metadata"), "metadata", False),
            label=p.get("label") or None,
            tags=tags or None,
            mode=p.get("mode") or None,
            enabled=None
            if p.get("enabled") in (None, "")
            else flag(p.get("enabled"), "enabled", True),
            websocket=None
            if p.get("websocket") in (None, "")
            else flag(p.get("websocket"), "websocket", False),
            recursive=flag(p.get("recursive"), "recursive", True),
            include_comments=flag(p.get("include_comments"), "include_comments", False),
        )
        errors.json_response(resp, result)

    async def on_delete_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        path = req.get_param("path")
        if not path:
            raise BadRequest("path query parameter is required", field="path")
        if req.get_param("confirm") != "true":
            raise BadRequest("confirm=true parameter required for safety")
        errors.json_response(resp, self.store.delete(self.scope(req), path))

    async def on_post_move(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        result = self.store.move(
            self.scope(req, body),
            need(body, "from"),
            need(body, "to"),
            overwrite=flag(body.get("overwrite"), "overwrite", False),
        )
        errors.json_response(resp, result)

    async def on_post_tree(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req, required=False)
        depth = body.get("maxDepth", 10)
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise BadRequest("maxDepth must be an integer", field="maxDepth")
        base = body.get("baseDir") or ""
        if not isinstance(base, str):
            raise BadRequest("baseDir must be a string", field="baseDir")
        result = self.store.tree(
            self.scope(req, body),
            base_dir=base,
            max_depth=depth,
            include_metadata=flag(body.get("includeMetadata"), "includeMetadata", False),
        )
        errors.json_response(resp, result)

    async def on_get_ids(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        errors.json_response(resp, self.store.exec_ids())


def register(app: falcon.asgi.App, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = ScriptsAPI(ctx)
    base = "/api/v1/exec/scripts/"
    for name in ("write", "read", "list", "delete", "move", "tree"):
        app.add_route(base + name, api, suffix=name)
    app.add_route("/api/v1/exec/list", api, suffix="ids")
