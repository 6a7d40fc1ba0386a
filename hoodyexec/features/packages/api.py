"""Management API: ``dependencies/*`` and ``package/*``.

Installs answer one JSON report, or — when the client asks for
``text/event-stream`` — ``progress`` events (the installer's own lines) and a
final ``result`` event (or ``error``). An install that has started finishes even
if the client leaves: the set is swapped and the project file written either way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi
import msgspec

from hoodyexec.errors import BadRequest, HoodyError
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.ipc.protocol import PackagesChanged

from . import project
from .cluster import PackageSync
from .installer import OnLine
from .schemas import (
    BUNDLED,
    CHECK,
    COMPARE,
    INIT,
    INSTALL,
    PACKAGE_INSTALL,
    PIN,
    READ,
    UPDATE,
    DependenciesCheck,
    DependenciesInstall,
    PackageCompare,
    PackageInit,
    PackageInstall,
    PackagePin,
    PackageUpdate,
)
from .service import Options, PackageService, Plan
from .specs import from_mapping, parse_many

_encode = msgspec.json.Encoder().encode


def _json_object(value: str | dict[str, Any] | list[str], field: str) -> Any:
    """The reference sends objects as JSON text; accept both."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        raise BadRequest(f"{field} must be an object or its JSON text", field=field) from None
    if not isinstance(decoded, dict | list):
        raise BadRequest(f"{field} must be an object or its JSON text", field=field)
    return decoded


