"""The Unix-socket link between the control worker and the request workers.

``ControlServer`` runs in the control worker. Request workers keep one
``LinkClient`` connection each (registered by a ``Hello`` frame) over which the
control worker broadcasts notices and fans out queries. Management HTTP requests
arrive on short-lived *forward* connections (see ``forward``) and are answered by
running the control worker's ASGI app on them (``bridge.serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from . import bridge
from .errors import ControlUnavailable, HoodyError
from .protocol import (
    Broadcast,
    Cancel,
    Hello,
    HttpRequest,
    Query,
    Reply,
    ResponseBody,
    ResponseStart,
    encode,
    read_frame,
)

log = logging.getLogger("hoodyexec.link")

# Seconds a reloaded control worker keeps accepting after its successor took the
# socket path, to serve connections already queued in its backlog.
BACKLOG_GRACE = 0.25

BroadcastHandler = Callable[[dict[str, Any]], Awaitable[None] | None]
QueryHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class _Link:
    """One registered worker connection, seen from the control side."""

    __slots__ = ("hello", "reader", "writer", "lock")

    def __init__(
        self, hello: Hello, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.hello = hello
        self.reader = reader
        self.writer = writer
        self.lock = asyncio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self.lock:
            self.writer.write(frame)
            await self.writer.drain()


class ControlServer:
    """Control side of the control socket."""

    def __init__(self, path: str, app: bridge.ASGIApp | None = None) -> None:
        self.path = path
        self.app = app
        self.links: dict[int, _Link] = {}
        self._server: asyncio.base_events.Server | None = None
        self._inode: int | None = None
        self._ids = itertools.count(1)
        self._turn = itertools.count()
        self._pending: dict[int, tuple[asyncio.Future[None], list[Reply], set[int]]] = {}
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._link_tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def start(self) -> None:
        # A stale socket from a killed predecessor would make bind fail.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._on_connect, path=self.path)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Stop accepting, let forwarded requests finish, drop the links.

        When a successor already owns the socket path (a reload), no new
        connection can reach this listener, but some may wait in its backlog:
        keep accepting a moment so they are served here instead of dropped.
        Every connection that is not a link (forwards, and ones whose first
        frame is still arriving) gets ``drain_timeout`` to finish.
        """
        self._closing = True
        if drain_timeout > 0 and self._server is not None and not self._owns_path():
            await asyncio.sleep(BACKLOG_GRACE)
        if self._server is not None:
            self._server.close()
        pending = [t for t in self._conns if t not in self._link_tasks]
        if pending and drain_timeout > 0:
            await asyncio.wait(pending, timeout=drain_timeout)
        # Closing a transport ends its reader, so each connection task returns.
        for writer in list(self._conns.values()):
            writer.close()
        self.links.clear()
        if self._conns:
            _, stragglers = await asyncio.wait(list(self._conns), timeout=1.0)
            for task in stragglers:
                task.cancel()
        # Only remove the socket if it is still ours: a successor may own the path now.
        if self._owns_path():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _owns_path(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            return False

    # -- connections --------------------------------------------------------
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        # Accepted while closing (the backlog of a reload) is served all the
        # same: the peer may already have sent a request it will not resend.
        self._conns[task] = writer
        try:
            await self._dispatch(reader, writer, task)
        finally:
            self._conns.pop(task, None)

    async def _dispatch(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[Any]
    ) -> None:
        try:
            first = await read_frame(reader)
        except Exception as exc:  # noqa: BLE001 - a bad peer must not hurt the server
            log.warning("dropping connection with an unreadable first frame: %s", exc)
            writer.close()
            return
        if isinstance(first, Hello):
            if self._closing:  # a link to a closing server: reconnect to the successor
                writer.close()
                return
            self._link_tasks.add(task)
            try:
                await self._serve_link(first, reader, writer)
            finally:
                self._link_tasks.discard(task)
        elif isinstance(first, HttpRequest) and self.app is not None:
            try:
                await bridge.serve(self.app, first, reader, writer)
            finally:
                writer.close()
        else:
            log.warning("unexpected first frame %s", type(first).__name__)
            writer.close()

    async def _serve_link(
        self, hello: Hello, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        link = _Link(hello, reader, writer)
        old = self.links.get(hello.pid)
        if old is not None:
            old.writer.close()
        self.links[hello.pid] = link
        log.debug("worker %s linked", hello.pid)
        try:
            while True:
                msg = await read_frame(reader)
                if msg is None:
                    break
                if isinstance(msg, Reply):
                    self._on_reply(msg)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self.links.get(hello.pid) is link:
                del self.links[hello.pid]
            for fut, _, waiting in self._pending.values():
                waiting.discard(hello.pid)
                if not waiting and not fut.done():
                    fut.set_result(None)
            writer.close()
            log.debug("worker %s unlinked", hello.pid)

    def _on_reply(self, reply: Reply) -> None:
        entry = self._pending.get(reply.id)
        if entry is None:
            return
        fut, replies, waiting = entry
        if reply.pid in waiting:
            waiting.discard(reply.pid)
            replies.append(reply)
        if not waiting and not fut.done():
            fut.set_result(None)

    # -- fan-out ------------------------------------------------------------
    async def broadcast(self, topic: str, data: Mapping[str, Any] | None = None) -> list[int]:
        """Send a notice to every linked worker; returns the pids it went to."""
        frame = encode(Broadcast(topic=topic, data=dict(data or {})))
        sent = []
        for pid, link in list(self.links.items()):
            try:
                await link.send(frame)
                sent.append(pid)
            except (ConnectionError, RuntimeError):
                pass
        return sent

    async def ask(
        self,
        topic: str,
        data: Mapping[str, Any] | None = None,
        wait_link: float = 5.0,
        avoid: int = 0,
    ) -> Reply:
        """Ask one linked worker (round robin, not ``avoid`` when another is
        linked) and wait for its reply.

        No time limit here: the worker bounds the work. If the asker is
        cancelled (its HTTP client left), the worker is told to stop; if the
        worker exits first, ``WorkerGone``.
        """
        deadline = time.monotonic() + wait_link
        while not self.links:  # a worker restarting, or the kit just booting
            if time.monotonic() > deadline:
                raise ControlUnavailable("no request worker is linked to run this")
            await asyncio.sleep(0.05)
        pids = sorted(p for p in self.links if p != avoid) or sorted(self.links)
        pid = pids[next(self._turn) % len(pids)]
        link = self.links[pid]
        qid = next(self._ids)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        replies: list[Reply] = []
        self._pending[qid] = (fut, replies, {pid})
        try:
            await link.send(encode(Query(id=qid, topic=topic, data=dict(data or {}))))
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                link.writer.write(encode(Cancel(id=qid)))  # one whole frame, no await
            raise
        except (ConnectionError, RuntimeError):
            raise WorkerGone(f"request worker {pid} went away") from None
        finally:
            del self._pending[qid]
        if not replies:
            raise WorkerGone(f"request worker {pid} exited before it answered")
        return replies[0]

    async def gather(
        self, topic: str, data: Mapping[str, Any] | None = None, timeout: float = 1.0
    ) -> list[Reply]:
        """Ask every linked worker and collect the replies that arrive in time."""
        qid = next(self._ids)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        replies: list[Reply] = []
        waiting = set(self.links)
        self._pending[qid] = (fut, replies, waiting)
        try:
            frame = encode(Query(id=qid, topic=topic, data=dict(data or {})))
            for pid, link in list(self.links.items()):
                try:
                    await link.send(frame)
                except (ConnectionError, RuntimeError):
                    waiting.discard(pid)
            if waiting:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), timeout)
            return sorted(replies, key=lambda r: r.pid)
        finally:
            del self._pending[qid]


class WorkerGone(HoodyError):
    """The worker answering a query exited before it replied."""

    status = 502


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
        on_broadcast: Mapping[str, BroadcastHandler] | None = None,
        on_query: Mapping[str, QueryHandler] | None = None,
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
        answer: Callable[[Query], Awaitable[None]],
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
                handler = self.on_broadcast.get(msg.topic)
                if handler is not None:
                    try:
                        result = handler(msg.data)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # noqa: BLE001
                        log.exception("broadcast handler %s failed", msg.topic)

    async def _answer(self, query: Query) -> Reply:
        handler = self.on_query.get(query.topic)
        if handler is None:
            return Reply(id=query.id, pid=self.hello.pid, error=f"unknown query {query.topic!r}")
        try:
            result = handler(query.data)
            if asyncio.iscoroutine(result):
                result = await result
            return Reply(id=query.id, pid=self.hello.pid, data=result)
        except HoodyError as exc:
            return Reply(
                id=query.id, pid=self.hello.pid, error=exc.message, data={"status": exc.status}
            )
        except Exception as exc:  # noqa: BLE001
            return Reply(id=query.id, pid=self.hello.pid, error=f"{type(exc).__name__}: {exc}")


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
