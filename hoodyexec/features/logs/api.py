"""Management API: ``logs/list|read|search|stream|clear`` over ``<home>/logs``."""

from __future__ import annotations

import asyncio
import logging

import falcon.asgi

from hoodyexec.errors import BadRequest
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp

from .files import LogFile
from .schemas import (
    CLEAR,
    LIST,
    READ,
    SEARCH,
    STREAM,
    LogsClearQuery,
    LogsListQuery,
    LogsRead,
    LogsSearch,
    LogsStreamQuery,
)
from .service import LogsService, check_regex

log = logging.getLogger("hoodyexec.logs")
CONFIRM = "confirm=true parameter required for safety"


class LogsAPI:
    def __init__(self, service: LogsService) -> None:
        self.service = service
        self.files = service.files

    async def list(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, q: LogsListQuery
    ) -> None:
        found = await asyncio.to_thread(self.files.listing, q.type)
        items = [f.describe() for f in found[: q.limit]]
        errors.json_response(
            resp, {"success": True, "logs": items, "count": len(items), "total": len(found)}
        )

    async def read(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: LogsRead, _: None
    ) -> None:
        f = self.files.resolve(body.file)
        result = await asyncio.to_thread(
            self.service.read,
            f,
            lines=body.lines,
            tail=body.tail,
            execution_id=body.executionId or None,
            search=body.search,
            case_sensitive=body.caseSensitive,
        )
        errors.json_response(resp, {"success": True, **result})

    async def search(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: LogsSearch, _: None
    ) -> None:
        if body.query is not None and body.regex is not None:
            raise BadRequest("send query or regex, not both", field="regex")
        pattern = body.regex if body.regex is not None else body.query
        if pattern is None:
            raise BadRequest("query or regex is required", field="query")
        if body.regex is not None:
            check_regex(body.regex, body.caseSensitive)
        if body.files:
            names = list(dict.fromkeys(body.files))
            files: list[LogFile] = [self.files.resolve(name) for name in names]
        else:
            files = await asyncio.to_thread(self.files.listing, body.type)
        if body.type is not None:
            files = [f for f in files if f.type == body.type]
        result = await self.service.search(
            files,
            pattern,
            regex=body.regex is not None,
            case_sensitive=body.caseSensitive,
            execution_id=body.executionId or None,
            limit=body.limit,
        )
        errors.json_response(resp, {"success": True, **result})

    async def stream(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, q: LogsStreamQuery
    ) -> None:
        f = self.files.resolve(q.file)
        events = await self.service.stream(
            f, follow=q.follow, backlog=q.lines, execution_id=q.executionId or None
        )
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = events

    async def clear(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, q: LogsClearQuery
    ) -> None:
        if (q.confirm or "").lower() not in ("true", "1"):
            raise BadRequest(CONFIRM, field="confirm")
        if q.file is not None:
            f = self.files.resolve(q.file)
            if q.type is not None and f.type != q.type:
                raise BadRequest(f"{f.name} is a {f.type} log, not {q.type}", field="type")
            files = [f]
        else:
            files = await asyncio.to_thread(self.files.listing, q.type)
        cleared = await asyncio.to_thread(self.files.clear, files, q.olderThanDays)
        total = sum(c["bytes"] for c in cleared)
        if cleared:
            log.info("logs: cleared %d file(s), %d bytes", len(cleared), total)
        errors.json_response(
            resp, {"success": True, "cleared": cleared, "count": len(cleared), "bytes": total}
        )


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    service = LogsService(ctx.home.logs)
    ctx.services.append(service)
    api = LogsAPI(service)
    ctx.route(LIST, api.list)
    ctx.route(READ, api.read)
    ctx.route(SEARCH, api.search)
    ctx.route(STREAM, api.stream)
    ctx.route(CLEAR, api.clear)
