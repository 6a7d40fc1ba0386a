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
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import falcon
import falcon.asgi

from hoodyexec.errors import HoodyError
from hoodyexec.http import errors
from hoodyexec.http.auth import TokenCheck
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.sink import ScriptsFront, ScriptsSink
from hoodyexec.ipc import client as link
from hoodyexec.ipc.protocol import HttpRequest, Status, WorkerStatus

log = logging.getLogger("hoodyexec.gateway")

MANAGEMENT_BODY_LIMIT = 32 * 1024 * 1024
_HOP_BY_HOP = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


class Forwarder:
    """Sends one management request to the control worker and relays the answer.

    Everything that can refuse a request without its body does so before the
    body is read: the token (the control worker checks it again, it is the
    authority) and a declared Content-Length over the limit. A body without a
    length (chunked) is counted as it arrives and refused as soon as it passes
    the limit, so a worker never holds more than the limit for one request.
    """

    __slots__ = ("socket_path", "pid", "connect_timeout", "auth")

    def __init__(
        self,
        socket_path: str,
        pid: int,
        connect_timeout: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.pid = pid
        self.connect_timeout = connect_timeout
        self.auth = TokenCheck(token)

    async def __call__(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any
    ) -> None:
        self.auth.check(req.path, req.get_header("Authorization"))
        length = req.content_length
        if length is not None and length > MANAGEMENT_BODY_LIMIT:
            raise _too_large()
        body = await _read_body(req.stream, MANAGEMENT_BODY_LIMIT)
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
        answer = await _unless_client_leaves(
            req, link.forward(self.socket_path, request, connect_timeout=self.connect_timeout)
        )
        if answer is None:  # the client left: the control worker was told (connection closed)
            return
        resp.status = answer.start.status
        for key, value in answer.start.headers:
            if key.lower() in _HOP_BY_HOP:
                continue
            resp.append_header(key.decode("latin-1"), value.decode("latin-1"))
        if answer.rest is None:
            resp.data = answer.first
        else:
            resp.stream = _chain(answer.first, answer.rest)


def _too_large() -> HoodyError:
    return HoodyError(f"request body over {MANAGEMENT_BODY_LIMIT} bytes", status=413)


async def _read_body(stream: Any, limit: int) -> bytes:
    """The whole body, or 413 as soon as more than ``limit`` bytes arrived."""
    chunks = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


WATCH_AFTER = 0.5


async def _unless_client_leaves(
    req: falcon.asgi.Request, call: Coroutine[Any, Any, link.Forwarded]
) -> link.Forwarded | None:
    """Wait for the control worker's answer, or for the client to leave.

    falcon only notices a disconnect while it streams a body; a management call
    that computes for long (route/test) would run on after its client left.
    Once the body is read nobody else calls ``receive``, so the next ASGI event
    can only be ``http.disconnect``; when it comes first the forward is
    cancelled, which closes its connection and the control worker stops the call.
    """
    receive = getattr(req, "_receive", None)  # falcon keeps the ASGI receive callable
    answer = asyncio.ensure_future(call)
    watcher: asyncio.Future[None] | None = None

    async def gone() -> None:
        assert receive is not None
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        # PERF: most calls answer at once; only one still running after
        # WATCH_AFTER seconds gets a watcher task.
        done, _ = await asyncio.wait({answer}, timeout=WATCH_AFTER)
        if done or receive is None:
            return await answer
        watcher = asyncio.ensure_future(gone())
        await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done() or watcher.exception() is not None:
            return await answer  # answered (or the disconnect cannot be watched)
        return None  # the client left first
    finally:
        if watcher is not None:
            watcher.cancel()
        if not answer.done():
            answer.cancel()  # closes the forward: the control worker stops the call


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


class WebSocketRefused(Exception):
    """Ends falcon's handling of a handshake that was refused (see ``NoWebSockets``)."""


_KIT_PATH = re.compile(r"/api/v1/exec(/|$)|/openapi\.(json|yaml)$")


class NoWebSockets:
    """Falcon middleware: refuse WebSocket handshakes to the kit's own paths.

    Script routes go to the scripts sink, which serves ``# @websocket``
    scripts (``http/websocket.py``); the management API is HTTP only, and
    without this falcon would route its handshakes to the forwarding sink, an
    HTTP handler (a 500). Closing before accepting is the ASGI way to refuse:
    the server answers the handshake with HTTP 403 (gunicorn has no
    ``websocket.http.response`` extension, so no body). Only
    ``process_request_ws``: HTTP requests never reach this class.
    """

    async def process_request_ws(self, req: falcon.asgi.Request, ws: Any) -> None:
        if _KIT_PATH.match(req.path):
            await ws.close(1008)  # before accept: HTTP 403, this code never goes out
            raise WebSocketRefused


async def _websocket_refused(
    req: Any, resp: Any, ex: WebSocketRefused, params: Any, ws: Any = None
) -> None:
    """Already answered by ``NoWebSockets``: nothing to log, nothing to send."""


async def _no_script(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ws: Any = None, **_: Any
) -> None:
    if ws is not None:
        await ws.close(1008)  # refused: HTTP 403
        return
    errors.json_response(resp, {"error": f"No script at {req.path}", "path": req.path}, status=404)


def worker_status(
    pid: int, age: int, started: float, scripts: Any = None
) -> Callable[[Status], WorkerStatus]:
    """The answer to ``Status``: process facts, and the scripts sink's load."""
    catalog = getattr(scripts, "catalog", None)

    def status(_: Status) -> WorkerStatus:
        return WorkerStatus(
            pid=pid,
            age=age,
            uptime=round(time.time() - started, 3),
            inflight=getattr(scripts, "inflight", 0),
            instances=len(catalog.instances) if catalog is not None else 0,
            tasks=len(asyncio.all_tasks()),
        )

    return status


def create_gateway(
    socket_path: str,
    *,
    scripts: Any = None,
    pid: int | None = None,
    age: int = 0,
    link_client: bool = True,
    connect_timeout: float = 5.0,
    on_broadcast: Mapping[link.TopicType, link.BroadcastHandler] | None = None,
    on_query: Mapping[link.TopicType, link.QueryHandler] | None = None,
    on_startup: list[Callable[[], Any]] | None = None,
    on_shutdown: list[Callable[[], Any]] | None = None,
    token: str | None = None,
) -> ScriptsFront | FalconApp:
    """Build the request worker app: ``ScriptsFront`` serving script routes
    before falcon (the app itself without ``scripts``).

    ``scripts`` is the sink that runs scripts (``ScriptsSink``); without it every
    non-management path is a 404. ``link_client=False`` for in-process tests.
    ``token`` is the management token (``settings.token``), checked here before
    a management request's body is read. ``on_broadcast``/``on_query`` are the
    link's handlers by topic type; ``Status`` is answered here unless given.
    """
    pid = os.getpid() if pid is None else pid
    started = time.time()
    startup = list(on_startup or [])
    shutdown = list(on_shutdown or [])
    if isinstance(scripts, ScriptsSink):
        startup.append(scripts.start)  # inotify applied by the loop from here on
    if link_client:
        queries: dict[link.TopicType, link.QueryHandler] = {
            Status: worker_status(pid, age, started, scripts),
            **dict(on_query or {}),
        }
        client = link.LinkClient(
            socket_path, pid, age=age, on_broadcast=on_broadcast, on_query=queries
        )
        startup.append(client.start)
        shutdown.insert(0, client.close)

    middleware: list[Lifespan | NoWebSockets] = [Lifespan(startup, shutdown), NoWebSockets()]
    app = falcon.asgi.App(middleware=middleware, request_type=falcon.asgi.Request)
    app.req_options.strip_url_path_trailing_slash = False
    app.req_options.auto_parse_qs_csv = False
    errors.install(app)
    app.add_error_handler(WebSocketRefused, _websocket_refused)
    forward = Forwarder(socket_path, pid, connect_timeout, token)
    # falcon types a sink's resp as Response | None (None for a WebSocket, which
    # NoWebSockets refuses on these paths; the scripts sink takes ``ws``): these
    # sinks take a Response.
    app.add_sink(forward, prefix=r"/api/v1/exec(/|$)")  # type: ignore[arg-type]
    app.add_sink(forward, prefix=r"/openapi\.(json|yaml)$")  # type: ignore[arg-type]
    app.add_sink(
        scripts or _no_script,  # type: ignore[arg-type]
        prefix=r"/(?!api/v1/exec(/|$)|openapi\.(json|yaml)$)",
    )
    if scripts is None:
        return app
    return ScriptsFront(scripts, app)
