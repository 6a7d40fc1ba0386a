"""The request worker's Falcon ASGI app.

Management calls (``/api/v1/exec/*`` and the kit's OpenAPI documents) are
forwarded to the control worker over the control socket and its answer streams
back. Every other path is a script route; script execution never waits on the
control worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import falcon
import falcon.asgi

from .. import link
from ..errors import HoodyError
from ..protocol import HttpRequest
from . import errors

log = logging.getLogger("hoodyexec.gateway")

MANAGEMENT_PREFIX = "/api/v1/exec"
MANAGEMENT_BODY_LIMIT = 32 * 1024 * 1024
_HOP_BY_HOP = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


class Forwarder:
    """Sends one management request to the control worker and relays the answer."""

    __slots__ = ("socket_path", "pid", "connect_timeout")

    def __init__(self, socket_path: str, pid: int, connect_timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.pid = pid
        self.connect_timeout = connect_timeout

    async def __call__(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any
    ) -> None:
        length = req.content_length
        if length is not None and length > MANAGEMENT_BODY_LIMIT:
            raise HoodyError(f"request body over {MANAGEMENT_BODY_LIMIT} bytes", status=413)
        body = await req.stream.read()
        if len(body) > MANAGEMENT_BODY_LIMIT:
            raise HoodyError(f"request body over {MANAGEMENT_BODY_LIMIT} bytes", status=413)
        scope = req.scope
        request = HttpRequest(
            method=req.method,
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            # falcon has consumed scope["headers"] (it may be a one-shot iterator)
            headers=[
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()
            ],
            body=body,
            client=tuple(scope["client"]) if scope.get("client") else None,
            scheme=scope.get("scheme", "http"),
            server=tuple(scope["server"]) if scope.get("server") else None,
            worker_pid=self.pid,
        )
        answer = await link.forward(self.socket_path, request, connect_timeout=self.connect_timeout)
        resp.status = answer.start.status
        for key, value in answer.start.headers:
            if key.lower() in _HOP_BY_HOP:
                continue
            resp.append_header(key.decode("latin-1"), value.decode("latin-1"))
        if answer.rest is None:
            resp.data = answer.first
        else:
            resp.stream = _chain(answer.first, answer.rest)


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


class Lifespan:
    """Falcon middleware: per-worker start/stop work that needs the running loop."""

    def __init__(
        self, on_startup: list[Callable[[], Any]], on_shutdown: list[Callable[[], Any]]
    ) -> None:
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def process_startup(self, scope: Any, event: Any) -> None:
        for fn in self.on_startup:
            result = fn()
            if asyncio.iscoroutine(result):
                await result

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        for fn in self.on_shutdown:
            result = fn()
            if asyncio.iscoroutine(result):
                await result


async def _no_script(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any) -> None:
    errors.json_response(resp, {"error": f"No script at {req.path}", "path": req.path}, status=404)


def worker_status(
    pid: int, age: int, started: float
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def status(_: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "pid": pid,
            "age": age,
            "uptime": round(time.time() - started, 3),
            "tasks": len(asyncio.all_tasks()),
        }

    return status


def create_gateway(
    socket_path: str,
    *,
    scripts: Any = None,
    pid: int | None = None,
    age: int = 0,
    link_client: bool = True,
    connect_timeout: float = 5.0,
    on_broadcast: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    on_query: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    on_startup: list[Callable[[], Any]] | None = None,
    on_shutdown: list[Callable[[], Any]] | None = None,
) -> falcon.asgi.App:
    """Build the request worker app.

    ``scripts`` is the sink that runs scripts (``ScriptsSink``); without it every
    non-management path is a 404. ``link_client=False`` for in-process tests.
    """
    pid = os.getpid() if pid is None else pid
    started = time.time()
    startup = list(on_startup or [])
    shutdown = list(on_shutdown or [])
    if link_client:
        queries = {"status": worker_status(pid, age, started), **dict(on_query or {})}
        client = link.LinkClient(
            socket_path, pid, age=age, on_broadcast=on_broadcast, on_query=queries
        )
        startup.append(client.start)
        shutdown.insert(0, client.close)

    app = falcon.asgi.App(
        middleware=[Lifespan(startup, shutdown)], request_type=falcon.asgi.Request
    )
    app.req_options.strip_url_path_trailing_slash = False
    app.req_options.auto_parse_qs_csv = False
    errors.install(app)
    forward = Forwarder(socket_path, pid, connect_timeout)
    app.add_sink(forward, prefix=r"/api/v1/exec(/|$)")
    app.add_sink(forward, prefix=r"/openapi\.(json|yaml)$")
    app.add_sink(scripts or _no_script, prefix=r"/(?!api/v1/exec(/|$)|openapi\.(json|yaml)$)")
    return app
