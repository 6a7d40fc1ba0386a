"""Management API: scripts (write, read, list, delete, move, tree) and exec ids."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import msgspec

from ..errors import BadRequest
from ..home import Home
from ..scriptstore import Scope, ScriptStore, pick_scope
from . import errors
from .scripts import HostMap

_decode = msgspec.json.Decoder().decode


def decode_json(raw: bytes, type_: Any = None) -> Any:
    """Decode a request body (into ``type_`` when given); every problem is a 400.

    msgspec raises ``RecursionError`` (not ``DecodeError``) for nesting deeper
    than it follows (``[[[[...``); that is malformed input too, not a 500.
    """
    try:
        return _decode(raw) if type_ is None else msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"Invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest("Invalid JSON", detail=str(exc)) from None
    except RecursionError:
        raise BadRequest("Invalid JSON", detail="nested too deeply") from None


async def json_body(req: falcon.asgi.Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; every problem is a 400."""
    raw = await req.stream.read()
    if not raw:
        if required:
            raise BadRequest("a JSON body is required")
        return {}
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


def need(body: dict[str, Any], key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in body or body[key] is None:
        raise BadRequest(f"{key} is required", field=key)
    value = body[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BadRequest(f"{key} must be a {name}", field=key)
    return value


def flag(value: Any, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"{name} must be true or false", field=name)


class ScriptsAPI:
    def __init__(self, home: Home, store: ScriptStore, hosts: HostMap) -> None:
        self.home = home
        self.store = store
        self.hosts = hosts

    def scope(self, req: falcon.asgi.Request, body: dict[str, Any] | None = None) -> Scope:
        sub, eid, _ = self.hosts.resolve(req.get_header("Host") or "")
        return pick_scope(self.home, req.params, body, (sub, eid))

    async def on_post_write(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        path = need(body, "path")
        content = need(body, "content")
        result = self.store.write(
            self.scope(req, body),
            path,
            content,
            create_dirs=flag(body.get("createDirs"), "createDirs", True),
            validate=flag(body.get("validate"), "validate", True),
        )
        errors.json_response(resp, result, status=201 if result["created"] else 200)

    async def on_get_read(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        path = req.get_param("path")
        if not path:
            raise BadRequest("path query parameter is required", field="path")
        errors.json_response(resp, self.store.read(self.scope(req), path))

    async def on_get_list(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        p = req.params
        tags = p.get("tags")
        if isinstance(tags, str):
            tags = [t for t in tags.replace(" ", ",").split(",") if t]
        result = self.store.list(
            self.scope(req),
            dir=p.get("dir") or "",
            filter=p.get("filter") or None,
            metadata=flag(p.get("metadata"), "metadata", False),
            label=p.get("label") or None,
            tags=tags or None,
            mode=p.get("mode") or None,
            enabled=None
            if p.get("enabled") in (None, "")
            else flag(p.get("enabled"), "enabled", True),
            websocket=None
            if p.get("websocket") in (None, "")
            else flag(p.get("websocket"), "websocket", False),
            recursive=flag(p.get("recursive"), "recursive", True),
            include_comments=flag(p.get("include_comments"), "include_comments", False),
        )
        errors.json_response(resp, result)

    async def on_delete_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        path = req.get_param("path")
        if not path:
            raise BadRequest("path query parameter is required", field="path")
        if req.get_param("confirm") != "true":
            raise BadRequest("confirm=true parameter required for safety")
        errors.json_response(resp, self.store.delete(self.scope(req), path))

    async def on_post_move(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req)
        result = self.store.move(
            self.scope(req, body),
            need(body, "from"),
            need(body, "to"),
            overwrite=flag(body.get("overwrite"), "overwrite", False),
        )
        errors.json_response(resp, result)

    async def on_post_tree(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await json_body(req, required=False)
        depth = body.get("maxDepth", 10)
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise BadRequest("maxDepth must be an integer", field="maxDepth")
        base = body.get("baseDir") or ""
        if not isinstance(base, str):
            raise BadRequest("baseDir must be a string", field="baseDir")
        result = self.store.tree(
            self.scope(req, body),
            base_dir=base,
            max_depth=depth,
            include_metadata=flag(body.get("includeMetadata"), "includeMetadata", False),
        )
        errors.json_response(resp, result)

    async def on_get_ids(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        errors.json_response(resp, self.store.exec_ids())


def register(app: falcon.asgi.App, home: Home, store: ScriptStore, hosts: HostMap) -> ScriptsAPI:
    api = ScriptsAPI(home, store, hosts)
    base = "/api/v1/exec/scripts/"
    for name in ("write", "read", "list", "delete", "move", "tree"):
        app.add_route(base + name, api, suffix=name)
    app.add_route("/api/v1/exec/list", api, suffix="ids")
    return api
