"""WebSocket handshakes to script routes: the scripts sink's ``ws`` path.

handshake → instance (by Host) → route → compiled script (fresh) → a
``# @websocket`` script with a ``websocket()`` entry → magic checks (enabled,
``@cors`` against the Origin header, ``@token``) → injected arguments → accept
→ ``engine.websocket.Session`` runs the script until it or the socket ends.

A refused handshake is closed before it is accepted, which the server answers
with HTTP 403 (gunicorn has no ``websocket.http.response`` extension, so it
carries no body); the reason goes to the script's log when there is a script.
The largest message a client may send is enforced by gunicorn before the
message is read (``websocket-max-message-size``: close 1009).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import falcon
import falcon.asgi

from hoodyexec.engine.capture import Console, current, finish
from hoodyexec.engine.compiler import ScriptLoadError
from hoodyexec.engine.invoke import KIT_TRIGGERS
from hoodyexec.engine.runtime import Req
from hoodyexec.engine.websocket import POLICY_VIOLATION, Session, WebSocket, WebSocketClosed
from hoodyexec.errors import HoodyError

if TYPE_CHECKING:
    from hoodyexec.http.sink import ScriptsSink

log = logging.getLogger("hoodyexec.scripts")


class FalconTransport:
    """falcon's ASGI WebSocket as an ``engine.websocket.Transport``."""

    __slots__ = ("_ws",)

    def __init__(self, ws: falcon.asgi.WebSocket) -> None:
        self._ws = ws

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def receive(self) -> str | bytes | None:
        try:
            # falcon's raw event: receive_text/receive_data each refuse the other
            # kind, and a script takes whichever comes (falcon is pinned).
            event = await self._ws._receive()
        except falcon.WebSocketDisconnected:
            return None
        text = event.get("text")
        if text is not None:
            return str(text)
        data = event.get("bytes")
        return bytes(data) if data is not None else b""

    async def send(self, message: str | bytes) -> None:
        try:
            if isinstance(message, str):
                await self._ws.send_text(message)
            else:
                await self._ws.send_data(message)
        except falcon.WebSocketDisconnected:
            raise WebSocketClosed("the WebSocket is closed") from None

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._ws.close(code, reason or None)
        except (falcon.WebSocketDisconnected, OSError):
            pass  # the peer is gone already


async def _refuse(ws: falcon.asgi.WebSocket) -> None:
    """Close before accepting: the server answers the handshake with 403."""
    await ws.close(POLICY_VIOLATION)


def _origin_ok(req: falcon.asgi.Request, allowed: list[str]) -> bool:
    """``@cors`` on a handshake: a browser's Origin must be listed (or ``*``);
    a client without Origin (not a browser) is not a cross-origin page."""
    origin = req.get_header("Origin")
    return origin is None or "*" in allowed or origin in allowed


async def serve(sink: ScriptsSink, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
    """Answer one WebSocket handshake on a script route."""
    from hoodyexec.http.sink import _token_ok

    execution_id = sink.next_id()
    catalog = sink.catalog
    catalog.refresh()
    host = req.get_header("Host") or ""
    target = sink._by_host.get(host.encode("latin1")) or sink._target_for(host)
    if target is None:
        return await _refuse(ws)
    inst, hostname, trigger = target
    path = req.path
    found = inst.router.find(path)
    if found is None:
        return await _refuse(ws)
    route, params = found
    scriptlog = None
    try:
        script = catalog.load(inst, route)
        scriptlog = script.log
        if scriptlog is None:
            scriptlog = script.log = sink.logbook.for_script(
                inst.subdomain, inst.exec_id, route.file
            )
    except FileNotFoundError:
        return await _refuse(ws)
    except ScriptLoadError as exc:
        sink.logbook.for_script(inst.subdomain, inst.exec_id, route.file).write(
            40, execution_id, f"WebSocket refused: {exc.message}"
        )
        return await _refuse(ws)
    console = Console(scriptlog, execution_id, script.log_min)
    magic = script.magic
    entry = script.ws
    refusal = None
    if entry is None or not magic.enabled:
        refusal = "not a WebSocket script (# @websocket with async def websocket(ws, ...))"
    elif magic.cors is not None and not _origin_ok(req, magic.cors):
        refusal = f"origin {req.get_header('Origin')!r} not allowed by @cors"
    elif (
        magic.token is not None and trigger not in KIT_TRIGGERS and not _token_ok(req, magic.token)
    ):
        refusal = "missing or invalid token"
    if refusal is not None:
        if entry is not None:
            console.warn(f"WebSocket refused: {refusal}")
        return await _refuse(ws)
    assert entry is not None
    socket = WebSocket(FalconTransport(ws), sink.sockets)
    r = Req(req, "GET", path, params, None, b"", execution_id) if entry.needs_req else None
    call = (
        r,
        None,
        console,
        None,
        params,
        b"",
        req,
        route.file,
        hostname,
        inst,
        trigger,
        magic.raw,
        sink.shared,
        script.ai,
        socket,
    )
    kwargs: dict[str, Any] = {}
    try:
        for name, get in entry.inject:
            kwargs[name] = get(call)
    except HoodyError as exc:  # a route parameter that does not convert
        console.warn(f"WebSocket refused: {exc.message}")
        return await _refuse(ws)
    await ws.accept()
    console.debug(f"WebSocket open from {req.remote_addr}")
    token = current.set(console)
    try:
        await Session(sink.sockets, socket, console).run(entry.fn, kwargs)
    finally:
        current.reset(token)
        finish(console)
