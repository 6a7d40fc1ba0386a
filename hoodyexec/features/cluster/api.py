"""Scripts across nodes (``service.py``): wired in only with a shared state
backend; it serves no endpoint of its own. It publishes every management
change of scripts (``Context.snapshot``), applies the other nodes' changes,
holds health at ``starting`` until this node's tree is in sync, and lists each
node's progress in health's ``nodes``."""

from __future__ import annotations

import time
from typing import Any

from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp

from .service import ScriptSync


def register(app: FalconApp, ctx: Context) -> None:
    backend, bus = ctx.backend, ctx.bus
    if ctx.home is None or backend is None or bus is None or ctx.node is None:
        return
    registry = backend.nodes()
    replica = bus.replica

    def live_nodes() -> list[str]:
        return [] if registry is None else [n.id for n in registry.nodes(time.time())]

    async def tell(scope: Any, paths: tuple[str, ...]) -> None:
        await ctx.tell(scope, *paths)

    sync = ScriptSync(ctx.home, replica, bus, ctx.node, tell, live_nodes)
    ctx.services.append(sync)
    ctx.snapshot = sync.snapshot
    ctx.readiness["scripts"] = sync.status

    def progress() -> dict[str, dict[str, Any]]:
        return {
            node: {"scripts": p.scripts, "lock": p.lock} for node, p in replica.progress().items()
        }

    ctx.facts["node-sync"] = progress
