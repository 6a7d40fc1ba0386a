"""The kit's own OpenAPI 3.1 document, generated from the endpoint declarations.

Every endpoint the management app serves is described, in the reference API's
order, from the declaration its feature registered (``http/spec.py`` Endpoints:
body and query Structs, statuses); the kit's own additions follow, marked
``x-extension``. Schemas come from ``msgspec.json.schema_components``: one
declaration, no hand-kept tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from hoodyexec import __version__
from hoodyexec.http.spec import COMMON, Endpoint, Fields

from .reference import ENDPOINTS

REF = "#/components/schemas/{name}"
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": ["string", "null"]}},
    "additionalProperties": True,
}
_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_OK = {"content": {"application/json": {"schema": {"type": "object"}}}}


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path.replace("/api/v1/exec", ""))
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words) or method.lower() + "Root"


def _parameters(ep: Endpoint, defs: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", ep.path)
    ]
    if ep.query is None:
        return params
    props = defs[ep.query.__name__]
    required = set(props.get("required", ()))
    for name, prop in props.get("properties", {}).items():
        params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    for alias, name in ep.query.aliases.items():
        if name in props.get("properties", {}):
            params.append(
                {
                    "name": alias,
                    "in": "query",
                    "required": False,
                    "schema": props["properties"][name],
                    "description": f"Alias of {name}.",
                }
            )
    return params


def _responses(ep: Endpoint) -> dict[str, Any]:
    if ep.path == "/{path}":
        return {"default": {"description": "Whatever the script answers"}}
    statuses = dict(ep.responses)
    if ep.body is not None or ep.query is not None:
        statuses.setdefault(400, "Invalid request (the field is named)")
    if not ep.public:
        statuses.update({k: v for k, v in COMMON.items() if k not in statuses})
    return {
        str(code): {"description": text, **(_OK if code < 300 else _ERR)}
        for code, text in sorted(statuses.items())
    }


def _operation(ep: Endpoint, summary: str, tag: str, defs: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(ep.method, ep.path),
        "summary": summary,
        "tags": [tag],
        "responses": _responses(ep),
    }
    notes = [ep.description] if ep.description else []
    if ep.path == "/{path}":
        notes = ["Runs the script routed at this path (any HTTP method invokes it)."]
    if notes:
        op["description"] = " ".join(notes)
    params = _parameters(ep, defs)
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.body_required,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(name=ep.body.__name__)}}
            },
        }
    if ep.public:
        op["security"] = []
    if ep.extension:
        op["x-extension"] = True
    return op


def _structs(endpoints: Iterable[Endpoint]) -> list[type[Fields]]:
    seen: dict[str, type[Fields]] = {}
    for ep in endpoints:
        for t in (ep.body, ep.query):
            if t is not None:
                other = seen.setdefault(t.__name__, t)
                assert other is t, f"two request schemas are named {t.__name__}"
    return list(seen.values())


def document(implemented: Sequence[Endpoint]) -> dict[str, Any]:
    """The whole document: what is served, in the reference's order, then the
    kit's additions. (Every reference endpoint is served by a kit with a home;
    the management app without one, in tests, serves fewer.)"""
    served = {ep.key: ep for ep in implemented}
    chosen: list[tuple[Endpoint, str, str]] = []
    for method, path, summary, tag in ENDPOINTS:
        key = (method, path)
        if key in served:
            chosen.append((served[key], summary, tag))
        elif path == "/{path}":  # script routes: served by the request workers
            chosen.append((Endpoint(method, path, summary, tag), summary, tag))
    listed = {ep.key for ep, *_ in chosen}
    chosen += [(ep, ep.summary, ep.tag) for ep in implemented if ep.key not in listed]
    _, defs = msgspec.json.schema_components(_structs(ep for ep, *_ in chosen), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for ep, summary, tag in chosen:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, summary, tag, defs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hoodyexec management API",
            "version": __version__,
            "description": "Python scripts as live HTTP endpoints: the management API. "
            "Operations marked x-extension are the kit's own additions to the reference API.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, **defs},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
