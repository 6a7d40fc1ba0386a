"""User OpenAPI endpoints, declared once (the reference's paths and names)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from hoodyexec.http.spec import Endpoint, Scoped

E = "/api/v1/exec/user-openapi/"


class UserOpenAPIListQuery(Scoped):
    directory: str | None = None
    aliases: ClassVar[dict[str, str]] = {"dir": "directory", "exec_id": "execId"}


class UserOpenAPISpecQuery(Scoped):
    dir: str | None = None
    format: Literal["json", "yaml"] = "json"
    aliases: ClassVar[dict[str, str]] = {"directory": "dir", "exec_id": "execId"}


class UserOpenAPISchemaQuery(Scoped):
    file: str | None = None
    aliases: ClassVar[dict[str, str]] = {"path": "file", "exec_id": "execId"}


class UserOpenAPIGenerate(Scoped):
    """The instance only (query wins over body)."""


class UserOpenAPIMerge(Scoped):
    spec: dict[str, Any] | None  # a partial OpenAPI document; null drops the layer


class UserOpenAPIValidate(Scoped):
    path: str | None = None
    schema: Any = None  # an inline sidecar: {"get": {operation}, ...}
    aliases: ClassVar[dict[str, str]] = {"file": "path", "exec_id": "execId"}


_COMMON = {
    404: "No such instance or file",
    503: "No request worker could describe the scripts",
}

LIST = Endpoint(
    "GET",
    E + "list",
    "List User Scripts",
    "openapi",
    query=UserOpenAPIListQuery,
    responses={
        200: "Routed scripts: path, routePath, methods, hasSchema",
        403: "Path is excluded from access",
        **_COMMON,
    },
)
GENERATE = Endpoint(
    "POST",
    E + "generate",
    "Generate User Open A P I",
    "openapi",
    body=UserOpenAPIGenerate,
    responses={
        200: "Generated and stored in _hoody/openapi.json, with a report",
        400: "Bad body",
        **_COMMON,
    },
)
MERGE = Endpoint(
    "POST",
    E + "merge",
    "Merge Open A P I Specs",
    "openapi",
    body=UserOpenAPIMerge,
    responses={
        200: "Layer stored (or dropped with null) and the document regenerated",
        400: "Bad body, or the merged document is not valid OpenAPI",
        **_COMMON,
    },
)
SPEC = Endpoint(
    "GET",
    E + "spec",
    "Serve Generated Spec",
    "openapi",
    query=UserOpenAPISpecQuery,
    responses={
        200: "The OpenAPI 3.1 document (regenerated first when stale)",
        400: "Bad format",
        403: "Path is excluded from access",
        **_COMMON,
    },
)
SCHEMA = Endpoint(
    "GET",
    E + "schema",
    "Serve Schema File",
    "openapi",
    query=UserOpenAPISchemaQuery,
    responses={
        200: "The script's path items and the components",
        400: "file is required",
        403: "Path is excluded from access",
        **_COMMON,
    },
)
VALIDATE = Endpoint(
    "POST",
    E + "validate",
    "Validate User Schema",
    "openapi",
    body=UserOpenAPIValidate,
    responses={
        200: "valid and errors",
        400: "Send path or schema",
        403: "Path is excluded from access",
        **_COMMON,
    },
)
