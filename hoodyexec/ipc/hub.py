"""The control worker's side of the control socket.

Request workers keep one link each (registered by a ``Hello`` frame) over which
the hub broadcasts notices, fans out queries (``gather``) and asks one worker
to do something (``ask``: run a script). Every one of them carries a typed
topic (``protocol.Topic``). Management HTTP requests arrive on
short-lived *forward* connections and are answered by running the management
ASGI app on them (``bridge.serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from typing import Any

from hoodyexec.errors import ControlUnavailable, HoodyError
from hoodyexec.ipc import bridge
from hoodyexec.ipc.protocol import (
    Broadcast,
    Cancel,
    Hello,
    HttpRequest,
    Query,
    Reply,
    Topic,
    encode,
    read_frame,
)

log = logging.getLogger("hoodyexec.hub")

# Seconds a reloaded control worker keeps accepting after its successor took the
# socket path, to serve connections already queued in its backlog.
BACKLOG_GRACE = 0.25


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
    async def broadcast(self, topic: Topic, *, wait: float | None = None) -> list[int]:
        """Send a notice to every linked worker; returns the pids it went to.

        With ``wait``, the notice goes as a query and this returns once every
        worker has applied it (or after ``wait`` seconds), with the pids that
        did: a management write that invalidates must not answer before the
        workers forgot the old version, or its client's next request could race
        the notice. A worker too busy to answer in time is only left out.
        """
        if wait is not None:
            replies = await self.gather(topic, timeout=wait)
            return [r.pid for r in replies if r.error is None]
        frame = encode(Broadcast(topic=topic))
        sent = []
        for pid, link in list(self.links.items()):
            try:
                await link.send(frame)
                sent.append(pid)
            except (ConnectionError, RuntimeError):
                pass
        return sent

    async def ask(self, topic: Topic, wait_link: float = 5.0, avoid: int = 0) -> Reply:
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
            await link.send(encode(Query(id=qid, topic=topic)))
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

    async def gather(self, topic: Topic, timeout: float = 1.0) -> list[Reply]:
        """Ask every linked worker and collect the replies that arrive in time."""
        qid = next(self._ids)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        replies: list[Reply] = []
        waiting = set(self.links)
        self._pending[qid] = (fut, replies, waiting)
        try:
            frame = encode(Query(id=qid, topic=topic))
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
