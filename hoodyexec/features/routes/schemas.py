"""Route endpoints, declared once."""

from __future__ import annotations

from typing import Any, ClassVar

from hoodyexec.http.spec import Endpoint, Scoped

E = "/api/v1/exec/route/"


class RouteDiscoverBody(Scoped):
    baseDir: str = ""  # noqa: N815 - the API's names
    includeMetadata: bool = False  # noqa: N815


class RouteResolveBody(Scoped):
    path: str
    aliases: ClassVar[dict[str, str]] = {"exec_id": "execId", "url": "path", "route": "path"}


class RouteTestBody(Scoped):
    path: str
    method: str = "GET"
    query: dict[str, Any] = {}
    headers: dict[str, str | int | float | bool] = {}
    body: Any = None


DISCOVER = Endpoint(
    "POST",
    E + "discover",
    "Discover Routes",
    "route",
    body=RouteDiscoverBody,
    query=Scoped,
    body_required=False,
    responses={200: "OK", 403: "Path is excluded from access"},
)
RESOLVE = Endpoint(
    "POST",
    E + "resolve",
    "Resolve Route",
    "route",
    body=RouteResolveBody,
    query=Scoped,
    responses={200: "matched true or false"},
)
TEST = Endpoint(
    "POST",
    E + "test",
    "Test Route",
    "route",
    body=RouteTestBody,
    query=Scoped,
    responses={
        200: "The script's answer (status, headers, body, truncated, timedOut)",
        502: "The request worker running it exited",
        503: "No request worker is linked",
    },
    description="Runs the script in a request worker under its @timeout; at most 1 MiB "
    "of its answer is kept.",
)
