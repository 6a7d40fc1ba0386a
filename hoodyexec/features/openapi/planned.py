"""Declarations of the reference endpoints this version does not serve yet.

They answer 501, but the OpenAPI document still describes their parameters and
bodies, as the reference documents them. When a capability lands, its feature
folder declares these endpoints itself and the entry here goes.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from hoodyexec.http.spec import Endpoint, Fields, Scoped

E = "/api/v1/exec/"


class AnyObject(Fields):
    """A free-form JSON object (the reference documents no fields)."""


class CacheClear(Fields):
    hostname: str | None = None
    scriptPath: str | None = None  # noqa: N815 - the reference's names
    clearVm: bool = True  # noqa: N815
    clearState: bool = False  # noqa: N815
    clearAll: bool = False  # noqa: N815


class UserOpenAPIListQuery(Scoped):
    directory: str | None = None
    aliases: ClassVar[dict[str, str]] = {"dir": "directory", "exec_id": "execId"}


class UserOpenAPISpecQuery(Scoped):
    dir: str | None = None
    format: Literal["json", "yaml"] = "json"
    aliases: ClassVar[dict[str, str]] = {"directory": "dir", "exec_id": "execId"}


class UserOpenAPISchemaQuery(Fields):
    file: str | None = None
    aliases: ClassVar[dict[str, str]] = {"path": "file"}


class SdkImport(Fields):
    execId: str  # noqa: N815
    source_url: str
    source_auth: str | None = None
    middleware: str | None = None
    magic_comments: str | None = None
    force: bool = False


class SystemRestart(Fields):
    graceful: bool = True
    drainTimeoutMs: int = 5000  # noqa: N815
    reason: str = "API restart request"


def _ep(
    method: str,
    path: str,
    summary: str,
    tag: str,
    body: type[Fields] | None = None,
    query: type[Fields] | None = None,
    required: bool = False,
) -> Endpoint:
    return Endpoint(method, E + path, summary, tag, body=body, query=query, body_required=required)


PLANNED: tuple[Endpoint, ...] = (
    _ep("POST", "cache/clear", "Clear Cache", "cache", CacheClear),
    _ep(
        "POST",
        "user-openapi/generate",
        "Generate User Open A P I",
        "openapi",
        AnyObject,
        required=True,
    ),
    _ep("GET", "user-openapi/list", "List User Scripts", "openapi", query=UserOpenAPIListQuery),
    _ep(
        "POST", "user-openapi/merge", "Merge Open A P I Specs", "openapi", AnyObject, required=True
    ),
    _ep("GET", "user-openapi/spec", "Serve Generated Spec", "openapi", query=UserOpenAPISpecQuery),
    _ep("GET", "user-openapi/schema", "Serve Schema File", "openapi", query=UserOpenAPISchemaQuery),
    _ep(
        "POST",
        "user-openapi/validate",
        "Validate User Schema",
        "openapi",
        AnyObject,
        required=True,
    ),
    _ep("DELETE", "sdk/{id}", "Delete S D K", "sdk"),
    _ep("GET", "sdk/{id}", "Get S D K", "sdk"),
    _ep("POST", "sdk/import", "Import S D K", "sdk", SdkImport, required=True),
    _ep("GET", "sdk/list", "List S D Ks", "sdk"),
    _ep("GET", "system/restart-status", "Get Restart Status", "system"),
    _ep("POST", "system/restart", "Restart Server", "system", SystemRestart),
)
