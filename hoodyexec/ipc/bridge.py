"""Run an ASGI app on a forwarded ``HttpRequest`` and stream its answer back.

The control worker has no HTTP listener of its own: request workers forward
management calls as frames, and this module turns each into one ASGI ``http``
call, writing ``ResponseStart``/``ResponseBody`` frames as the app sends. When
the forwarding side goes away the app sees ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from hoodyexec.ipc.protocol import HttpRequest, ResponseBody, ResponseStart, encode

log = logging.getLogger("hoodyexec.bridge")

Scope = dict[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Coroutine[Any, Any, None],
]

# ASGI scope key: pid of the request worker that forwarded the call.
WORKER_PID = "hoodyexec.worker_pid"

_ERROR_BODY = b'{"error":"internal error in the control worker"}'


def scope_for(req: HttpRequest) -> Scope:
    path = req.path
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": req.scheme,
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": req.query_string,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in req.headers],
        "client": req.client,
        "server": req.server,
        "state": {},
        WORKER_PID: req.worker_pid,  # the request worker that forwarded this call
    }


async def serve(
    app: ASGIApp, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    sent_body = False
    started = False
    finished = False
    disconnected = asyncio.Event()

    async def watch() -> None:
        # Any byte or EOF from the forwarder after the request means it is gone.
        try:
            await reader.read(1)
        finally:
            disconnected.set()

    loop = asyncio.get_running_loop()
    watcher = loop.create_task(watch())

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal started, finished
        if disconnected.is_set():
            raise ConnectionResetError("forwarding worker disconnected")
        kind = message["type"]
        if kind == "http.response.start":
            started = True
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            writer.write(encode(ResponseStart(status=message["status"], headers=headers)))
        elif kind == "http.response.body":
            more = bool(message.get("more_body", False))
            writer.write(encode(ResponseBody(body=bytes(message.get("body", b"")), more=more)))
            finished = not more
        await writer.drain()

    # The app runs as its own task so that a client who leaves stops it
    # (a route/test run, a followed log), not only its next send.
    call = loop.create_task(app(scope_for(req), receive, send))

    def client_left(_: asyncio.Future[Any]) -> None:
        if not finished and not call.done():
            call.cancel()

    watcher.add_done_callback(client_left)
    try:
        await call
    except asyncio.CancelledError:
        if not disconnected.is_set():
            raise  # the control worker itself is being stopped
    except Exception:
        log.exception("management app failed on %s %s", req.method, req.path)
        if not started and not disconnected.is_set():
            writer.write(
                encode(ResponseStart(status=500, headers=[(b"content-type", b"application/json")]))
            )
            writer.write(encode(ResponseBody(body=_ERROR_BODY, more=False)))
            finished = True
    finally:
        if started and not finished and not disconnected.is_set():
            writer.write(encode(ResponseBody(body=b"", more=False)))
        watcher.cancel()
        try:
            await writer.drain()
        except ConnectionError:
            pass
