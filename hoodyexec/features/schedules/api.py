"""Management API: ``schedules/list|reload|history|trigger``, and the scheduler's
life in the control worker (a ``Context`` service)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import falcon.asgi

from hoodyexec.clock import parse_iso
from hoodyexec.engine.freshness import Watcher
from hoodyexec.engine.store import EXCLUDED, Scope, safe_path
from hoodyexec.errors import BadRequest, ControlUnavailable, Forbidden, NotFound
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.ipc.protocol import Invoke, InvokeResult
from hoodyexec.storage.backends import SqliteBackend

from .ledger import Claims, History
from .registry import Entry, read_entry
from .schemas import (
    HISTORY,
    LIST,
    RELOAD,
    TRIGGER,
    SchedulesHistoryQuery,
    SchedulesReload,
    SchedulesTrigger,
)
from .service import RESCAN_EVERY, Scheduler

log = logging.getLogger("hoodyexec.schedules")
DEBOUNCE = 0.2  # seconds: a burst of file events makes one rescan


class SchedulesService:
    """The scheduler plus what keeps its registry fresh: management changes
    (``ctx.on_change``) and, for edits by any other means, inotify on the scripts
    tree (or a rescan every few seconds without it)."""

    def __init__(self, ctx: Context) -> None:
        assert ctx.home is not None
        self.ctx = ctx
        self.home = ctx.home
        settings = ctx.settings
        self.inotify = settings.inotify if settings is not None else False
        backend = ctx.backend
        shared = backend.ledger(ctx.node) if backend is not None and ctx.node else None
        claims, history = shared or (
            Claims(backend.path if isinstance(backend, SqliteBackend) else self.home.db),
            History(os.path.join(self.home.logs, "schedules")),
        )
        self.scheduler = Scheduler(
            self.home.scripts,
            claims,
            history,
            self._run,
            kit_started=ctx.started,
            catch_up=settings.schedule_catch_up if settings is not None else False,
        )
        self._watcher: Watcher | None = None
        self._pending: set[tuple[str, str]] | None = set()
        self._rescan: asyncio.TimerHandle | None = None
        self._periodic: asyncio.Task[None] | None = None

    async def _run(self, call: Invoke) -> InvokeResult:
        if self.ctx.invoke is None:
            raise ControlUnavailable("no request worker can run scripts here")
        return await self.ctx.invoke(call, 0)

    # -- life --------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.inotify:
            try:
                self._watcher = Watcher(self.home.scripts)
                loop.add_reader(self._watcher.fd, self._on_events)
            except OSError as exc:
                log.warning("schedules: no inotify (%s); rescanning every few seconds", exc)
                self._watcher = None
        await self.scheduler.start()
        if self._watcher is None:
            self._periodic = loop.create_task(self._rescan_periodically())

    async def stop(self, drain: float = 0.0) -> None:
        if self._watcher is not None:
            asyncio.get_running_loop().remove_reader(self._watcher.fd)
            self._watcher.close()
        if self._periodic is not None:
            self._periodic.cancel()
        if self._rescan is not None:
            self._rescan.cancel()
        await self.scheduler.stop(drain)

    async def _rescan_periodically(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_EVERY)
            self.scheduler.rescan()

    # -- freshness -----------------------------------------------------------------
    def changed(self, scope: Scope, paths: tuple[str, ...]) -> None:
        """A management write, move or delete: rescan that instance now."""
        self.scheduler.rescan([(scope.subdomain, scope.exec_id)])

    def _on_events(self) -> None:
        assert self._watcher is not None
        events = self._watcher.changes()
        if events is None:
            self._pending = None  # overflow: everything
        elif self._pending is not None:
            for path, _ in events:
                rel = os.path.relpath(path, self.home.scripts).split(os.sep)
                if len(rel) >= 2 and rel[0] not in (".", ".."):
                    self._pending.add((rel[0], rel[1]))
                else:
                    self._pending = None
                    break
        if self._rescan is None:
            self._rescan = asyncio.get_running_loop().call_later(DEBOUNCE, self._apply_events)

    def _apply_events(self) -> None:
        self._rescan = None
        pending, self._pending = self._pending, set()
        try:
            self.scheduler.rescan(None if pending is None else sorted(pending))
        except Exception:  # noqa: BLE001 - the next event or reload tries again
            log.exception("schedules: rescan failed")

    # -- lookups -----------------------------------------------------------------------
    def key_for(self, req: falcon.asgi.Request, path: str, body: Any = None) -> str:
        """``scriptPath`` → ``sub/eid/rel``: absolute, relative to the scripts folder
        (``default/1/tick.py``), or relative to the instance the call is about."""
        scripts = self.home.scripts
        if os.path.isabs(path):
            real = os.path.realpath(path)
            root = os.path.realpath(scripts)
            if not real.startswith(root + os.sep):
                raise Forbidden(EXCLUDED, path=path)
            return os.path.relpath(real, root).replace(os.sep, "/")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts or "\\" in path or "\x00" in path:
            raise Forbidden(EXCLUDED, path=path)
        if len(parts) >= 3 and "/".join(parts) in self.scheduler.listed:
            return "/".join(parts)
        if len(parts) >= 3 and os.path.isfile(os.path.join(scripts, *parts)):
            if os.path.isdir(os.path.join(scripts, parts[0], parts[1])):
                return "/".join(parts)
        scope = self.ctx.scope(req, body)
        _, rel = safe_path(scope, path)
        return f"{scope.subdomain}/{scope.exec_id}/{rel}"

    def entry(self, key: str) -> Entry:
        sub, _, rest = key.partition("/")
        eid, _, rel = rest.partition("/")
        found = read_entry(self.home.scripts, sub, eid, rel) if rel else None
        if found is None:
            raise NotFound(f"No script with a valid @schedule at {key}", scriptPath=key)
        return found


class SchedulesAPI:
    def __init__(self, service: SchedulesService) -> None:
        self.service = service
        self.scheduler = service.scheduler

    async def list(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, q: None
    ) -> None:
        items = self.scheduler.listing()
        errors.json_response(resp, {"success": True, "schedules": items, "count": len(items)})

    async def reload(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: SchedulesReload, _: None
    ) -> None:
        from . import registry

        found = registry.scan(self.service.home.scripts)
        changes = self.scheduler.diff(found) if body.dry_run else self.scheduler.apply(found)
        errors.json_response(
            resp,
            {
                "success": True,
                "dryRun": body.dry_run,
                **changes,
                "count": len(changes["added"]) + len(changes["kept"]),
            },
        )

    async def history(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        _: None,
        query: SchedulesHistoryQuery,
    ) -> None:
        script = self.service.key_for(req, query.scriptPath) if query.scriptPath else None
        since = parse_iso(query.since) if query.since else None
        entries = self.scheduler.history.read(
            script=script, since=since, limit=query.limit, rotated=query.includeRotated
        )
        errors.json_response(resp, {"success": True, "entries": entries, "count": len(entries)})

    async def trigger(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: SchedulesTrigger, _: None
    ) -> None:
        key = self.service.key_for(req, body.scriptPath, body)
        entry = self.service.entry(key)
        if entry.token and not body.force:
            raise Forbidden(
                f"{key} requires a token (@token): a trigger does not carry one; "
                "send force: true to run it anyway",
                scriptPath=key,
            )
        if entry.route is None:
            raise BadRequest(f"{key} cannot be run: {entry.error}", scriptPath=key)
        outcome = await self.scheduler.trigger(entry)
        errors.json_response(
            resp,
            {
                "success": True,
                "triggered": True,
                "runId": outcome["runId"],
                "executionId": outcome["executionId"],
                "script": key,
                "scriptRel": entry.rel,
                "status": outcome["status"],
                "httpStatus": outcome["httpStatus"],
                "durationMs": outcome["durationMs"],
                "result": outcome["result"],
                **({"error": outcome["error"]} if outcome.get("error") else {}),
            },
        )


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    service = SchedulesService(ctx)
    ctx.on_change.append(service.changed)
    ctx.services.append(service)
    ctx.facts["cron"] = service.scheduler.summary
    api = SchedulesAPI(service)
    ctx.route(LIST, api.list)
    ctx.route(RELOAD, api.reload)
    ctx.route(HISTORY, api.history)
    ctx.route(TRIGGER, api.trigger)
