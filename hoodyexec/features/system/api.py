"""System: health, ``system/restart``, ``system/restart-status``, drain.

Restarts and drain are files under ``<home>/run`` (``restart.py``): the master
carries a restart out, and both outlive the control worker that took them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import falcon.asgi

from hoodyexec import __version__, clock
from hoodyexec.errors import ControlUnavailable, HoodyError
from hoodyexec.http import errors
from hoodyexec.http.context import Context, Readiness, WorkerPids
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.ipc import protocol

from . import restart
from .schemas import DRAIN, HEALTH, RESTART, RESTART_STATUS, UNDRAIN, SystemDrain, SystemRestart

Drained = Callable[[], float | None]
# The live nodes of a cluster sharing the state backend (as JSON objects).
Nodes = Callable[[], list[dict[str, object]]]


class Health:
    """Health tells the truth: ``starting`` (503) until every configured request
    worker has linked once, ``draining`` (503) while taken out of rotation, else
    ``ok`` with the live workers that answered. With a shared state backend,
    ``nodes`` lists the cluster's live nodes (``null`` and ``nodesError`` while
    the backend cannot be reached: this node still serves)."""

    def __init__(
        self,
        started: float,
        master_pid: int,
        control_pid: int,
        worker_pids: WorkerPids,
        expected_workers: int = 1,
        drained_since: Drained | None = None,
        bind: str | None = None,
        nodes: Nodes | None = None,
        readiness: dict[str, Readiness] | None = None,
    ) -> None:
        self.readiness = readiness if readiness is not None else {}
        self.bind = bind
        self.nodes = nodes
        self.started = started
        self.master_pid = master_pid
        self.control_pid = control_pid
        self.worker_pids = worker_pids
        self.expected_workers = expected_workers
        self.drained_since = drained_since
        self.up = False  # latched once all workers have linked

    async def __call__(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        workers = await self.worker_pids()
        self.up = self.up or len(workers) >= self.expected_workers
        since = self.drained_since() if self.drained_since else None
        status = "ok" if self.up else "starting"
        more: dict[str, object] = {}
        for ready in self.readiness.values():  # across nodes: in sync yet?
            done, facts = ready()
            more.update(facts)
            if not done:
                status = "starting"
        if since is not None:
            status = "draining"
        body: dict[str, object] = {
            "status": status,
            "version": __version__,
            "bind": self.bind,
            "uptime": round(time.time() - self.started, 3),
            "master": self.master_pid,
            "workers": workers,
            "control": self.control_pid,
        }
        if since is not None:
            body["drainingSince"] = clock.iso(since) if since else None
        body.update(more)
        if self.nodes is not None:
            try:
                body["nodes"] = await asyncio.wait_for(asyncio.to_thread(self.nodes), 5.0)
            except (HoodyError, TimeoutError) as exc:
                body["nodes"] = None
                body["nodesError"] = str(exc) or "state backend unavailable"
        errors.json_response(resp, body, status=200 if status == "ok" else 503)
        if status == "starting":
            resp.set_header("Retry-After", "1")


class System:
    def __init__(self, ctx: Context, files: restart.RestartFiles) -> None:
        self.ctx = ctx
        self.files = files
        self.lock = asyncio.Lock()

    async def restart(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: SystemRestart,
        _: None,
    ) -> None:
        master = self.ctx.master_pid
        if master <= 1 or not clock.pid_alive(master):  # never signal init
            raise ControlUnavailable("no master process to restart")
        request = restart.Request(
            reason=body.reason,
            requested_at=time.time(),
            graceful=body.graceful,
            drain_timeout_ms=body.drainTimeoutMs,
        )
        async with self.lock:
            try:
                await asyncio.to_thread(self.files.ask, request, master)
            except restart.Conflict as exc:
                raise HoodyError(str(exc), status=409) from None
            try:
                os.kill(master, signal.SIGHUP)
            except OSError as exc:
                self.files.withdraw()
                raise ControlUnavailable(f"cannot signal the master: {exc.strerror}") from None
        cap = self.ctx.settings.graceful_timeout * 1000 if self.ctx.settings else None
        drain = body.drainTimeoutMs if body.graceful else 0
        errors.json_response(
            resp,
            {
                "success": True,
                "message": "Restart initiated",
                "reason": body.reason,
                "graceful": body.graceful,
                "drainTimeoutMs": body.drainTimeoutMs,
                # The old workers' own graceful-timeout bounds the drain too.
                "effectiveDrainTimeoutMs": min(drain, cap) if cap is not None else drain,
                "requestedAt": clock.iso(request.requested_at),
                "statusUrl": RESTART_STATUS.path,
            },
            status=202,
        )

    async def restart_status(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        status = await asyncio.to_thread(self.files.status, self.ctx.master_pid)
        since = self.files.drained_since()
        status["draining"] = since is not None
        errors.json_response(resp, {"success": True, **status})

    async def drain(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: SystemDrain,
        _: None,
    ) -> None:
        since = await asyncio.to_thread(self.files.drain, body.reason)
        began = time.monotonic()
        inflight = await self._inflight()
        if body.wait:
            deadline = began + body.timeoutMs / 1000
            while inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                inflight = await self._inflight()
        errors.json_response(
            resp,
            {
                "success": True,
                "draining": True,
                "since": clock.iso(since) if since else None,
                "inflight": inflight,
                "idle": inflight == 0,
                "waitedMs": round((time.monotonic() - began) * 1000, 1),
            },
        )

    async def undrain(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        was = await asyncio.to_thread(self.files.undrain)
        errors.json_response(resp, {"success": True, "draining": False, "wasDraining": was})

    async def _inflight(self) -> int:
        """Script executions running now. A worker that does not answer in time
        is busy (inline code holds its loop) and counts as one."""
        if self.ctx.gather is None:
            return 0
        replies = await self.ctx.gather(protocol.Status(), 0.5)
        counts = [r.answer.inflight for r in replies if isinstance(r.answer, protocol.WorkerStatus)]
        silent = max(self.ctx.expected_workers - len(counts), 0)
        return sum(counts) + silent


def _nodes(ctx: Context) -> Nodes | None:
    registry = ctx.backend.nodes() if ctx.backend is not None else None
    if registry is None:
        return None

    def live() -> list[dict[str, object]]:
        nodes = [node.to_dict() for node in registry.nodes(time.time())]
        synced = ctx.facts.get("node-sync")  # what each node applied (features/cluster)
        if synced is not None:
            progress = synced()
            for node in nodes:
                held = progress.get(node["id"], {})
                node["scripts"] = held.get("scripts")
                node["lock"] = held.get("lock")
        return nodes

    return live


def register(app: FalconApp, ctx: Context) -> None:
    files = restart.RestartFiles(ctx.home) if ctx.home is not None else None
    ctx.route(
        HEALTH,
        Health(
            ctx.started,
            ctx.master_pid,
            ctx.control_pid,
            ctx.worker_pids,
            ctx.expected_workers,
            files.drained_since if files else None,
            ctx.settings.bind if ctx.settings else None,
            _nodes(ctx),
            ctx.readiness,
        ),
    )
    if files is None:
        return
    system = System(ctx, files)
    ctx.route(RESTART, system.restart)
    ctx.route(RESTART_STATUS, system.restart_status)
    ctx.route(DRAIN, system.drain)
    ctx.route(UNDRAIN, system.undrain)
