"""The control worker process: management API, link hub, package installs and
the scheduler.

It is forked and reaped by the master (``workers.master.HoodyArbiter``). The
object is built in the master and touches no process state there; ``run`` opens
the database, the control socket and the event loop after fork.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

from hoodyexec.config import Settings
from hoodyexec.engine import sitepath
from hoodyexec.errors import HoodyError
from hoodyexec.home import Home
from hoodyexec.http.context import Service
from hoodyexec.http.management import create_management
from hoodyexec.ipc.hub import ControlServer
from hoodyexec.ipc.protocol import Invoke, InvokeResult, Status, Topic, WorkerStatus
from hoodyexec.storage import sqlite
from hoodyexec.storage.backends import SqliteBackend, open_backend
from hoodyexec.storage.cluster import HEARTBEAT, Node, NodeRegistry, node_id

log = logging.getLogger("hoodyexec.control")

BOOT_ERROR = 3
# Seconds a management write waits for every worker to apply its Invalidate;
# a worker whose loop is held longer (a long inline script) is not waited for.
INVALIDATE_WAIT = 1.0


class ControlBootError(Exception):
    """The control worker could not start; the master must not respawn it."""


class ControlWorker:
    def __init__(
        self,
        settings: Settings,
        home: Home,
        *,
        age: int,
        master_pid: int,
        started: float,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.heartbeat = heartbeat  # touches the master's heartbeat file
        self.settings = settings
        self.home = home
        self.age = age
        self.master_pid = master_pid
        self.started = started
        self.pid = 0
        self._stop: asyncio.Event | None = None
        self._graceful = True

    # -- entry point (after fork) ---------------------------------------------
    def run(self) -> None:
        self.pid = os.getpid()
        for sig in (
            signal.SIGHUP,
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGUSR2,
            signal.SIGTTIN,
            signal.SIGTTOU,
            signal.SIGWINCH,
            signal.SIGCHLD,
        ):
            signal.signal(sig, signal.SIG_DFL)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, True)
        loop.add_signal_handler(signal.SIGHUP, self._request_stop, True)
        loop.add_signal_handler(signal.SIGINT, self._request_stop, False)
        loop.add_signal_handler(signal.SIGQUIT, self._request_stop, False)

        services: list[Service] = []
        try:
            sitepath.activate(self.home.site)  # validation sees kit-local packages
            backend = open_backend(self.settings.state_url, self.home.root)
            conn = None
            if isinstance(backend, SqliteBackend):
                conn = sqlite.connect(backend.path)
                sqlite.migrate(conn)
            node = node_id(self.home.root, self.settings.bind) if backend.shared else None
            registry = backend.nodes()
            server = ControlServer(self.home.control_socket)

            async def invoke(call: Invoke, avoid: int = 0) -> InvokeResult:
                reply = await server.ask(call, avoid=avoid)
                if reply.error is not None or not isinstance(reply.answer, InvokeResult):
                    raise HoodyError(reply.error or "no answer", status=reply.code or 500)
                return reply.answer

            async def worker_pids() -> list[int]:
                replies = await server.gather(Status(), timeout=0.5)
                return [r.pid for r in replies if isinstance(r.answer, WorkerStatus)]

            async def broadcast(topic: Topic) -> list[int]:
                return await server.broadcast(topic, wait=INVALIDATE_WAIT)

            server.app = create_management(
                started=self.started,
                master_pid=self.master_pid,
                control_pid=self.pid,
                worker_pids=worker_pids,
                expected_workers=self.settings.workers,
                token=self.settings.token,
                shared=backend.store(),
                backend=backend,
                node=node,
                home=self.home,
                host_pattern=self.settings.host_pattern,
                invoke=invoke,
                broadcast=broadcast,
                settings=self.settings,
                services=services,
                gather=server.gather,
                ask=server.ask,
            )
            await server.start()
            for service in services:  # the scheduler
                await service.start()
        except Exception as exc:
            raise ControlBootError(str(exc)) from exc
        log.info("control worker %s ready on %s", self.pid, self.home.control_socket)

        watchdog = loop.create_task(self._watch_master())
        beat = loop.create_task(self._beat())
        member = None
        if registry is not None and node is not None:
            member = loop.create_task(self._node_beat(registry, node))
        try:
            await self._stop.wait()
        finally:
            watchdog.cancel()
            beat.cancel()
            if member is not None and registry is not None and node is not None:
                member.cancel()
                await self._leave(registry, node)
            drain = self.settings.graceful_timeout if self._graceful else 0.0
            for service in services:
                try:
                    await service.stop(drain)
                except Exception:  # noqa: BLE001 - stopping goes on
                    log.exception("stopping %s failed", type(service).__name__)
            await server.close(
                drain_timeout=self.settings.graceful_timeout if self._graceful else 0.0
            )
            if conn is not None:
                conn.close()
        log.info("control worker %s stopped", self.pid)

    def _request_stop(self, graceful: bool) -> None:
        self._graceful = self._graceful and graceful
        assert self._stop is not None
        self._stop.set()

    async def _beat(self) -> None:
        # Ready once the first beat lands; then one per second while the loop
        # turns. A loop that stops turning stops the beats and the master
        # replaces this process (gunicorn's ``timeout``).
        if self.heartbeat is None:
            return
        while True:
            self.heartbeat()
            await asyncio.sleep(1.0)

    async def _node_beat(self, registry: NodeRegistry, node: str) -> None:
        """Register this node in the shared backend, then refresh it every
        ``HEARTBEAT`` seconds; an outage is logged once, and the beats go on."""
        host = socket.gethostname()
        failing = False
        while True:
            me = Node(node, self.settings.bind, host, self.master_pid, self.started, time.time())
            try:
                await asyncio.to_thread(registry.beat, me)
                if failing:
                    log.info("node %s registered again in the state backend", node)
                failing = False
            except HoodyError as exc:
                if not failing:
                    log.error("node %s: heartbeat failed: %s %s", node, exc, exc.extra)
                failing = True
            await asyncio.sleep(HEARTBEAT)

    async def _leave(self, registry: NodeRegistry, node: str) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(registry.leave, node), 2.0)
        except (HoodyError, TimeoutError) as exc:
            log.warning("node %s: could not leave the registry: %s", node, exc)

    async def _watch_master(self) -> None:
        # If the master dies without telling us, do not linger as an orphan.
        while True:
            await asyncio.sleep(0.5)
            if os.getppid() != self.master_pid:
                log.warning("master %s is gone; control worker exiting", self.master_pid)
                self._request_stop(False)
                return
