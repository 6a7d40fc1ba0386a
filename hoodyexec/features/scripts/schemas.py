"""Scripts endpoints, declared once: bodies, queries, statuses."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from hoodyexec.http.spec import Endpoint, Scoped

E = "/api/v1/exec/scripts/"


class ScriptPathQuery(Scoped):
    path: str


class ScriptDeleteQuery(ScriptPathQuery):
    confirm: Literal["true", "false"] | None = None


class ScriptListQuery(Scoped):
    dir: str = ""
    filter: str | None = None
    metadata: bool = False
    label: str | None = None
    tags: str | list[str] | None = None
    mode: Literal["auto", "inline", "thread"] | None = None
    enabled: bool | None = None
    websocket: bool | None = None
    recursive: bool = True
    include_comments: bool = False
    aliases: ClassVar[dict[str, str]] = {"exec_id": "execId", "directory": "dir"}


class ScriptWriteBody(Scoped):
    path: str
    content: str
    createDirs: bool = True  # noqa: N815
    validate: bool = True


class ScriptMoveBody(Scoped):
    from_: str = msgspec.field(name="from")
    to: str
    overwrite: bool = False


class ScriptTreeBody(Scoped):
    baseDir: str = ""  # noqa: N815
    maxDepth: Annotated[int, msgspec.Meta(ge=0, le=64)] = 10  # noqa: N815
    includeMetadata: bool = False  # noqa: N815


PATH_ERRORS = {
    400: "Invalid field or path",
    403: "Path is excluded from access",
}

WRITE = Endpoint(
    "POST",
    E + "write",
    "Write Script",
    "scripts",
    body=ScriptWriteBody,
    query=Scoped,
    responses={
        201: "Created",
        200: "Overwritten",
        **PATH_ERRORS,
        409: "A file stands where a folder is needed",
    },
)
READ = Endpoint(
    "GET",
    E + "read",
    "Read Script",
    "scripts",
    query=ScriptPathQuery,
    responses={200: "OK", **PATH_ERRORS, 404: "No such file"},
)
LIST = Endpoint(
    "GET",
    E + "list",
    "List Scripts",
    "scripts",
    query=ScriptListQuery,
    responses={200: "OK", **PATH_ERRORS, 404: "No such folder"},
)
DELETE = Endpoint(
    "DELETE",
    E + "delete",
    "Delete Script",
    "scripts",
    query=ScriptDeleteQuery,
    body=Scoped,
    body_required=False,
    responses={200: "Deleted", **PATH_ERRORS, 404: "No such file"},
    description="Needs confirm=true. execId/subdomain may also come in a JSON body "
    "(the query wins).",
)
MOVE = Endpoint(
    "POST",
    E + "move",
    "Move Script",
    "scripts",
    body=ScriptMoveBody,
    query=Scoped,
    responses={
        200: "Moved",
        **PATH_ERRORS,
        404: "No such source",
        409: "The target exists (overwrite=false) or a file stands in the way",
    },
)
TREE = Endpoint(
    "POST",
    E + "tree",
    "Get Script Tree",
    "scripts",
    body=ScriptTreeBody,
    query=Scoped,
    body_required=False,
    responses={200: "OK", **PATH_ERRORS, 404: "No such folder"},
)
IDS = Endpoint("GET", "/api/v1/exec/list", "List All Exec Ids", "ids")
