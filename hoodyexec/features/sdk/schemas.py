"""SDK endpoints, declared once: the import body, the scope, statuses."""

from __future__ import annotations

from typing import ClassVar

from hoodyexec.http.spec import Endpoint, Fields, Scoped

E = "/api/v1/exec/sdk/"


class SdkImport(Fields):
    execId: str  # noqa: N815 - the reference's names
    source_url: str
    source_auth: str | None = None
    middleware: str | None = None
    magic_comments: str | None = None
    force: bool = False
    # Additions: the SDK's id (default: from the document's title), the instance's
    # subdomain, and the upstream base URL when the document has none usable.
    name: str | None = None
    subdomain: str | None = None
    base_url: str | None = None
    aliases: ClassVar[dict[str, str]] = {"exec_id": "execId"}


SCOPE = {400: "Invalid execId, subdomain or id"}
NOT_FOUND = {404: "No such SDK in this instance"}

IMPORT = Endpoint(
    "POST",
    E + "import",
    "Import S D K",
    "sdk",
    body=SdkImport,
    query=Scoped,
    responses={
        201: "Imported",
        200: "Replaced (force)",
        400: "Bad field, not an OpenAPI 3 document, or a generated script failed validation",
        403: "A file source outside the kit's home",
        404: "A file source that does not exist",
        409: "The SDK exists (force is false), or a file it would write exists and is not its own",
        413: "The document is over the size limit",
        502: "The document could not be fetched (unreachable, timed out, error status)",
    },
    description="Fetches an OpenAPI 3 document and generates _sdk/<id>.py (a typed async "
    "client) and one proxy script per route in the instance. Limits: 5 MiB, 10 s, "
    "5 redirects (http(s) only), 500 operations.",
)
LIST = Endpoint(
    "GET", E + "list", "List S D Ks", "sdk", query=Scoped, responses={200: "OK", **SCOPE}
)
GET = Endpoint(
    "GET",
    E + "{id}",
    "Get S D K",
    "sdk",
    query=Scoped,
    responses={200: "OK", **SCOPE, **NOT_FOUND},
)
DELETE = Endpoint(
    "DELETE",
    E + "{id}",
    "Delete S D K",
    "sdk",
    query=Scoped,
    responses={200: "Deleted (edited files kept and reported)", **SCOPE, **NOT_FOUND},
)
