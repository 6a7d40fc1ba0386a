"""Times as the API shows them, and process liveness: small helpers every layer uses.

It imports nothing internal but errors.
"""

from __future__ import annotations

import datetime as dt
import os

from hoodyexec.errors import BadRequest


def iso(ts: float, *, millis: bool = True) -> str:
    """Epoch seconds → ISO 8601 UTC with a ``Z`` (milliseconds, or microseconds)."""
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    text = when.isoformat(timespec="milliseconds") if millis else when.isoformat()
    return text.replace("+00:00", "Z")


def parse_iso(text: str, field: str = "since") -> float:
    """ISO 8601 (``Z`` or an offset; none means UTC) → epoch seconds; else a 400."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{field} must be an ISO 8601 time, got {text!r}", field=field) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
