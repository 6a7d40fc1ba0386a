"""``Host`` header → instance: which ``<subdomain>/<execId>`` a request is for.

Script calls, management calls and the shared-state API all map a host the same
way, so one class does it. Falcon-free: the control worker uses it too.
"""

from __future__ import annotations

import re

DEFAULT_HOST_PATTERN = (
    r"^(?:(?P<subdomain>[A-Za-z0-9_-]+)\.)?exec-(?P<execId>[A-Za-z0-9_-]+)(?:[.:]|$)"
)

# Distinct Host values remembered per process.
HOST_CACHE = 4096


class HostMap:
    """``Host`` header → (subdomain, execId, hostname); unknown hosts → default/1."""

    __slots__ = ("pattern", "_cache")

    def __init__(self, pattern: str = DEFAULT_HOST_PATTERN) -> None:
        self.pattern = re.compile(pattern)
        self._cache: dict[str, tuple[str, str, str]] = {}

    def resolve(self, host: str) -> tuple[str, str, str]:
        hit = self._cache.get(host)
        if hit is not None:
            return hit
        hostname = (
            host.rsplit(":", 1)[0] if host.count(":") == 1 else host.strip("[]").split("]")[0]
        )
        hostname = hostname.lower()
        m = self.pattern.search(host.lower())
        sub, eid = "default", "1"
        if m:
            groups = m.groupdict()
            sub = groups.get("subdomain") or "default"
            eid = groups.get("execId") or "1"
        out = (sub, eid, hostname)
        if len(self._cache) < HOST_CACHE:
            self._cache[host] = out
        return out
