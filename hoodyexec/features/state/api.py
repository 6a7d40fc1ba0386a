"""Shared state from outside: ``POST /api/v1/exec/shared-state/get|set|clear``."""

from __future__ import annotations

import falcon.asgi

from hoodyexec.engine.catalog import instance_exists, state_key
from hoodyexec.engine.hosts import HostMap
from hoodyexec.errors import BadRequest, NotFound
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.storage.base import SharedStore

from .schemas import CLEAR, GET, SET, StateClear, StateGet, StateSet


class SharedStateAPI:
    """``POST /api/v1/exec/shared-state/get|set|clear``: the scripts' ``shared`` from outside."""

    def __init__(
        self, store: SharedStore, hosts: HostMap | None = None, scripts_root: str | None = None
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
        return state_key(sub, eid) if instance_exists(self.scripts_root, sub, eid) else None

    async def get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: StateGet, _: None
    ) -> None:
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

    async def set(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: StateSet, _: None
    ) -> None:
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

    async def clear(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: StateClear, _: None
    ) -> None:
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


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.shared is None:
        return
    api = SharedStateAPI(
        ctx.shared, ctx.hosts if ctx.home else None, ctx.home.scripts if ctx.home else None
    )
    ctx.route(GET, api.get)
    ctx.route(SET, api.set)
    ctx.route(CLEAR, api.clear)
