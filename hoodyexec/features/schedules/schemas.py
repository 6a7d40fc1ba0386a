"""Schedule endpoints, declared once."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/schedules/"


class SchedulesReload(Fields):
    dry_run: bool = False
    aliases: ClassVar[dict[str, str]] = {"dryRun": "dry_run"}


class SchedulesHistoryQuery(Fields):
    scriptPath: str | None = None  # noqa: N815 - the reference's names
    since: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    includeRotated: bool = False  # noqa: N815


class SchedulesTrigger(Fields):
    scriptPath: str  # noqa: N815
    force: bool = False
    execId: str | None = None  # noqa: N815 - for an instance-relative scriptPath
    subdomain: str | None = None
    aliases: ClassVar[dict[str, str]] = {"exec_id": "execId"}


LIST = Endpoint("GET", E + "list", "List Schedules", "schedules")
RELOAD = Endpoint(
    "POST",
    E + "reload",
    "Reload Schedules",
    "schedules",
    body=SchedulesReload,
    body_required=False,
    responses={200: "What was (or, with dry_run, would be) added, kept and removed"},
)
HISTORY = Endpoint(
    "GET",
    E + "history",
    "Schedule History",
    "schedules",
    query=SchedulesHistoryQuery,
    responses={200: "OK", 400: "Bad since or limit", 403: "Path is excluded from access"},
)
TRIGGER = Endpoint(
    "POST",
    E + "trigger",
    "Trigger Schedule",
    "schedules",
    body=SchedulesTrigger,
    responses={
        200: "Ran, or tried to: the run's status (ok, error, timeout) is in the answer",
        400: "Bad body",
        403: "Path is excluded from access, or the script has @token (force: true runs it)",
        404: "No script with a valid @schedule at that path",
    },
)
