"""Management API: routes (discover, resolve, test).

``route/test`` runs the script for real, in the control worker, on a synthetic
request: the same scripts engine as the request workers (its own compiled cache,
fresh through inotify), with ``metadata.trigger == "test"``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import falcon
import falcon.asgi
import msgspec

from .. import logs
from ..catalog import Catalog
from ..errors import BadRequest
from ..executor import Executor
from ..home import Home
from ..scriptstore import describe_listed, unreadable
from ..shared import SharedStore
from . import errors
from .api_scripts import ScriptsAPI, flag, json_body, need
from .router import RouteTable, scan, table_for
from .scripts import ScriptsSink

_encode = msgspec.json.Encoder().encode
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


class RoutesAPI:
    def __init__(
        self, scripts: ScriptsAPI, home: Home, shared: SharedStore | None, settings: Any = None
    ) -> None:
        self.scripts = scripts
        self.home = home
        self.shared = shared
        self._sink: ScriptsSink | None = None
        self._app: falcon.asgi.App | None = None
        self.settings = settings

    def _table(self, scope: Any) -> RouteTable:
        routes, invalid = scan(scope.root)
        return RouteTable(routes, invalid)

    async def on_post_discover(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req, required=False)
        scope = self.scripts.scope(req, body)
        base = body.get("baseDir") or ""
        if not isinstance(base, str):
            raise BadRequest("baseDir must be a string", field="baseDir")
        base = base.strip("/")
        table = self._table(scope)
        skipped = dict(table.report())
        with_meta = flag(body.get("includeMetadata"), "includeMetadata", False)
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

    async def on_post_resolve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        scope = self.scripts.scope(req, body)
        path = body.get("path") or body.get("url") or body.get("route")
        if not isinstance(path, str) or not path:
            raise BadRequest("path is required (a URL path such as /api/users/42)", field="path")
        path = urlsplit(path).path or "/"
        found = self._table(scope).find(path if path.startswith("/") else "/" + path)
        if found is None:
            errors.json_response(
                resp, {"success": True, "matched": False, "path": path, **scope.to_dict()}
            )
            return
        route, params = found
        info = _route_info(route)
        info["paramNames"] = info.pop("params")
        errors.json_response(
            resp,
            {
                "success": True,
                "matched": True,
                "path": path,
                **scope.to_dict(),
                **info,
                "params": params,
            },
        )

    def _runner(self) -> falcon.asgi.App:
        if self._app is None:
            settings = self.settings
            catalog = Catalog(
                self.home.scripts,
                table_for,
                default_timeout=getattr(settings, "script_timeout", 30000),
            )
            executor = Executor(threads=4)
            executor.start_if_possible()
            self._sink = ScriptsSink(
                catalog,
                self.shared or SharedStore(self.home.db),
                logs.LogBook(self.home.logs),
                executor,
                trigger="test",
                max_body=getattr(settings, "max_body_size", 10 * 1024 * 1024),
            )
            app = falcon.asgi.App()
            errors.install(app)
            app.add_sink(self._sink, prefix="/")
            self._app = app
        return self._app

    async def on_post_test(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        scope = self.scripts.scope(req, body)
        path = need(body, "path")
        split = urlsplit(path)
        url_path = split.path or "/"
        if not url_path.startswith("/"):
            url_path = "/" + url_path
        if url_path.endswith(".py"):  # a script file was given: test its route
            from ..routes import NotRoutable, route_for

            try:
                url_path = route_for(url_path.lstrip("/")).templates[0]
            except NotRoutable as exc:
                raise BadRequest(f"{path} is not routable: {exc}") from None
        method = str(body.get("method") or "GET").upper()
        if method not in _METHODS:
            raise BadRequest(f"method must be one of {', '.join(sorted(_METHODS))}", field="method")
        query = body.get("query") or {}
        if not isinstance(query, dict):
            raise BadRequest("query must be an object", field="query")
        qs = "&".join(filter(None, [split.query, urlencode(query, doseq=True)]))
        headers = body.get("headers") or {}
        if not isinstance(headers, dict):
            raise BadRequest("headers must be an object", field="headers")
        payload = body.get("body")
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
        hdrs["host"] = (
            f"exec-{scope.exec_id}.localhost"
            if scope.subdomain == "default"
            else (f"{scope.subdomain}.exec-{scope.exec_id}.localhost")
        )
        if raw:
            hdrs["content-length"] = str(len(raw))
        asgi_scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": url_path,
            "raw_path": url_path.encode(),
            "query_string": qs.encode(),
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items()],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }
        sent = False
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        t0 = time.perf_counter()
        await self._runner()(asgi_scope, receive, send)
        duration = (time.perf_counter() - t0) * 1000
        data = b"".join(chunks)
        out_headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])
        }
        ctype = out_headers.get("content-type", "")
        result: Any
        if "json" in ctype:
            try:
                result = msgspec.json.decode(data)
            except msgspec.DecodeError:
                result = data.decode("utf-8", "replace")
        elif ctype.startswith("text/") or "event-stream" in ctype:
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
                "status": start.get("status", 500),
                "headers": out_headers,
                "body": result,
                "bodyEncoding": "hex"
                if result is not None
                and not ("json" in ctype or ctype.startswith("text/") or "event-stream" in ctype)
                else "text",
                "durationMs": round(duration, 3),
                "trigger": "test",
            },
        )


def register(
    app: falcon.asgi.App,
    scripts: ScriptsAPI,
    home: Home,
    shared: SharedStore | None,
    settings: Any = None,
) -> None:
    api = RoutesAPI(scripts, home, shared, settings)
    base = "/api/v1/exec/route/"
    app.add_route(base + "discover", api, suffix="discover")
    app.add_route(base + "resolve", api, suffix="resolve")
    app.add_route(base + "test", api, suffix="test")
