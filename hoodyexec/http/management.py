"""The control worker's Falcon ASGI app: the management API.

It is never bound to a port: request workers forward ``/api/v1/exec/*`` calls to
it over the control socket (see ``bridge``). Endpoints of the reference API that
this version does not serve yet answer 501 with a clear message.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import falcon
import falcon.asgi

from .. import __version__
from ..errors import MethodNotAllowed, NotFound, NotImplementedYet, Unauthorized
from ..reference import ENDPOINTS
from . import errors

HEALTH_PATH = "/api/v1/exec/health"

WorkerPids = Callable[[], Awaitable[list[int]]]


class TokenAuth:
    """With a token configured, every management call but health needs it."""

    def __init__(self, token: str | None) -> None:
        self.token = token.encode() if token else None

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self.token is None or req.path == HEALTH_PATH:
            return
        header = req.get_header("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode(), self.token
        ):
            raise Unauthorized(
                "missing or invalid management token (Authorization: Bearer <token>)"
            )


class Health:
    def __init__(
        self, started: float, master_pid: int, control_pid: int, worker_pids: WorkerPids
    ) -> None:
        self.started = started
        self.master_pid = master_pid
        self.control_pid = control_pid
        self.worker_pids = worker_pids

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        errors.json_response(
            resp,
            {
                "status": "ok",
                "version": __version__,
                "uptime": round(time.time() - self.started, 3),
                "master": self.master_pid,
                "workers": await self.worker_pids(),
                "control": self.control_pid,
            },
        )


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


async def _openapi(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any) -> None:
    raise NotImplementedYet(
        "the kit's OpenAPI document is not implemented in this version yet", path=req.path
    )


def create_management(
    *,
    started: float,
    master_pid: int,
    control_pid: int,
    worker_pids: WorkerPids,
    token: str | None = None,
) -> falcon.asgi.App:
    app = falcon.asgi.App(middleware=[TokenAuth(token)])
    errors.install(app)
    app.add_route(HEALTH_PATH, Health(started, master_pid, control_pid, worker_pids))
    app.add_sink(_unknown, prefix=r"/api/v1/exec(/|$)")
    app.add_sink(_openapi, prefix=r"/openapi\.(json|yaml)$")
    return app
