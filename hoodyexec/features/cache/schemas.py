"""Cache endpoints, declared once."""

from __future__ import annotations

from hoodyexec.http.spec import Endpoint, Fields


class CacheClear(Fields):
    hostname: str | None = None
    scriptPath: str | None = None  # noqa: N815 - the reference's names (refused: 400)
    clearVm: bool = True  # noqa: N815
    clearState: bool = False  # noqa: N815
    clearAll: bool = False  # noqa: N815


CLEAR = Endpoint(
    "POST",
    "/api/v1/exec/cache/clear",
    "Clear Cache",
    "cache",
    body=CacheClear,
    body_required=False,
    responses={
        200: "What each worker dropped, and whether the shared state was cleared",
        400: "scriptPath is no longer supported (the cache is kept per hostname)",
    },
    description="Drops the compiled scripts of one instance (the hostname's, else the "
    "request's Host) or of all (clearAll) in every worker: the next call compiles afresh "
    "and module globals start over. clearState also clears that instance's shared state.",
)
