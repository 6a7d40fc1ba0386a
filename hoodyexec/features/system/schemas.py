"""System endpoints, declared once: health, restart, restart status, drain."""

from __future__ import annotations

from typing import Annotated

import msgspec

from hoodyexec.http.auth import HEALTH_PATH
from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/system/"

# An hour: far above any sane drain; graceful-timeout caps it in practice.
DrainMs = Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]


class SystemRestart(Fields):
    graceful: bool = True
    drainTimeoutMs: DrainMs = 5000  # noqa: N815 - the reference's names
    reason: Annotated[str, msgspec.Meta(max_length=500)] = "API restart request"


class SystemDrain(Fields):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = "drain requested"
    wait: bool = False  # answer once nothing is in flight (or timeoutMs passed)
    timeoutMs: DrainMs = 30_000  # noqa: N815


HEALTH = Endpoint(
    "GET",
    HEALTH_PATH,
    "Health Check",
    "health",
    public=True,
    responses={
        200: "Serving: every request worker has linked",
        503: 'Starting: not every request worker has linked yet ({"status": "starting"}, '
        'Retry-After), or taken out of rotation ({"status": "draining"})',
    },
)
RESTART = Endpoint(
    "POST",
    E + "restart",
    "Restart Server",
    "system",
    body=SystemRestart,
    body_required=False,
    responses={
        202: "Accepted: every worker is replaced, in-flight requests drain first",
        400: "Bad body",
        409: "A restart is already requested or running",
        503: "No master process to signal",
    },
)
RESTART_STATUS = Endpoint(
    "GET",
    E + "restart-status",
    "Get Restart Status",
    "system",
    responses={200: "idle, draining or restarting, and the last restart's account"},
)
DRAIN = Endpoint(
    "POST",
    E + "drain",
    "Drain",
    "system",
    body=SystemDrain,
    body_required=False,
    responses={200: "Out of rotation: health answers 503 draining; requests are still served"},
    description="Not in the reference API: the `hoodyexec drain` command uses it.",
    extension=True,
)
UNDRAIN = Endpoint(
    "POST",
    E + "undrain",
    "Undrain",
    "system",
    responses={200: "Back in rotation"},
    description="Not in the reference API: the `hoodyexec undrain` command uses it.",
    extension=True,
)
