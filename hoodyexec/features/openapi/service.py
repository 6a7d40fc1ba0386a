"""The kit's own OpenAPI 3.1 document, built from the reference endpoint table.

Every endpoint of the reference API is described. Those this version serves
carry their parameters and request bodies; the others answer 501 and are marked
``x-implemented: false`` (and say so in their description).
"""

from __future__ import annotations

import re
from typing import Any

from hoodyexec import __version__
from hoodyexec.features.openapi.reference import ENDPOINTS

S = {"type": "string"}
B = {"type": "boolean"}
I = {"type": "integer"}  # noqa: E741
ANY: dict[str, Any] = {}
SCOPE = {"execId": S, "exec_id": S, "subdomain": S}


def obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


# Request bodies of the endpoints this version serves.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/exec/scripts/write"): obj(
        {"path": S, "content": S, "createDirs": B, "validate": B, **SCOPE}, ("path", "content")
    ),
    ("POST", "/api/v1/exec/scripts/move"): obj(
        {"from": S, "to": S, "overwrite": B, **SCOPE}, ("from", "to")
    ),
    ("POST", "/api/v1/exec/scripts/tree"): obj(
        {
            "baseDir": S,
            "maxDepth": {"type": "integer", "minimum": 0, "maximum": 64},
            "includeMetadata": B,
            **SCOPE,
        }
    ),
    ("POST", "/api/v1/exec/shared-state/get"): obj({"hostname": S, "path": S}, ("hostname",)),
    ("POST", "/api/v1/exec/shared-state/set"): obj(
        {"hostname": S, "path": S, "value": ANY, "merge": B}, ("hostname", "value")
    ),
    ("POST", "/api/v1/exec/shared-state/clear"): obj({"hostname": S, "path": S, "clearAll": B}),
    ("PUT", "/api/v1/exec/magic-comments/update"): obj(
        {"path": S, "comments": {"oneOf": [{"type": "object"}, S]}, "dry_run": B, **SCOPE},
        ("path", "comments"),
    ),
    ("POST", "/api/v1/exec/magic-comments/bulk-update"): obj(
        {
            "directory": S,
            "comments": {"oneOf": [{"type": "object"}, S]},
            "extension": S,
            "recursive": B,
            "dry_run": B,
            **SCOPE,
        },
        ("comments",),
    ),
    ("POST", "/api/v1/exec/route/discover"): obj({"baseDir": S, "includeMetadata": B, **SCOPE}),
    **{
        ("POST", f"/api/v1/exec/validate/{name}"): obj({"code": S}, ("code",))
        for name in ("script", "syntax", "typescript", "dependencies", "magic-comments")
    },
    ("POST", "/api/v1/exec/templates/generate"): obj(
        {"name": S, "variables": {"type": "object"}, "outputPath": S, "saveFile": B, **SCOPE},
        ("name",),
    ),
    ("POST", "/api/v1/exec/templates/create-custom"): obj(
        {"name": S, "code": S, "metadata": {"type": "object"}, **SCOPE}, ("name", "code")
    ),
    ("PUT", "/api/v1/exec/templates/update-custom/{name}"): obj(
        {"code": S, "metadata": {"type": "object"}}
    ),
    ("POST", "/api/v1/exec/validate/return-type"): obj(
        {"typeDefinition": S, "value": ANY}, ("typeDefinition", "value")
    ),
    ("POST", "/api/v1/exec/route/resolve"): obj({"path": S, **SCOPE}, ("path",)),
    ("POST", "/api/v1/exec/route/test"): obj(
        {
            "path": S,
            "method": {
                "type": "string",
                "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            },
            "query": {"type": "object"},
            "headers": {"type": "object", "additionalProperties": S},
            "body": ANY,
            **SCOPE,
        },
        ("path",),
    ),
}

