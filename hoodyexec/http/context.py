"""What the management app's features share: one ``Context``, handed to every
feature's ``register(app, ctx)``.

Features never import each other; what more than one needs (the home, the
scripts store, the Host mapping, shared state, running a script in a request
worker, telling every worker what changed) lives here or below, in ``engine/``
and ``storage/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import falcon.asgi

from hoodyexec.config import Settings
from hoodyexec.engine.hosts import HostMap
from hoodyexec.engine.store import Scope, ScriptStore, pick_scope
from hoodyexec.home import Home
from hoodyexec.http.endpoint import Handler
from hoodyexec.http.spec import Endpoint
from hoodyexec.ipc import protocol
from hoodyexec.storage.backends import Backend
from hoodyexec.storage.base import SharedStore
from hoodyexec.storage.sync import ClusterBus

WorkerPids = Callable[[], Awaitable[list[int]]]
# Run a script in a request worker: (invoke request, pid to avoid) → its answer.
Invoke = Callable[[protocol.Invoke, int], Awaitable[protocol.InvokeResult]]
Gather = Callable[[protocol.Topic, float], Awaitable[list[protocol.Reply]]]
# Ask one linked request worker (ControlServer.ask, round robin): topic → its reply.
Ask = Callable[[protocol.Topic], Awaitable[protocol.Reply]]
# Tell every request worker (ControlServer.broadcast); the pids that applied it.
Broadcast = Callable[[protocol.Topic], Awaitable[list[int]]]
# A change as this node sees it now (read at once) → storing it for the other
# nodes, awaited until they applied it (None: nothing to publish).
Snapshot = Callable[["Scope", tuple[str, ...]], Callable[[], Awaitable[None]] | None]
# Whether this node is ready for traffic as far as one concern goes, and what
# health shows of it.
Readiness = Callable[[], tuple[bool, dict[str, Any]]]

log = logging.getLogger("hoodyexec.management")


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self, drain: float = 0.0) -> None: ...


@dataclass
class Context:
    started: float
    master_pid: int
    control_pid: int
    worker_pids: WorkerPids
    expected_workers: int = 1
    home: Home | None = None
    store: ScriptStore | None = None
    shared: SharedStore | None = None
    # Where state lives (state-url), and this node's id in a cluster sharing it.
    backend: Backend | None = None
    node: str | None = None
    hosts: HostMap = field(default_factory=HostMap)
    invoke: Invoke | None = None
    broadcast: Broadcast | None = None
    settings: Settings | None = None
    # Ask every linked request worker (ControlServer.gather): (topic, timeout) → replies.
    gather: Gather | None = None
    # Ask one request worker (ControlServer.ask): what only user code can tell.
    ask: Ask | None = None
    # Figures a feature offers the others without being imported (the scheduler's
    # "cron" summary for monitor/stats): name → function returning JSON-able data.
    facts: dict[str, Callable[[], Any]] = field(default_factory=dict)
    # The static import check of a script (the validate feature's), for features
    # that need it without importing that feature.
    check_dependencies: Callable[[str], dict[str, Any]] | None = None
    # Every declared endpoint a feature registered, with its handler (in order).
    routes: list[tuple[Endpoint, Handler]] = field(default_factory=list)
    # Told of every management change to scripts (scope, paths), before workers are.
    on_change: list[Callable[[Scope, tuple[str, ...]], None]] = field(default_factory=list)
    # Background work a feature runs in the control worker (the scheduler):
    # started once the control socket serves, stopped before it closes.
    services: list[Service] = field(default_factory=list)
    # Across nodes (a shared state backend only): the notices, the cluster
    # feature's publication of script changes, and what health waits for.
    bus: ClusterBus | None = None
    snapshot: Snapshot | None = None
    readiness: dict[str, Readiness] = field(default_factory=dict)

    async def invalidated(self, scope: Scope, *paths: str) -> None:
        """Files of ``scope`` changed (paths relative to it; none: anything may
        have): tell every worker, and return once they forgot the old versions.

        Called after a write, move or delete has been fsynced. inotify already
        saw it on a local filesystem; this covers where it cannot (network
        filesystems, ``inotify: false``). Several paths make one notice for the
        folder holding them all. The change is done either way, so a failure to
        tell is logged, never the caller's error.

        With a shared state backend the change is also read at once (before
        anything else can run on this loop) and stored for the other nodes;
        this returns once they applied it too (``features/cluster``).
        """
        publish = None
        if self.snapshot is not None:
            try:
                publish = self.snapshot(scope, paths)
            except Exception:  # noqa: BLE001 - the write itself succeeded
                log.exception("could not read a change of %s/%s", scope.subdomain, scope.exec_id)
        await self.tell(scope, *paths)
        if publish is not None:
            try:
                await publish()
            except Exception as exc:  # noqa: BLE001 - the write itself succeeded
                log.error(
                    "could not publish a change of %s/%s to the cluster: %s %s",
                    scope.subdomain,
                    scope.exec_id,
                    exc,
                    getattr(exc, "extra", ""),
                )

    async def tell(self, scope: Scope, *paths: str) -> None:
        """This node's part of ``invalidated``: the change listeners, then every
        request worker (also used for changes that came from other nodes)."""
        for listener in self.on_change:
            try:
                listener(scope, paths)
            except Exception:  # noqa: BLE001 - the write itself succeeded
                log.exception("a change listener failed")
        if self.broadcast is None:
            return
        path = paths[0] if len(paths) == 1 else os.path.commonpath(paths) if paths else None
        try:
            await self.broadcast(protocol.Invalidate(scope.subdomain, scope.exec_id, path))
        except Exception:  # noqa: BLE001 - the write itself succeeded
            log.exception("could not announce a change of %s/%s", scope.subdomain, scope.exec_id)

    def route(self, ep: Endpoint, handler: Handler) -> None:
        """Declare that ``handler`` serves ``ep`` (mounted once every feature registered)."""
        self.routes.append((ep, handler))

    def scope(self, req: falcon.asgi.Request, body: Any = None, query: Any = None) -> Scope:
        """The instance a management call is about: ``execId``/``subdomain`` from
        the query, else the body, else the instance its Host header selects."""
        assert self.home is not None
        sub, eid, _ = self.hosts.resolve(req.get_header("Host") or "")
        return pick_scope(
            self.home,
            req.params if query is None else _scope_fields(query),
            body if body is None or isinstance(body, dict) else _scope_fields(body),
            (sub, eid),
        )


def _scope_fields(fields: Any) -> dict[str, Any]:
    return {
        "execId": getattr(fields, "execId", None),
        "subdomain": getattr(fields, "subdomain", None),
    }
