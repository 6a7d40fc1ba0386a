"""Magic-comment endpoints, declared once."""

from __future__ import annotations

from typing import Any

from hoodyexec.http.spec import Endpoint, Scoped

E = "/api/v1/exec/magic-comments/"

Comments = dict[str, Any] | str  # name → value (null removes), or "# @name value" lines


class MagicReadQuery(Scoped):
    path: str


class MagicUpdateBody(Scoped):
    path: str
    comments: Comments
    dry_run: bool = False


class MagicBulkBody(Scoped):
    comments: Comments
    directory: str = ""
    extension: str = ".py"
    recursive: bool = True
    dry_run: bool = False


SCHEMA = Endpoint("GET", E + "schema", "Get Magic Comments Schema", "magic")
READ = Endpoint(
    "GET",
    E + "read",
    "Read Magic Comments",
    "magic",
    query=MagicReadQuery,
    responses={200: "OK", 403: "Path is excluded from access", 404: "No such script"},
)
UPDATE = Endpoint(
    "PUT",
    E + "update",
    "Update Magic Comments Handler",
    "magic",
    body=MagicUpdateBody,
    query=Scoped,
    responses={
        200: "Updated (or the dry run's result)",
        400: "Invalid comment name or value (the field is named)",
        403: "Path is excluded from access",
        404: "No such script",
    },
)
BULK = Endpoint(
    "POST",
    E + "bulk-update",
    "Bulk Update Magic Comments",
    "magic",
    body=MagicBulkBody,
    query=Scoped,
    responses={
        200: "Per-file results",
        400: "Invalid comment name or value, checked before any file is touched",
        403: "Path is excluded from access",
        404: "No such folder",
    },
)
