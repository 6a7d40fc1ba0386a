"""The control worker's Falcon ASGI app: the management API.

It is never bound to a port: request workers forward ``/api/v1/exec/*`` calls to
it over the control socket (see ``bridge``). Endpoints of the reference API that
this version does not serve yet answer 501 with a clear message.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi
import msgspec

from .. import __version__
from ..catalog import instance_name_ok, state_key
from ..errors import BadRequest, MethodNotAllowed, NotFound, NotImplementedYet
from ..home import Home
from ..reference import ENDPOINTS
from ..scriptstore import ScriptStore
from ..shared import SharedStore
from . import auth, errors

HEALTH_PATH = auth.HEALTH_PATH

WorkerPids = Callable[[], Awaitable[list[int]]]


class TokenAuth:
    """With a token configured, every management call but health needs it."""

    def __init__(self, token: str | None) -> None:
        self.check = auth.TokenCheck(token)

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.check.check(req.path, req.get_header("Authorization"))


class Health:
    """Health tells the truth: ``starting`` (503) until every configured request
    worker has linked once, then ``ok`` with the live workers that answered."""

    def __init__(
        self,
        started: float,
        master_pid: int,
        control_pid: int,
        worker_pids: WorkerPids,
        expected_workers: int = 1,
    ) -> None:
        self.started = started
        self.master_pid = master_pid
        self.control_pid = control_pid
        self.worker_pids = worker_pids
        self.expected_workers = expected_workers
        self.up = False  # latched once all workers have linked

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        workers = await self.worker_pids()
        self.up = self.up or len(workers) >= self.expected_workers
        errors.json_response(
            resp,
            {
                "status": "ok" if self.up else "starting",
                "version": __version__,
                "uptime": round(time.time() - self.started, 3),
                "master": self.master_pid,
                "workers": workers,
                "control": self.control_pid,
            },
            status=200 if self.up else 503,
        )
        if not self.up:
            resp.set_header("Retry-After", "1")


class _StateGet(msgspec.Struct, forbid_unknown_fields=False):
    hostname: str
    path: str | None = None


class _StateSet(msgspec.Struct, forbid_unknown_fields=False):
    hostname: str
    value: Any
    path: str | None = None
    merge: bool = False


class _StateClear(msgspec.Struct, forbid_unknown_fields=False):
    hostname: str | None = None
    path: str | None = None
    clearAll: bool = False  # noqa: N815 - the reference's name


async def read_body(req: falcon.asgi.Request, type_: Any) -> Any:
    """Decode a JSON body into ``type_``; every problem is a 400 naming the field."""
    from .api_scripts import decode_json  # the one body decoder (deep nesting is a 400 too)

    raw = await req.stream.read()
    if not raw:
        raise BadRequest("a JSON body is required")
    return decode_json(raw, type_)


class SharedStateAPI:
    """``POST /api/v1/exec/shared-state/get|set|clear``: the scripts' ``shared`` from outside."""

    def __init__(
        self, store: SharedStore, hosts: Any = None, scripts_root: str | None = None
    ) -> None:
        self.store = store
        self.hosts = hosts
        self.scripts_root = scripts_root

    def _key(self, hostname: str) -> str | None:
        """The document of the instance a hostname maps to (as for script calls);
        None when that instance has no folder. Without a home (unit tests) the
        hostname itself is the key."""
        if self.hosts is None or self.scripts_root is None:
            return hostname
        sub, eid, _ = self.hosts.resolve(hostname)
        if not (instance_name_ok(sub) and instance_name_ok(eid)):
            return None
        if not os.path.isdir(os.path.join(self.scripts_root, sub, eid)):
            return None
        return state_key(sub, eid)

    async def on_post_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await read_body(req, _StateGet)
        key = self._key(body.hostname)
        value = self.store.get(key, body.path, None) if key else None
        exists = key is not None and (
            body.path in (None, "") or self.store.get(key, body.path, _ABSENT) is not _ABSENT
        )
        errors.json_response(
            resp,
            {
                "success": True,
                "hostname": body.hostname,
                "path": body.path or "",
                "value": value,
                "exists": exists,
            },
        )

    async def on_post_set(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await read_body(req, _StateSet)
        key = self._key(body.hostname)
        if key is None:
            raise NotFound(
                f"No instance for hostname {body.hostname!r}: shared state belongs to an "
                "existing instance",
                hostname=body.hostname,
            )
        if body.merge:
            value = self.store.merge(key, body.path, body.value)
        else:
            value = self.store.set(key, body.path, body.value)
        errors.json_response(
            resp,
            {
                "success": True,
                "hostname": body.hostname,
                "path": body.path or "",
                "value": value,
                "merged": body.merge,
            },
        )

    async def on_post_clear(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await read_body(req, _StateClear)
        if body.clearAll:
            count = self.store.clear(None)
            return errors.json_response(
                resp, {"success": True, "cleared": "all", "hostnames": count}
            )
        if not body.hostname:
            raise BadRequest("hostname is required unless clearAll is true")
        key = self._key(body.hostname)
        if body.path:
            removed = self.store.delete(key, body.path) if key else False
            return errors.json_response(
                resp,
                {"success": True, "hostname": body.hostname, "path": body.path, "cleared": removed},
            )
        count = self.store.clear(key) if key else 0
        errors.json_response(
            resp, {"success": True, "hostname": body.hostname, "cleared": count > 0}
        )


_ABSENT = object()


def _validator() -> Any:
    """The write pipeline's checks (syntax, static, dependencies, magic comments)."""
    try:
        from ..validation import validate_script
    except ImportError:  # pragma: no cover - the module is part of the kit
        return None

    def check(code: str, folder: str) -> dict[str, Any]:
        return validate_script(code, script_dir=folder)

    return check


def _template_regex(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(path)) + "$")


_PLANNED = [
    (method, _template_regex(path), path)
    for method, path, _, _ in ENDPOINTS
    if path.startswith("/api/")
]


async def _unknown(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any) -> None:
    path = req.path
    allowed = [method for method, rx, _ in _PLANNED if rx.match(path)]
    if req.method in allowed:
        raise NotImplementedYet(
            f"{req.method} {path} is not implemented in this version yet", path=path
        )
    if allowed:
        raise MethodNotAllowed(
            f"Method {req.method} not allowed on {path}",
            headers={"Allow": ", ".join(sorted(set(allowed)))},
        )
    raise NotFound(f"Unknown management endpoint: {req.method} {path}", path=path)


class OpenAPIDoc:
    """``GET /openapi.json`` and ``/openapi.yaml``: the kit's own API description."""

    def __init__(self) -> None:
        self._json: bytes | None = None
        self._yaml: bytes | None = None

    def _build(self) -> None:
        import yaml

        from ..openapi import document

        doc = document()
        self._json = msgspec.json.encode(doc)
        self._yaml = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()

    async def on_get_json(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._json is None:
            self._build()
        resp.content_type = "application/json"
        resp.data = self._json

    async def on_get_yaml(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self._yaml is None:
            self._build()
        resp.content_type = "application/yaml"
        resp.data = self._yaml


def create_management(
    *,
    started: float,
    master_pid: int,
    control_pid: int,
    worker_pids: WorkerPids,
    expected_workers: int = 1,
    token: str | None = None,
    shared: SharedStore | None = None,
    home: Home | None = None,
    host_pattern: str | None = None,
    invoke: Any = None,
) -> falcon.asgi.App:
    app = falcon.asgi.App(middleware=[TokenAuth(token)])
    errors.install(app)
    app.add_route(
        HEALTH_PATH, Health(started, master_pid, control_pid, worker_pids, expected_workers)
    )
    if shared is not None:
        from .scripts import HostMap

        state = SharedStateAPI(
            shared,
            (HostMap(host_pattern) if host_pattern else HostMap()) if home else None,
            home.scripts if home else None,
        )
        app.add_route("/api/v1/exec/shared-state/get", state, suffix="get")
        app.add_route("/api/v1/exec/shared-state/set", state, suffix="set")
        app.add_route("/api/v1/exec/shared-state/clear", state, suffix="clear")
    if home is not None:
        from . import api_scripts
        from .scripts import HostMap

        hosts = HostMap(host_pattern) if host_pattern else HostMap()
        store = ScriptStore(home, validator=_validator())
        scripts_api = api_scripts.register(app, home, store, hosts)
        from . import api_magic

        api_magic.register(app, scripts_api, store)
        from . import api_routes

        api_routes.register(app, scripts_api, home, invoke)
        from . import api_templates

        api_templates.register(app, scripts_api, store)
    from . import api_validate

    api_validate.register(app)
    app.add_sink(_unknown, prefix=r"/api/v1/exec(/|$)")
    doc = OpenAPIDoc()
    app.add_route("/openapi.json", doc, suffix="json")
    app.add_route("/openapi.yaml", doc, suffix="yaml")
    return app