# Query parameters of the endpoints this version serves: name -> (schema, required).
QUERIES: dict[tuple[str, str], dict[str, tuple[dict[str, Any], bool]]] = {
    ("GET", "/api/v1/exec/scripts/read"): {
        "path": (S, True),
        **{k: (v, False) for k, v in SCOPE.items()},
    },
    ("DELETE", "/api/v1/exec/scripts/delete"): {
        "path": (S, True),
        "confirm": ({"type": "string", "enum": ["true"]}, False),
        **{k: (v, False) for k, v in SCOPE.items()},
    },
    ("GET", "/api/v1/exec/scripts/list"): {
        **{k: (S, False) for k in ("dir", "filter", "label", "tags", "mode")},
        **{
            k: ({"type": "string", "enum": ["true", "false"]}, False)
            for k in ("metadata", "enabled", "websocket", "recursive", "include_comments")
        },
        **{k: (v, False) for k, v in SCOPE.items()},
    },
    ("POST", "/api/v1/exec/scripts/write"): {k: (v, False) for k, v in SCOPE.items()},
    ("POST", "/api/v1/exec/scripts/move"): {k: (v, False) for k, v in SCOPE.items()},
    ("POST", "/api/v1/exec/scripts/tree"): {k: (v, False) for k, v in SCOPE.items()},
    ("GET", "/api/v1/exec/magic-comments/read"): {
        "path": (S, True),
        **{k: (v, False) for k, v in SCOPE.items()},
    },
    ("GET", "/api/v1/exec/templates/list"): {
        "category": (S, False),
        "includeBuiltin": ({"type": "string", "enum": ["true", "false"]}, False),
        "includeCustom": ({"type": "string", "enum": ["true", "false"]}, False),
    },
    ("GET", "/api/v1/exec/templates/preview"): {"name": (S, True), "variables": (S, False)},
}

IMPLEMENTED: set[tuple[str, str]] = {
    ("GET", "/api/v1/exec/health"),
    ("GET", "/api/v1/exec/list"),
    ("GET", "/openapi.json"),
    ("GET", "/openapi.yaml"),
    ("GET", "/{path}"),
    ("GET", "/api/v1/exec/scripts/read"),
    ("DELETE", "/api/v1/exec/scripts/delete"),
    ("GET", "/api/v1/exec/scripts/list"),
    ("GET", "/api/v1/exec/magic-comments/schema"),
    ("GET", "/api/v1/exec/magic-comments/read"),
    ("GET", "/api/v1/exec/templates/list"),
    ("GET", "/api/v1/exec/templates/preview"),
    ("DELETE", "/api/v1/exec/templates/delete-custom/{name}"),
    *BODIES,
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": S},
    "additionalProperties": True,
}


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path.replace("/api/v1/exec", ""))
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words) or method.lower() + "Root"


def _responses(implemented: bool) -> dict[str, Any]:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if not implemented:
        return {"501": {"description": "Not implemented in this version yet", **err}}
    return {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "400": {"description": "Bad request", **err},
        "401": {"description": "Missing or invalid management token", **err},
        "403": {"description": "Path is excluded from access", **err},
        "404": {"description": "Not found", **err},
    }


def document(extra: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole document. ``extra`` adds bodies for endpoints registered by later modules."""
    bodies = {**BODIES, **(extra or {})}
    implemented = IMPLEMENTED | set(extra or {})
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, tag in ENDPOINTS:
        key = (method, path)
        done = key in implemented
        op: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": summary,
            "tags": [tag],
            "responses": _responses(done),
            "x-implemented": done,
        }
        if not done:
            op["description"] = (
                "Not implemented in this version yet: answers 501 with a JSON error."
            )
        params = [
            {"name": name, "in": "path", "required": True, "schema": S}
            for name in re.findall(r"\{(\w+)\}", path)
        ]
        for name, (schema, required) in QUERIES.get(key, {}).items():
            params.append({"name": name, "in": "query", "required": required, "schema": schema})
        if params:
            op["parameters"] = params
        if key in bodies:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": bodies[key]}},
            }
        if path == "/{path}":
            op["description"] = "Runs the script routed at this path (any HTTP method invokes it)."
            op["responses"] = {"default": {"description": "Whatever the script answers"}}
        err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if path == "/api/v1/exec/health":
            op["security"] = []
            op["responses"]["503"] = {
                "description": "Starting: not every request worker has linked yet "
                '(`{"status": "starting"}`, Retry-After)',
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        if path == "/api/v1/exec/route/test" and done:
            op["responses"]["502"] = {"description": "The worker running it exited", **err}
            op["responses"]["503"] = {"description": "No request worker is linked", **err}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hoodyexec management API",
            "version": __version__,
            "description": "Python scripts as live HTTP endpoints. Operations marked x-implemented: false "
            "answer 501 in this version.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
