"""Logs endpoints, declared once."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/logs/"

LogType = Literal["script", "access", "kit", "schedule"]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class LogsListQuery(Fields):
    type: LogType | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 1000


class LogsRead(Fields):
    file: str
    executionId: str | None = None  # noqa: N815 - the reference's names
    lines: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 100
    tail: bool = True
    search: Pattern | None = None
    caseSensitive: bool = False  # noqa: N815


class LogsSearch(Fields):
    query: Pattern | None = None
    regex: Pattern | None = None
    files: list[str] = []
    type: LogType | None = None
    executionId: str | None = None  # noqa: N815
    limit: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 1000
    caseSensitive: bool = False  # noqa: N815


class LogsStreamQuery(Fields):
    file: str
    follow: bool = False
    lines: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 20
    executionId: str | None = None  # noqa: N815


class LogsClearQuery(Fields):
    file: str | None = None
    type: LogType | None = None
    olderThanDays: Annotated[float, msgspec.Meta(ge=0)] | None = None  # noqa: N815
    confirm: str | None = None


_NAMES = {403: "Path is excluded from access", 404: "No such log file"}

LIST = Endpoint(
    "GET",
    E + "list",
    "List Logs",
    "logs",
    query=LogsListQuery,
    responses={200: "Log files, newest modified first", 400: "Bad type or limit"},
)
READ = Endpoint(
    "POST",
    E + "read",
    "Read Log",
    "logs",
    body=LogsRead,
    responses={200: "The lines", 400: "Bad body", **_NAMES},
)
SEARCH = Endpoint(
    "POST",
    E + "search",
    "Search Logs",
    "logs",
    body=LogsSearch,
    responses={
        200: "Matching lines (truncated: true when a limit or the time budget stopped it)",
        400: "Bad body or regex",
        **_NAMES,
    },
)
STREAM = Endpoint(
    "GET",
    E + "stream",
    "Stream Logs",
    "logs",
    query=LogsStreamQuery,
    responses={200: "text/event-stream: the last lines, then new ones", 400: "Bad query", **_NAMES},
)
CLEAR = Endpoint(
    "DELETE",
    E + "clear",
    "Clear Logs",
    "logs",
    query=LogsClearQuery,
    responses={
        200: "What was truncated or removed",
        400: "confirm=true missing, or a bad query",
        **_NAMES,
    },
)
