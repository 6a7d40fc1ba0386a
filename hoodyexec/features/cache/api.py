"""Management API: ``cache/clear``."""

from __future__ import annotations

import asyncio

import falcon.asgi

from hoodyexec.engine.catalog import state_key
from hoodyexec.errors import BadRequest
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.ipc.protocol import CacheCleared, ClearCache

from .schemas import CLEAR, CacheClear

DEPRECATED = (
    "scriptPath-based clear is not supported: the compiled cache is kept per hostname. "
    "Use hostname or clearAll=true instead."
)
# Seconds to wait for every worker's report; a worker whose loop is held
# longer (a long inline script) is reported as not answering.
WAIT = 2.0


class Cache:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def clear(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: CacheClear, _: None
    ) -> None:
        if body.scriptPath is not None:
            raise BadRequest(DEPRECATED, field="scriptPath")
        hostname = None if body.clearAll else body.hostname or req.get_header("Host") or ""
        instance = None
        if hostname is not None:
            sub, eid, hostname = self.ctx.hosts.resolve(hostname)
            instance = f"{sub}/{eid}"
        replies = []
        if (body.clearVm or body.clearState) and self.ctx.gather is not None:
            topic = ClearCache(
                hostname=hostname, clear_vm=body.clearVm, clear_state=body.clearState
            )
            replies = await self.ctx.gather(topic, WAIT)
        cleared = [r.answer for r in replies if isinstance(r.answer, CacheCleared)]
        workers: list[dict[str, object]] = [
            {"pid": c.pid, "instances": c.instances, "scripts": c.scripts} for c in cleared
        ]
        workers += [
            {"pid": r.pid, "error": r.error or "no answer"}
            for r in replies
            if not isinstance(r.answer, CacheCleared)
        ]
        state_cleared = 0
        if body.clearState and self.ctx.shared is not None:
            key = None if instance is None else state_key(*instance.split("/"))
            state_cleared = await asyncio.to_thread(self.ctx.shared.clear, key)
        errors.json_response(
            resp,
            {
                "success": True,
                "hostname": hostname,
                "instance": instance or "*",
                "clearedVm": body.clearVm or body.clearState,
                "clearedState": body.clearState,
                "stateDocuments": state_cleared,
                "workers": workers,
                "scripts": sum(c.scripts for c in cleared),
            },
        )


def register(app: FalconApp, ctx: Context) -> None:
    ctx.route(CLEAR, Cache(ctx).clear)
