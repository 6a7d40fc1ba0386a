"""The control worker's Falcon ASGI app: the management API.

It is never bound to a port: request workers forward ``/api/v1/exec/*`` calls to
it over the control socket (see ``ipc/bridge.py``). The app is assembled from
the features under ``hoodyexec/features/``; any other path under the API prefix
answers a JSON 404 (405 with ``Allow`` for a reference path's other methods).
"""

from __future__ import annotations

import re
from typing import Any

import falcon
import falcon.asgi

from hoodyexec.config import Settings
from hoodyexec.engine.hosts import HostMap
from hoodyexec.engine.store import ScriptStore
from hoodyexec.errors import MethodNotAllowed, NotFound
from hoodyexec.features.ai import api as ai
from hoodyexec.features.cache import api as cache
from hoodyexec.features.cluster import api as cluster
from hoodyexec.features.logs import api as logs
from hoodyexec.features.magic import api as magic
from hoodyexec.features.monitor import api as monitor
from hoodyexec.features.openapi import api as openapi
from hoodyexec.features.openapi.reference import ENDPOINTS
from hoodyexec.features.packages import api as packages
from hoodyexec.features.routes import api as routes
from hoodyexec.features.schedules import api as schedules
from hoodyexec.features.scripts import api as scripts
from hoodyexec.features.sdk import api as sdk
from hoodyexec.features.state import api as state
from hoodyexec.features.system import api as system
from hoodyexec.features.templates import api as templates
from hoodyexec.features.user_openapi import api as user_openapi
from hoodyexec.features.validate import api as validate
from hoodyexec.home import Home
from hoodyexec.http import auth, endpoint, errors
from hoodyexec.http.context import Ask, Broadcast, Context, Gather, Invoke, Service, WorkerPids
from hoodyexec.ipc.bridge import WORKER_PID
from hoodyexec.storage.backends import Backend
from hoodyexec.storage.base import SharedStore
from hoodyexec.storage.sync import ClusterBus

HEALTH_PATH = auth.HEALTH_PATH

# Each capability is one folder under features/; its register(app, ctx) is all
# the management app knows of it.
FEATURES = (
    ai,
    system,
    cache,
    state,
    scripts,
    magic,
    routes,
    templates,
    validate,
    packages,
    schedules,
    logs,
    monitor,
    sdk,
    user_openapi,
    openapi,
    cluster,
)


class TokenAuth:
    """With a token configured, every management call but health needs it."""

    def __init__(self, token: str | None) -> None:
        self.check = auth.TokenCheck(token)

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.scope.get(WORKER_PID) == 0:
            # Not forwarded by a request worker: a local caller on the 0600
            # control socket (the ``hoodyexec status|restart|...`` commands),
            # who is the kit's user already.
            return
        self.check.check(req.path, req.get_header("Authorization"))


def _validator() -> Any:
    """The write pipeline's checks (syntax, static, dependencies, magic comments)."""
    try:
        from hoodyexec.features.validate.service import validate_script
    except ImportError:  # pragma: no cover - the module is part of the kit
        return None

    def check(code: str, folder: str, rel: str) -> dict[str, Any]:
        return validate_script(code, script_dir=folder, path=rel, normalize=True)

    return check


def _dependency_check() -> Any:
    from hoodyexec.features.validate.service import check_dependencies

    return check_dependencies


def _template_regex(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(path)) + "$")


_REFERENCE = [
    (method, _template_regex(path)) for method, path, _, _ in ENDPOINTS if path.startswith("/api/")
]


async def _unknown(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any) -> None:
    path = req.path
    allowed = {method for method, rx in _REFERENCE if rx.match(path)}
    if allowed and req.method not in allowed:
        raise MethodNotAllowed(
            f"Method {req.method} not allowed on {path}",
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    raise NotFound(f"Unknown management endpoint: {req.method} {path}", path=path)


def create_management(
    *,
    started: float,
    master_pid: int,
    control_pid: int,
    worker_pids: WorkerPids,
    expected_workers: int = 1,
    token: str | None = None,
    shared: SharedStore | None = None,
    backend: Backend | None = None,
    node: str | None = None,
    home: Home | None = None,
    host_pattern: str | None = None,
    invoke: Invoke | None = None,
    broadcast: Broadcast | None = None,
    settings: Settings | None = None,
    services: list[Service] | None = None,
    gather: Gather | None = None,
    ask: Ask | None = None,
) -> endpoint.FalconApp:
    """The management app: token check, then every feature's routes."""
    ctx = Context(
        started=started,
        master_pid=master_pid,
        control_pid=control_pid,
        worker_pids=worker_pids,
        expected_workers=expected_workers,
        home=home,
        store=ScriptStore(home, validator=_validator()) if home is not None else None,
        shared=shared,
        backend=backend,
        node=node,
        hosts=HostMap(host_pattern) if host_pattern else HostMap(),
        invoke=invoke,
        broadcast=broadcast,
        settings=settings,
        gather=gather,
        ask=ask,
        check_dependencies=_dependency_check(),
    )
    replica = backend.replica() if backend is not None and node is not None else None
    if replica is not None and services is not None:  # the notices start first
        ctx.bus = ClusterBus(replica, node or "")
        ctx.services.append(ctx.bus)
    app = falcon.asgi.App(middleware=[TokenAuth(token)])
    errors.install(app)
    for feature in FEATURES:
        feature.register(app, ctx)
    if services is not None:  # the control worker starts and stops them
        services.extend(ctx.services)
    endpoint.mount(app, ctx.routes)
    # falcon types a sink's resp as Response | None (None only for a WebSocket,
    # which never reaches this app): _unknown takes a Response.
    app.add_sink(_unknown, prefix=r"/api/v1/exec(/|$)")  # type: ignore[arg-type]
    return app
