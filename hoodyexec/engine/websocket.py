"""WebSocket scripts: the ``ws`` a script's ``websocket()`` gets, one session per
connection, and the worker's register of open sockets.

No falcon here: the HTTP layer adapts its WebSocket to ``Transport`` (receive,
send, close) and hands the session the script's coroutine function and its
injected arguments. A session runs the script in a task of its own, with no
deadline (``@timeout`` bounds HTTP calls, not a healthy socket), and closes the
socket when the script returns (1000), raises (1011, the traceback in the
script's log), stays silent past the idle timeout (1001) or the worker is told
to stop (1001). A script that does not return within ``CLOSE_GRACE`` seconds
of a close made by the kit is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from hoodyexec.engine.capture import Console
from hoodyexec.ipc.protocol import WebSocketStats

# Seconds a script gets to return after the kit closed its socket.
CLOSE_GRACE = 2.0
NORMAL = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
# RFC 6455 section 7.4: codes an endpoint may send (1004-1006 and 1015 never go
# on the wire); 3000-4999 belong to libraries and applications.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_MAX_REASON = 123  # bytes: a close frame's payload is at most 125

_json_encode = msgspec.json.Encoder().encode


class WebSocketClosed(ConnectionError):
    """``ws.send`` on a closed socket. Escaping ``websocket()`` it ends the
    session quietly: the peer or the kit closed the socket, the script did not fail."""


class Transport(Protocol):
    """What the HTTP layer offers for one accepted socket."""

    async def receive(self) -> str | bytes | None:
        """The next message; ``None`` once the socket is closed."""

    async def send(self, message: str | bytes) -> None:
        """Send one message; ``WebSocketClosed`` once the socket is closed."""

    async def close(self, code: int, reason: str) -> None:
        """Close the socket (a no-op when it already is)."""

    @property
    def closed(self) -> bool: ...


def check_close(code: int, reason: str) -> None:
    """A ``ValueError`` for a close the protocol forbids."""
    if not isinstance(code, int) or not (code in _SENDABLE or 3000 <= code <= 4999):
        raise ValueError(f"close code {code!r} cannot be sent (1000-1003, 1007-1014, 3000-4999)")
    if len(reason.encode()) > _MAX_REASON:
        raise ValueError(f"close reason longer than {_MAX_REASON} bytes")


class WebSocket:
    """The ``ws`` a script's ``websocket(ws, ...)`` receives.

    ``await ws.receive()`` → ``str`` (text frame) | ``bytes`` (binary frame) |
    ``None`` (closed); ``async for message in ws``; ``await ws.send(x)``: ``str``
    → text, ``bytes`` → binary, anything else JSON-encoded into a text frame;
    ``await ws.close(code=1000, reason="")``; ``ws.closed``.
    """

    __slots__ = ("_transport", "_stats", "_closed", "last")

    def __init__(self, transport: Transport, stats: Sockets) -> None:
        self._transport = transport
        self._stats = stats
        self._closed = False
        self.last = time.monotonic()  # the last message either way

    @property
    def closed(self) -> bool:
        return self._closed or self._transport.closed

    async def receive(self) -> str | bytes | None:
        if self._closed:
            return None
        message = await self._transport.receive()
        if message is None:
            self._closed = True
            return None
        self.last = time.monotonic()
        self._stats.received += 1
        return message

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send(self, message: Any) -> None:
        if isinstance(message, str):
            data: str | bytes = message
        elif isinstance(message, bytes | bytearray | memoryview):
            data = bytes(message)
        else:
            data = _json_encode(message).decode()
        if self.closed:
            raise WebSocketClosed("the WebSocket is closed")
        await self._transport.send(data)
        self.last = time.monotonic()
        self._stats.sent += 1

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        check_close(code, reason)
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        await self._transport.close(code, reason)

    def __repr__(self) -> str:
        return f"<WebSocket {'closed' if self.closed else 'open'}>"


class Session:
    """One connection: runs the script, watches for idleness, closes the socket."""

    __slots__ = ("sockets", "ws", "console", "task", "stopping", "_timer")

    def __init__(self, sockets: Sockets, ws: WebSocket, console: Console) -> None:
        self.sockets = sockets
        self.ws = ws
        self.console = console
        self.task: asyncio.Task[Any] | None = None
        self.stopping = False
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> None:
        """Run ``fn(**kwargs)`` until it returns, then close the socket."""
        sockets = self.sockets
        sockets.open.add(self)
        sockets.total += 1
        self._arm(sockets.idle_timeout)
        self.task = asyncio.ensure_future(fn(**kwargs))
        code, reason = NORMAL, ""
        try:
            await self.task
        except WebSocketClosed:
            pass  # closed under the script's feet: not its failure
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the server is cancelling the connection
            if not self.stopping:  # raised by the script itself
                code, reason = self._failed(exc)
        except BaseException as exc:  # noqa: BLE001 - any script failure closes with 1011
            code, reason = self._failed(exc)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            sockets.open.discard(self)
        await self.ws._close(code, reason[:_MAX_REASON])

    def _failed(self, exc: BaseException) -> tuple[int, str]:
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is Session.run.__code__:
            exc = exc.with_traceback(tb.tb_next)  # from the script's frame down
        self.console.exception(exc)
        return INTERNAL_ERROR, f"{type(exc).__name__} in the script"

    def stop(self, code: int, reason: str) -> None:
        """Close the socket from the kit's side; the script's ``receive`` gets
        ``None`` and it is cancelled if it has not returned ``CLOSE_GRACE`` later."""
        if self.stopping:
            return
        self.stopping = True
        self.console.info(f"WebSocket closed by the kit: {code} {reason}")
        asyncio.get_running_loop().create_task(self._stop(code, reason))

    async def _stop(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws._close(code, reason)
        task = self.task
        if task is not None and not task.done():
            _, pending = await asyncio.wait({task}, timeout=CLOSE_GRACE)
            if pending:
                task.cancel()

    def _arm(self, idle: float) -> None:
        if idle > 0:
            delay = self.ws.last + idle - time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._idle)

    def _idle(self) -> None:
        self._timer = None
        idle = self.sockets.idle_timeout
        if time.monotonic() - self.ws.last >= idle:
            self.stop(GOING_AWAY, f"idle for {idle:g} s")
        else:
            self._arm(idle)


class Sockets:
    """A worker's open WebSocket sessions and its counters (``monitor/stats``)."""

    def __init__(self, idle_timeout: float = 300.0) -> None:
        self.idle_timeout = idle_timeout  # seconds without a message either way; 0: never
        self.open: set[Session] = set()
        self.total = 0
        self.received = 0
        self.sent = 0

    def going_away(self, reason: str = "server shutting down") -> int:
        """Close every open socket with 1001 (the worker is stopping); how many."""
        sessions = list(self.open)
        for session in sessions:
            session.stop(GOING_AWAY, reason)
        return len(sessions)

    def stats(self) -> WebSocketStats:
        return WebSocketStats(
            open=len(self.open), total=self.total, received=self.received, sent=self.sent
        )
