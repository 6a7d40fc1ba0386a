"""Management API: scripts (write, read, list, delete, move, tree) and exec ids."""

from __future__ import annotations

import falcon
import falcon.asgi

from hoodyexec.errors import BadRequest
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.spec import Scoped

from .schemas import (
    DELETE,
    IDS,
    LIST,
    MOVE,
    READ,
    TREE,
    WRITE,
    ScriptDeleteQuery,
    ScriptListQuery,
    ScriptMoveBody,
    ScriptPathQuery,
    ScriptTreeBody,
    ScriptWriteBody,
)


class ScriptsAPI:
    def __init__(self, ctx: Context) -> None:
        assert ctx.home is not None and ctx.store is not None
        self.ctx = ctx
        self.home = ctx.home
        self.store = ctx.store
        self.scope = ctx.scope

    async def write(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: ScriptWriteBody,
        query: Scoped,
    ) -> None:
        scope = self.scope(req, body, query)
        result = self.store.write(
            scope,
            body.path,
            body.content,
            create_dirs=body.createDirs,
            validate=body.validate,
        )
        await self.ctx.invalidated(scope, result.path)
        errors.ok(resp, result, status=201 if result.created else 200)

    async def read(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: ScriptPathQuery
    ) -> None:
        errors.ok(resp, self.store.read(self.scope(req, None, query), query.path))

    async def list(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: ScriptListQuery
    ) -> None:
        tags = query.tags
        if isinstance(tags, str):
            tags = [t for t in tags.replace(" ", ",").split(",") if t]
        result = self.store.list(
            self.scope(req, None, query),
            dir=query.dir,
            filter=query.filter or None,
            metadata=query.metadata,
            label=query.label or None,
            tags=tags or None,
            mode=query.mode,
            enabled=query.enabled,
            websocket=query.websocket,
            recursive=query.recursive,
            include_comments=query.include_comments,
        )
        errors.ok(resp, result)

    async def delete(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: Scoped,
        query: ScriptDeleteQuery,
    ) -> None:
        if query.confirm != "true":
            raise BadRequest("confirm=true parameter required for safety", field="confirm")
        scope = self.scope(req, body, query)
        result = self.store.delete(scope, query.path)
        await self.ctx.invalidated(scope, result.deleted)
        errors.ok(resp, result)

    async def move(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: ScriptMoveBody,
        query: Scoped,
    ) -> None:
        scope = self.scope(req, body, query)
        result = self.store.move(scope, body.from_, body.to, overwrite=body.overwrite)
        await self.ctx.invalidated(scope, result.from_, result.to)
        errors.ok(resp, result)

    async def tree(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: ScriptTreeBody,
        query: Scoped,
    ) -> None:
        result = self.store.tree(
            self.scope(req, body, query),
            base_dir=body.baseDir,
            max_depth=body.maxDepth,
            include_metadata=body.includeMetadata,
        )
        errors.ok(resp, result)

    async def ids(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        errors.ok(resp, self.store.exec_ids())


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = ScriptsAPI(ctx)
    for ep, handler in (
        (WRITE, api.write),
        (READ, api.read),
        (LIST, api.list),
        (DELETE, api.delete),
        (MOVE, api.move),
        (TREE, api.tree),
        (IDS, api.ids),
    ):
        ctx.route(ep, handler)
