"""Script facts (``ipc.protocol.Described``) → an OpenAPI 3.1 document.

Pure functions, no I/O. Each routed, loadable, enabled script gives one path
item per route template (``/people/{id}``) and one operation per method it
answers: its method functions, or every method (the eight OpenAPI knows) for
body mode and a handler.
What an operation says comes from the types the script declares, and only
states what the engine really does:

* path parameters: the route's, typed by the entry's annotation (a string of
  at least one character otherwise: an empty segment never matches);
* request body: a typed ``body`` or a Struct/dataclass/TypedDict parameter
  (required when an empty body, decoded as ``{}``, would not pass); an untyped
  ``body`` parameter takes any JSON;
* query parameters: the fields of a typed ``query`` parameter, or of a typed
  struct on ``GET`` (read from the query string when there is no body);
* responses: from the return annotation (``T`` → 200 JSON, ``str`` → text,
  ``bytes`` → octet stream, ``None`` → 204, a generator → a stream,
  ``tuple[T, Literal[201]]`` → 201), ``default`` when not annotated; 400 when
  any input is typed or a body is read, 401 with ``@token``, ``5XX`` always
  (an exception, a timeout).
"""

from __future__ import annotations

import re
from typing import Any

from hoodyexec.ipc.protocol import Described, OperationFacts, ParamFacts, ScriptFacts

OPENAPI = "3.1.0"
# Body mode and a handler run for any method: each is documented.
METHODS = ("get", "post", "put", "patch", "delete", "head", "options", "trace")
# Methods whose typed struct is read from the query string (no body is sent).
BODYLESS = frozenset({"get", "head", "options", "trace"})
ERROR_NAME = "hoodyexec.Error"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_NAME}"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "properties": {"error": {"type": "string"}, "executionId": {"type": "string"}},
    "required": ["error"],
}
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The script's @token"},
    "hoodyToken": {"type": "apiKey", "in": "header", "name": "X-Hoody-Token"},
    "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"hoodyToken": []}, {"queryToken": []}]
SCRIPT_KEY = "x-hoody-script"  # on each path item: the file it comes from
_FIELD = re.compile(r"\{(\w+)(:path)?\}")
_SLUG = re.compile(r"[^A-Za-z0-9]+")
_BODY_SOURCES = frozenset({"typed-body", "body"})


def openapi_path(template: str) -> str:
    """Falcon template → OpenAPI path (``/files/{p:path}`` → ``/files/{p}``)."""
    return _FIELD.sub(r"{\1}", template)


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        found = components.get(ref.rsplit("/", 1)[-1])
        return found if isinstance(found, dict) else {}
    return schema


