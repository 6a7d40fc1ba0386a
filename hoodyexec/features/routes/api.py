"""Management API: routes (discover, resolve, test).

``route/test`` runs the script for real on a synthetic request, in a request
worker (``http/invoke.py``) — never in the control worker — with
``metadata.trigger == "test"``, under the script's ``@timeout`` and with at most
1 MiB of its answer kept.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import falcon
import falcon.asgi
import msgspec

from hoodyexec.engine import magic
from hoodyexec.engine.store import describe_listed, safe_path, unreadable
from hoodyexec.errors import BadRequest, ControlUnavailable
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.router import RouteTable, table_for
from hoodyexec.http.spec import Scoped
from hoodyexec.ipc.bridge import WORKER_PID
from hoodyexec.ipc.protocol import Invoke

from .schemas import DISCOVER, RESOLVE, TEST, RouteDiscoverBody, RouteResolveBody, RouteTestBody

_encode = msgspec.json.Encoder().encode
# route/test keeps at most this much of a script's answer (then "truncated": true).
TEST_BODY_LIMIT = 1024 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def _route_info(route: Any) -> dict[str, Any]:
    return {
        "route": route.route,
        "file": route.file,
        "kind": route.kind,
        "params": list(route.params),
        "templates": list(route.templates),
    }


def _file_state(scope: Any, rel: str, with_meta: bool) -> dict[str, Any] | None:
    """A discovered route's file: its metadata (``with_meta``), ``{}`` when it is
    fine, ``{"broken": True, "reason": ...}`` when it cannot be read (a dangling
    symlink), None when it was deleted since the scan."""
    if with_meta:
        return describe_listed(scope, rel)
    path = os.path.join(scope.root, rel)
    try:
        os.stat(path)
    except OSError as exc:
        reason = unreadable(path, exc)
        return None if reason is None else {"broken": True, "reason": reason}
    return {}


DISABLED = "the script is disabled (@enabled false): requests answer 404"


def _enabled(scope: Any, rel: str) -> bool:
    """Whether a routed file serves requests: False for ``@enabled false``, as the
    request worker decides (a file that cannot be read is left to the call)."""
    try:
        with open(os.path.join(scope.root, rel), encoding="utf-8") as fh:
            source = fh.read()
    except (OSError, UnicodeDecodeError):
        return True
    return magic.parse(source)[0].enabled


class RoutesAPI:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.invoke = ctx.invoke  # runs a script in a request worker (ControlServer.ask)

    def _table(self, scope: Any) -> RouteTable:
        return table_for(scope.root)

    async def discover(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: RouteDiscoverBody,
        query: Scoped,
    ) -> None:
        scope = self.ctx.scope(req, body, query)
        _, base = safe_path(scope, body.baseDir, allow_root=True)  # ``../``: 403, as everywhere
        table = self._table(scope)
        skipped = dict(table.report())
        with_meta = body.includeMetadata
        out = []
        for route in sorted(table.files.values(), key=lambda r: r.route):
            if base and not (route.file == base or route.file.startswith(base + "/")):
                continue
            meta = _file_state(scope, route.file, with_meta)
            if meta is None:  # deleted since the scan listed it
                continue
            item = _route_info(route)
            item["active"] = route.file not in skipped and not meta.get("broken")
            if route.file in skipped:
                item["reason"] = skipped[route.file]
            if meta.get("broken"):
                item["broken"] = True
                item["reason"] = meta["reason"]
            elif with_meta:
                item.update(
                    {
                        k: meta.get(k)
                        for k in ("description", "shape", "enabled", "mode", "magicComments")
                    }
                )
            out.append(item)
        invalid = [{"file": f, "reason": r} for f, r in skipped.items() if f not in table.files]
        errors.json_response(
            resp,
            {
                "success": True,
                **scope.to_dict(),
                "baseDir": base,
                "routes": out,
                "count": len(out),
                "notRoutable": invalid,
            },
        )

    async def resolve(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: RouteResolveBody,
        query: Scoped,
    ) -> None:
        scope = self.ctx.scope(req, body, query)
        if not body.path:
            raise BadRequest("path is required (a URL path such as /api/users/42)", field="path")
        path = urlsplit(body.path).path or "/"
        found = self._table(scope).find(path if path.startswith("/") else "/" + path)
        if found is None:
            errors.json_response(
                resp, {"success": True, "matched": False, "path": path, **scope.to_dict()}
            )
            return
        route, params = found
        info = _route_info(route)
        info["paramNames"] = info.pop("params")
        enabled = _enabled(scope, route.file)
        errors.json_response(
            resp,
            {
                "success": True,
                # what a request gets: a disabled script answers 404, so it does not match
                "matched": enabled,
                "path": path,
                **scope.to_dict(),
                **info,
                "params": params,
                "enabled": enabled,
                **({} if enabled else {"reason": DISABLED}),
            },
        )

    async def test(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: RouteTestBody,
        query: Scoped,
    ) -> None:
        scope = self.ctx.scope(req, body, query)
        path = body.path
        split = urlsplit(path)
        url_path = split.path or "/"
        if not url_path.startswith("/"):
            url_path = "/" + url_path
        if url_path.endswith(".py"):  # a script file was given: test its route
            from hoodyexec.engine.routes import NotRoutable, route_for

            try:
                url_path = route_for(url_path.lstrip("/")).templates[0]
            except NotRoutable as exc:
                raise BadRequest(f"{path} is not routable: {exc}") from None
        method = (body.method or "GET").upper()
        if method not in _METHODS:
            raise BadRequest(f"method must be one of {', '.join(sorted(_METHODS))}", field="method")
        qs = "&".join(filter(None, [split.query, urlencode(body.query, doseq=True)]))
        headers = body.headers
        payload = body.body
        raw = b""
        hdrs = {}
        for k, v in headers.items():
            name, value = str(k).lower(), str(v)
            if not _TOKEN.match(name) or not _VALUE.match(value):
                raise BadRequest(
                    f"invalid header {k!r}: names are tokens, values printable Latin-1",
                    field="headers",
                )
            hdrs[name] = value
        if isinstance(payload, str):
            raw = payload.encode()
            hdrs.setdefault("content-type", "text/plain; charset=utf-8")
        elif payload is not None:
            raw = _encode(payload)
            hdrs.setdefault("content-type", "application/json")
        if raw:
            hdrs["content-length"] = str(len(raw))
        if self.invoke is None:
            raise ControlUnavailable("no request worker can run scripts here")
        # User code never runs in the control worker: a request worker runs it
        # under the script's @timeout, keeps at most 1 MiB of its answer, and
        # stops when this call's client leaves (the bridge cancels us).
        # Run it in another worker than the one forwarding this call, so a
        # script that kills its worker cannot take this call's client with it.
        answer = await self.invoke(
            Invoke(
                subdomain=scope.subdomain,
                exec_id=scope.exec_id,
                method=method,
                path=url_path,
                query_string=qs.encode(),
                headers=list(hdrs.items()),
                body=raw,
                trigger="test",
                limit=TEST_BODY_LIMIT,
            ),
            req.scope.get(WORKER_PID, 0),
        )
        data = answer.body
        out_headers = {k: v for k, v in answer.headers}
        ctype = out_headers.get("content-type", "")
        result: Any
        if "json" in ctype and not answer.truncated:
            try:
                result = msgspec.json.decode(data)
            except (msgspec.DecodeError, RecursionError):
                result = data.decode("utf-8", "replace")
        elif "json" in ctype or ctype.startswith("text/") or "event-stream" in ctype:
            result = data.decode("utf-8", "replace")
        else:
            result = data.hex() if data else None
        errors.json_response(
            resp,
            {
                "success": True,
                **scope.to_dict(),
                "path": url_path,
                "method": method,
                "status": answer.status,
                "headers": out_headers,
                "body": result,
                "bodyEncoding": "hex"
                if result is not None
                and not ("json" in ctype or ctype.startswith("text/") or "event-stream" in ctype)
                else "text",
                "durationMs": answer.duration_ms,
                "truncated": answer.truncated,
                "timedOut": answer.timed_out,
                "trigger": "test",
            },
        )


def register(app: FalconApp, ctx: Context) -> None:
    if ctx.home is None:
        return
    api = RoutesAPI(ctx)
    ctx.route(DISCOVER, api.discover)
    ctx.route(RESOLVE, api.resolve)
    ctx.route(TEST, api.test)
