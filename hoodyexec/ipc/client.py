"""A request worker's side of the control socket.

``LinkClient`` keeps the worker's link to the control worker (reconnecting on
its own while the control worker restarts) and answers broadcasts and queries;
``forward`` sends one management HTTP request and relays the answer.

Handlers are keyed by topic type (``{Invalidate: handler, Status: ...}``), the
way the protocol's tagged unions decode: the handler for a frame is one dict
lookup on its topic's class, never a string compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, get_args

from hoodyexec.errors import ControlUnavailable, HoodyError
from hoodyexec.ipc.protocol import (
    Answer,
    Broadcast,
    Cancel,
    Hello,
    HttpRequest,
    Query,
    Reply,
    ResponseBody,
    ResponseStart,
    Topic,
    encode,
    read_frame,
)

log = logging.getLogger("hoodyexec.client")

# A handler gets the topic it is registered for (an ``Invalidate``, ...).
BroadcastHandler = Callable[[Any], Awaitable[None] | None]
QueryHandler = Callable[[Any], Awaitable[Answer | None] | Answer | None]
TopicType = type[Topic]
_ANSWERS = get_args(Answer)


class LinkClient:
    """Worker side of the link: registers, then serves broadcasts and queries.

    It reconnects on its own when the control worker restarts, so a worker never
    waits for the control worker to be up.
    """

    def __init__(
        self,
        path: str,
        pid: int,
        *,
        role: str = "request",
        age: int = 0,
        on_broadcast: Mapping[TopicType, BroadcastHandler] | None = None,
        on_query: Mapping[TopicType, QueryHandler] | None = None,
    ) -> None:
        self.path = path
        self.hello = Hello(pid=pid, role=role, age=age)
        self.on_broadcast = dict(on_broadcast or {})
        self.on_query = dict(on_query or {})
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hoodyexec-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()

    async def _run(self) -> None:
        delay = 0.02
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            delay = 0.02
            self._writer = writer
            try:
                writer.write(encode(self.hello))
                await writer.drain()
                self.connected.set()
                await self._serve(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            except Exception:  # noqa: BLE001 - keep the link alive whatever a handler does
                log.exception("link failure")
            finally:
                self.connected.clear()
                self._writer = None
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Queries run as tasks, so a long one (a script run) never holds up a
        # status query or a broadcast; a Cancel stops the one it names.
        tasks: dict[int, asyncio.Task[None]] = {}
        lock = asyncio.Lock()

        async def answer(query: Query) -> None:
            try:
                reply = await self._answer(query)
            except asyncio.CancelledError:
                return
            finally:
                tasks.pop(query.id, None)
            async with lock:
                writer.write(encode(reply))
                await writer.drain()

        try:
            await self._read(reader, tasks, answer)
        finally:
            for task in list(tasks.values()):
                task.cancel()

    async def _read(
        self,
        reader: asyncio.StreamReader,
        tasks: dict[int, asyncio.Task[None]],
        answer: Callable[[Query], Coroutine[Any, Any, None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            msg = await read_frame(reader)
            if msg is None:
                return
            if isinstance(msg, Query):
                tasks[msg.id] = loop.create_task(answer(msg))
            elif isinstance(msg, Cancel):
                task = tasks.get(msg.id)
                if task is not None:
                    task.cancel()
            elif isinstance(msg, Broadcast):
                # In order, on the read loop: a notice is applied before any
                # later frame is read.
                handler = self.on_broadcast.get(type(msg.topic))
                if handler is not None:
                    try:
                        result = handler(msg.topic)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # noqa: BLE001
                        log.exception("broadcast handler %s failed", type(msg.topic).__name__)

    async def _answer(self, query: Query) -> Reply:
        kind = type(query.topic)
        # A notice may come as a query (``ControlServer.broadcast(wait=...)``):
        # its handler runs, and the empty reply says it was applied.
        handler = self.on_query.get(kind) or self.on_broadcast.get(kind)
        pid = self.hello.pid
        if handler is None:
            return Reply(id=query.id, pid=pid, error=f"unknown topic {kind.__name__}", code=501)
        try:
            result = handler(query.topic)
            if asyncio.iscoroutine(result):
                result = await result
        except HoodyError as exc:
            return Reply(id=query.id, pid=pid, error=exc.message, code=exc.status)
        except Exception as exc:  # noqa: BLE001
            return Reply(id=query.id, pid=pid, error=f"{type(exc).__name__}: {exc}", code=500)
        if result is not None and not isinstance(result, _ANSWERS):
            # Would not decode on the other side, and take the link down with it.
            error = f"{kind.__name__} handler returned a {type(result).__name__}"
            return Reply(id=query.id, pid=pid, error=error, code=500)
        return Reply(id=query.id, pid=pid, answer=result)


async def _connect(path: str, deadline: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    delay = 0.01
    while True:
        try:
            return await asyncio.open_unix_connection(path)
        except OSError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ControlUnavailable(
                    f"control worker unavailable: {exc.strerror or exc}"
                ) from None
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.2)


class Forwarded:
    """The control worker's answer: status line, first body chunk, and the rest.

    ``rest`` is ``None`` when the whole body came in the first frame, which lets
    the gateway send a plain ``Content-Length`` response instead of chunks.
    """

    __slots__ = ("start", "first", "rest")

    def __init__(
        self, start: ResponseStart, first: bytes, rest: AsyncIterator[bytes] | None
    ) -> None:
        self.start = start
        self.first = first
        self.rest = rest


async def forward(path: str, request: HttpRequest, *, connect_timeout: float = 5.0) -> Forwarded:
    """Send an HTTP request to the control worker and return its answer.

    Connecting is retried until ``connect_timeout`` (the control worker may be
    restarting); once the request is sent it is never retried.
    """
    reader, writer = await _connect(path, time.monotonic() + connect_timeout)
    try:
        writer.write(encode(request))
        await writer.drain()
        start = await read_frame(reader)
        first = await read_frame(reader) if isinstance(start, ResponseStart) else None
    except (ConnectionError, asyncio.IncompleteReadError):
        writer.close()
        raise ControlUnavailable("control worker closed the connection", status=502) from None
    except BaseException:
        writer.close()
        raise
    if not isinstance(start, ResponseStart) or not isinstance(first, ResponseBody):
        writer.close()
        raise ControlUnavailable("control worker sent no response", status=502)
    if not first.more:
        writer.close()
        return Forwarded(start, first.body, None)

    async def rest() -> AsyncIterator[bytes]:
        try:
            while True:
                msg = await read_frame(reader)
                if not isinstance(msg, ResponseBody):
                    return
                if msg.body:
                    yield msg.body
                if not msg.more:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    return Forwarded(start, first.body, rest())