def _query_params(p: ParamFacts, components: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of a typed query parameter, one query parameter each."""
    schema = _resolve(p.schema or {}, components)
    props = schema.get("properties")
    if not isinstance(props, dict):
        return []
    required = set(schema.get("required") or ())
    return [
        {"name": name, "in": "query", "required": name in required, "schema": sub}
        for name, sub in props.items()
    ]


def _path_params(template: str, op: OperationFacts) -> list[dict[str, Any]]:
    typed = {p.name: p.schema for p in op.params if p.source == "route"}
    out = []
    for m in _FIELD.finditer(template):
        name = m.group(1)
        schema = typed.get(name) or {"type": "string"}
        if schema.get("type") == "string":
            schema = {**schema, "minLength": max(1, int(schema.get("minLength", 1)))}
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _request_body(method: str, op: OperationFacts) -> dict[str, Any] | None:
    for p in op.params:
        typed_body = p.source == "typed-body" or (p.source == "typed" and method not in BODYLESS)
        if typed_body:
            return {
                "required": p.required,
                "content": {"application/json": {"schema": p.schema or {}}},
            }
    if method not in BODYLESS and any(p.source == "body" for p in op.params):
        return {"required": False, "content": {"application/json": {"schema": {}}}}
    return None


def _success(op: OperationFacts) -> tuple[str, dict[str, Any]]:
    status = str(op.status)
    if op.returns == "json":
        content = {"application/json": {"schema": op.schema or {}}}
        return status, {"description": "The script's answer", "content": content}
    if op.returns == "text":
        content = {"text/plain": {"schema": {"type": "string"}}}
        return status, {"description": "Text", "content": content}
    if op.returns == "bytes":
        return status, {
            "description": "Bytes",
            "content": {"application/octet-stream": {"schema": {}}},
        }
    if op.returns == "none":
        return status, {"description": "No content"}
    if op.returns == "stream":
        any_: dict[str, Any] = {"schema": {}}
        content = {"text/event-stream": any_, "application/x-ndjson": any_, "text/plain": any_}
        return status, {"description": "A stream, sent as it is produced", "content": content}
    return "default", {"description": "Whatever the script answers (no return annotation)"}


def _texts(script: ScriptFacts, op: OperationFacts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    doc = (op.doc or "").strip()
    summary = script.description or (doc.splitlines()[0] if doc else "")
    if summary:
        out["summary"] = summary
    if doc and doc != summary:
        out["description"] = doc
    if script.tags:
        out["tags"] = list(script.tags)
    return out


def operation(
    script: ScriptFacts, op: OperationFacts, method: str, template: str, components: dict[str, Any]
) -> dict[str, Any]:
    """One OpenAPI operation for ``method`` of ``script`` at ``template``."""
    params = _path_params(template, op)
    typed_query = [p for p in op.params if p.source == "typed-query"]
    if method in BODYLESS:
        typed_query += [p for p in op.params if p.source == "typed"]
    for p in typed_query:
        params += _query_params(p, components)
    body = _request_body(method, op)
    key, success = _success(op)
    responses: dict[str, Any] = {key: success}
    typed_input = (
        body is not None
        or typed_query
        or any(
            p.source == "route" and p.schema is not None and p.schema.get("type") != "string"
            for p in op.params
        )
    )
    if typed_input:
        responses["400"] = _error(
            "Invalid input: malformed JSON, or a value that does not match its type"
        )
    if script.token:
        responses["401"] = _error("Missing or wrong token (@token)")
    responses["5XX"] = _error("The script failed or timed out")
    out: dict[str, Any] = {
        "operationId": _operation_id(method, script.file, template, script),
        **_texts(script, op),
    }
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = body
    out["responses"] = responses
    if script.token:
        out["security"] = SECURITY
    return out


def _operation_id(method: str, file: str, template: str, script: ScriptFacts) -> str:
    slug = _SLUG.sub("_", file[:-3]).strip("_") or "index"
    suffix = "" if template == script.templates[-1] else "_root"
    return f"{method}_{slug}{suffix}"


def path_item(script: ScriptFacts, template: str, components: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {SCRIPT_KEY: script.file}
    for facts in script.operations:
        methods = METHODS if facts.method == "*" else (facts.method.lower(),)
        for method in methods:
            item[method] = operation(script, facts, method, template, components)
    return item


def served(script: ScriptFacts) -> bool:
    """Does the script answer anything the document can describe?"""
    return script.error is None and script.enabled and bool(script.operations)


def document(described: Described, title: str) -> dict[str, Any]:
    """The OpenAPI document of every served script in ``described``."""
    components = dict(described.components)
    paths: dict[str, Any] = {}
    secured = False
    for script in described.scripts:
        if not served(script):
            continue
        secured = secured or script.token
        for template in script.templates:
            paths[openapi_path(template)] = path_item(script, template, components)
    schemas = {**components, ERROR_NAME: ERROR_SCHEMA}
    comps: dict[str, Any] = {"schemas": schemas}
    if secured:
        comps["securitySchemes"] = SECURITY_SCHEMES
    return {
        "openapi": OPENAPI,
        "info": {"title": title, "version": "1.0.0"},
        "paths": paths,
        "components": comps,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """``patch`` deep-merged over ``target`` (RFC 7396: objects merge key by
    key, ``null`` removes a key, anything else replaces)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
