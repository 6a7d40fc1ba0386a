"""Declarations of the reference endpoints this version does not serve yet.

They answer 501, but the OpenAPI document still describes their parameters and
bodies, as the reference documents them. When a capability lands, its feature
folder declares these endpoints itself and the entry here goes.
"""

from __future__ import annotations

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/"


class AnyObject(Fields):
    """A free-form JSON object (the reference documents no fields)."""


class CacheClear(Fields):
    hostname: str | None = None
    scriptPath: str | None = None  # noqa: N815 - the reference's names
    clearVm: bool = True  # noqa: N815
    clearState: bool = False  # noqa: N815
    clearAll: bool = False  # noqa: N815


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
    _ep("GET", "system/restart-status", "Get Restart Status", "system"),
    _ep("POST", "system/restart", "Restart Server", "system", SystemRestart),
)