def _names(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return [str(v) for v in value]


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


class PackagesAPI:
    def __init__(self, service: PackageService) -> None:
        self.service = service
        self._running: set[asyncio.Task[dict[str, Any]]] = set()
        # Across nodes: told after every change of packages (cluster.PackageSync).
        self.after_change: Callable[[], Awaitable[None]] | None = None

    async def _changed(self) -> None:
        if self.after_change is not None:
            await self.after_change()

    async def _execute(self, plan: Plan, on_line: OnLine | None) -> dict[str, Any]:
        report = await self.service.execute(plan, on_line)
        await self._changed()
        return report

    async def _respond(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, plan: Plan
    ) -> None:
        """Execute a taken plan: one JSON report, or a stream of events."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        stream = "text/event-stream" in (req.get_header("Accept") or "")
        on_line: OnLine | None = queue.put_nowait if stream else None
        task = asyncio.ensure_future(self._execute(plan, on_line))
        self._running.add(task)  # runs to the end even if the caller leaves
        task.add_done_callback(self._running.discard)
        if not stream:
            report = await asyncio.shield(task)
            errors.json_response(resp, report, 200 if report["success"] else 422)
            return
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.stream = self._events(task, queue)

    @staticmethod
    async def _events(
        task: asyncio.Future[dict[str, Any]], queue: asyncio.Queue[str]
    ) -> AsyncIterator[bytes]:
        yield _sse("start", {"pending": True})
        while not (task.done() and queue.empty()):
            getter: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getter, task}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _sse("progress", {"line": getter.result()})
            else:
                getter.cancel()
        try:
            report = task.result()
        except HoodyError as exc:
            yield _sse("error", {"status": exc.status, **exc.to_dict()})
        else:
            yield _sse("result", {"status": 200 if report["success"] else 422, **report})

    async def check(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: DependenciesCheck, _: None
    ) -> None:
        modules = _names(body.modules)
        if not body.code and not modules:
            raise BadRequest("code or modules is required")
        errors.json_response(resp, self.service.check(body.code, modules))

    async def install(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: DependenciesInstall,
        _: None,
    ) -> None:
        specs = parse_many(body.modules, allow_urls=self.service.options.allow_urls)
        if not specs:
            raise BadRequest("modules is required", field="modules")
        await self._respond(req, resp, self.service.plan(specs, force=body.force))

    async def bundled(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: None, _: None
    ) -> None:
        errors.json_response(resp, self.service.bundled())

    async def package_install(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: PackageInstall, _: None
    ) -> None:
        if body.packages:
            specs = parse_many(body.packages, allow_urls=self.service.options.allow_urls)
            plan = self.service.plan(specs, force=body.force, save=body.save, dev=body.dev)
        else:
            plan = self.service.plan_sync(dev=body.dev, force=body.force)
        await self._respond(req, resp, plan)

    async def init(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: PackageInit, _: None
    ) -> None:
        path = self.service.home.project
        created = project.init(
            path,
            name=body.name,
            version=body.version,
            description=body.description,
            force=body.force,
        )
        if not created:
            raise HoodyError(
                "pyproject.toml already exists (force: true resets its name, version and "
                "description and keeps the rest)",
                status=409,
            )
        proj = project.read(path)
        assert proj is not None
        await self._changed()
        errors.json_response(resp, {"success": True, "file": "pyproject.toml", **proj.to_json()})

    async def read(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: None, _: None
    ) -> None:
        proj = project.describe(project.require(self.service.home.project))
        errors.json_response(resp, {"success": True, "file": "pyproject.toml", **proj.to_json()})

    async def update(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: PackageUpdate, _: None
    ) -> None:
        path = self.service.home.project
        doc = project.require(path)
        changes: dict[str, Any] = {}
        if body.dependencies is not None:
            deps = _json_object(body.dependencies, "dependencies")
            allow = self.service.options.allow_urls
            specs = (
                from_mapping(deps, allow_urls=allow)
                if isinstance(deps, dict)
                else parse_many(deps, allow_urls=allow)
            )
            project.declare(doc, specs, dev=body.dev)
            changes["dependencies"] = [s.text for s in specs]
        if body.remove is not None:
            changes["removed"] = project.undeclare(doc, _names(body.remove))
        if body.scripts is not None:
            scripts = _json_object(body.scripts, "scripts")
            if not isinstance(scripts, dict):
                raise BadRequest("scripts must be an object", field="scripts")
            project.set_scripts(doc, scripts)
            changes["scripts"] = sorted(scripts)
        if body.metadata is not None:
            changes["metadata"] = project.set_metadata(doc, body.metadata)
        try:
            described = project.describe(doc)  # what was set must read back
        except project.ProjectFileError as exc:
            raise BadRequest(exc.message) from None
        project.save(path, doc)
        await self._changed()
        errors.json_response(
            resp,
            {"success": True, "file": "pyproject.toml", "changes": changes, **described.to_json()},
        )

    async def pin(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: PackagePin, _: None
    ) -> None:
        report = await self.service.pin(_names([str(p) for p in body.packages]))
        await self._changed()
        errors.json_response(resp, report)

    async def compare(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: PackageCompare, _: None
    ) -> None:
        declared = None
        if body.dependencies is not None:
            allow = self.service.options.allow_urls
            specs = (
                from_mapping(body.dependencies, allow_urls=allow)
                if isinstance(body.dependencies, dict)
                else parse_many(body.dependencies, allow_urls=allow)
            )
            declared = [s.text for s in specs]
        errors.json_response(resp, self.service.compare(declared))


def _announcer(ctx: Context) -> Callable[[list[str]], Awaitable[None]] | None:
    broadcast = ctx.broadcast
    if broadcast is None:
        return None

    async def announce(changed: list[str]) -> None:
        await broadcast(PackagesChanged(changed))

    return announce


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    settings = ctx.settings
    options = (
        Options(
            installer=settings.packages_installer,
            timeout=float(settings.packages_timeout),
            allow_urls=settings.packages_allow_urls,
        )
        if settings is not None
        else Options()
    )
    service = PackageService(
        ctx.home, options, announce=_announcer(ctx), check_code=ctx.check_dependencies
    )
    api = PackagesAPI(service)
    if ctx.bus is not None and ctx.node is not None:  # a shared state backend
        sync = PackageSync(service, ctx.bus.replica, ctx.bus, ctx.node)
        ctx.services.append(sync)
        ctx.readiness["packages"] = sync.status
        api.after_change = sync.changed
    ctx.route(CHECK, api.check)
    ctx.route(INSTALL, api.install)
    ctx.route(BUNDLED, api.bundled)
    ctx.route(COMPARE, api.compare)
    ctx.route(INIT, api.init)
    ctx.route(PACKAGE_INSTALL, api.package_install)
    ctx.route(PIN, api.pin)
    ctx.route(READ, api.read)
    ctx.route(UPDATE, api.update)
