"""Template endpoints, declared once."""

from __future__ import annotations

from typing import Any

from hoodyexec.http.spec import Endpoint, Fields, Scoped

E = "/api/v1/exec/templates/"


class TemplateListQuery(Scoped):
    category: str | None = None
    includeBuiltin: bool = True  # noqa: N815 - the API's names
    includeCustom: bool = True  # noqa: N815


class TemplatePreviewQuery(Scoped):
    name: str
    variables: str | None = None  # a JSON object, as text


class TemplateGenerateBody(Scoped):
    name: str
    variables: dict[str, Any] = {}
    outputPath: str | None = None  # noqa: N815
    saveFile: bool = False  # noqa: N815


# Template metadata may come in ``metadata`` or as top-level fields.
META_FIELDS = ("title", "description", "category", "variables", "filename", "tags")


class TemplateCreateBody(Scoped):
    name: str
    code: str
    metadata: dict[str, Any] | None = None
    title: str | None = None
    description: str | None = None
    category: str | None = None
    variables: list[Any] | None = None
    filename: str | None = None
    tags: list[Any] | None = None


class TemplateUpdateBody(Fields):
    code: str | None = None
    metadata: dict[str, Any] | None = None


NOT_FOUND = {404: "No such template"}
LIST = Endpoint("GET", E + "list", "List Templates", "templates", query=TemplateListQuery)
PREVIEW = Endpoint(
    "GET",
    E + "preview",
    "Preview Template",
    "templates",
    query=TemplatePreviewQuery,
    responses={200: "OK", 400: "Bad variables", **NOT_FOUND},
)
GENERATE = Endpoint(
    "POST",
    E + "generate",
    "Generate From Template",
    "templates",
    body=TemplateGenerateBody,
    query=Scoped,
    responses={
        200: "Rendered",
        201: "Rendered and saved (saveFile)",
        400: "Bad variables, or the saved script does not validate",
        403: "Path is excluded from access",
        409: "A file stands where a folder is needed",
        **NOT_FOUND,
    },
)
CREATE = Endpoint(
    "POST",
    E + "create-custom",
    "Create Custom Template",
    "templates",
    body=TemplateCreateBody,
    query=Scoped,
    responses={201: "Created", 400: "Bad name, code or metadata", 409: "Exists, or a built-in"},
)
UPDATE = Endpoint(
    "PUT",
    E + "update-custom/{name}",
    "Update Custom Template",
    "templates",
    body=TemplateUpdateBody,
    query=Scoped,
    body_required=False,
    responses={200: "Updated", 400: "Bad code or metadata", 409: "A built-in", **NOT_FOUND},
)
DELETE = Endpoint(
    "DELETE",
    E + "delete-custom/{name}",
    "Delete Custom Template",
    "templates",
    query=Scoped,
    responses={200: "Deleted", 409: "A built-in", **NOT_FOUND},
)
