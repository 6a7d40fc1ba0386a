"""An OpenAPI 3 document read into what the generator needs: operations with
their parameters, body and types, the base URL, a title.

Only local references (``#/components/...``) are followed; an operation that
needs another is left out and reported in ``skipped``, as is one the kit cannot
serve as a route. Nothing here touches the disk or the network.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import yaml

from hoodyexec.errors import BadRequest

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_OPERATIONS = 500
_REF_DEPTH = 16


class NotOpenAPI3(BadRequest):
    """The source is not an OpenAPI 3 document."""


@dataclass
class Param:
    name: str  # as the document spells it
    where: str  # path | query | header
    required: bool
    type: str  # a Python annotation: int, str, list[int]...


@dataclass
class Op:
    operation_id: str
    method: str  # upper case
    path: str
    summary: str
    params: list[Param] = field(default_factory=list)
    body: str | None = None  # media type of the request body
    body_type: str = "Any"
    body_required: bool = False


@dataclass
class Skipped:
    method: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "path": self.path, "reason": self.reason}


@dataclass
class Document:
    openapi: str
    title: str
    version: str
    base_url: str
    ops: list[Op]
    skipped: list[Skipped]


def parse(raw: bytes) -> dict[str, Any]:
    """JSON, else YAML; an object with ``openapi: 3.x``, else 400 with the reason."""
    try:
        data = json.loads(raw)
    except ValueError:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise NotOpenAPI3(
                "source_url is neither JSON nor YAML", field="source_url", detail=str(exc)[:500]
            ) from None
    if not isinstance(data, dict):
        raise NotOpenAPI3("source_url is not an OpenAPI document (not an object)")
    version = data.get("openapi")
    if not isinstance(version, str) or not re.match(r"^3\.\d+(\.\d+)?", version):
        found = (
            f"swagger {data['swagger']}"
            if "swagger" in data
            else f"openapi {version!r}"
            if version is not None
            else "no 'openapi' field"
        )
        raise NotOpenAPI3(f"source_url is not an OpenAPI 3 document ({found})", field="source_url")
    if not isinstance(data.get("paths"), dict):
        raise NotOpenAPI3("the document has no 'paths' object", field="source_url")
    return data


def read(data: dict[str, Any], source_url: str, base_url: str | None) -> Document:
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    assert isinstance(info, dict)
    ops: list[Op] = []
    skipped: list[Skipped] = []
    for path, item in data["paths"].items():
        if not isinstance(item, dict):
            continue
        item = _deref(data, item)
        shared = item.get("parameters") if isinstance(item.get("parameters"), list) else []
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            try:
                ops.append(_operation(data, str(path), method, op, shared))
            except _Skip as why:
                skipped.append(Skipped(method.upper(), str(path), str(why)))
    if len(ops) > MAX_OPERATIONS:
        raise BadRequest(
            f"the document has {len(ops)} operations; at most {MAX_OPERATIONS} are imported",
            limit=MAX_OPERATIONS,
        )
    return Document(
        openapi=str(data["openapi"]),
        title=str(info.get("title") or ""),
        version=str(info.get("version") or ""),
        base_url=base_url or _server_url(data, source_url),
        ops=ops,
        skipped=skipped,
    )


class _Skip(Exception):
    pass


def _server_url(data: dict[str, Any], source_url: str) -> str:
    servers = data.get("servers")
    server = servers[0] if isinstance(servers, list) and servers else {"url": "/"}
    url = str(server.get("url") or "/") if isinstance(server, dict) else "/"
    variables = server.get("variables") if isinstance(server, dict) else None
    for name, spec in (variables or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            url = url.replace("{" + str(name) + "}", str(spec["default"]))
    if urlsplit(url).scheme in ("http", "https"):
        return url
    if urlsplit(source_url).scheme in ("http", "https"):
        return urljoin(source_url, url)
    raise BadRequest(
        f"the document's server URL {url!r} is relative and the source is a file: give base_url",
        field="base_url",
    )


def _deref(data: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """Follow ``$ref`` (local only) until a plain object."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise _Skip(f"a reference outside the document ({ref!r}) is not followed")
        if depth > _REF_DEPTH:
            raise _Skip(f"references nested deeper than {_REF_DEPTH}")
        node = data
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise _Skip(f"unresolved reference {ref!r}")
            node = node[part]
        depth += 1
    return node


def _operation(
    data: dict[str, Any], path: str, method: str, op: dict[str, Any], shared: list[Any]
) -> Op:
    params: dict[tuple[str, str], Param] = {}
    for raw in [*shared, *(op.get("parameters") or [])]:
        p = _deref(data, raw)
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise _Skip("a parameter without a name")
        where = p.get("in")
        if where == "cookie":
            continue  # cookies are the client's; the kit does not forward them
        if where not in ("path", "query", "header"):
            raise _Skip(f"parameter {p['name']!r} has an unknown location {where!r}")
        params[(p["name"], where)] = Param(
            name=p["name"],
            where=where,
            required=bool(p.get("required")) or where == "path",
            type=annotation(data, p.get("schema")),
        )
    declared = {name for name, where in params if where == "path"}
    in_template = set(re.findall(r"\{([^{}]+)\}", path))
    if in_template != declared:
        missing = sorted(in_template - declared) or sorted(declared - in_template)
        raise _Skip(f"path parameters and the path template disagree ({', '.join(missing)})")
    body, body_type, body_required = _request_body(data, op.get("requestBody"))
    summary = op.get("summary") or op.get("description") or ""
    return Op(
        operation_id=str(op.get("operationId") or ""),
        method=method.upper(),
        path=path,
        summary=" ".join(str(summary).split())[:200],
        params=list(params.values()),
        body=body,
        body_type=body_type,
        body_required=body_required,
    )


def _request_body(data: dict[str, Any], raw: Any) -> tuple[str | None, str, bool]:
    if raw is None:
        return None, "Any", False
    body = _deref(data, raw)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict) or not content:
        return None, "Any", False
    kinds = list(content)
    kind = next((k for k in kinds if "json" in k), kinds[0])
    media = content.get(kind)
    schema = media.get("schema") if isinstance(media, dict) else None
    tp = annotation(data, schema) if "json" in kind else "bytes | str"
    return str(kind), tp, bool(body.get("required"))


_SCALARS = {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}


def annotation(data: dict[str, Any], schema: Any, depth: int = 0) -> str:
    """A Python annotation for a schema (``Any`` for what it cannot say simply)."""
    if depth > 4:
        return "Any"
    try:
        schema = _deref(data, schema)
    except _Skip:
        return "Any"
    if not isinstance(schema, dict):
        return "Any"
    kind = schema.get("type")
    if isinstance(kind, list):  # 3.1: ["string", "null"]
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return f"list[{annotation(data, schema.get('items'), depth + 1)}]"
    if kind == "object" or "properties" in schema:
        return "dict[str, Any]"
    return "Any"
