"""Sums of what the request workers report (``MonitorQuery`` over the link)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import psutil

from hoodyexec import clock
from hoodyexec.engine.monitor import BUCKETS
from hoodyexec.ipc.protocol import ScriptStats, WorkerMonitor

SORT_KEYS = (
    "lastActivity",
    "requests",
    "errors",
    "errorRate",
    "errors4xx",
    "errors5xx",
    "timeouts",
    "bytes",
    "avgMs",
    "offloads",
)


def iso(ts: float) -> str | None:
    return clock.iso(ts) if ts else None


def since_of(text: str | None) -> float | None:
    return clock.parse_iso(text) if text else None


def _errors(statuses: dict[str, int], low: int, high: int) -> int:
    return sum(n for code, n in statuses.items() if low <= int(code) < high)


class Sum:
    """One script's figures summed over workers."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.requests = 0
        self.statuses: dict[str, int] = {}
        self.timeouts = 0
        self.bytes = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.last = 0.0
        self.mode = ""
        self.offloads = 0
        self.samples: list[float] = []

    def add(self, s: ScriptStats) -> None:
        self.requests += s.requests
        for code, n in s.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        self.timeouts += s.timeouts
        self.bytes += s.bytes
        self.seconds += s.seconds
        for i, n in enumerate(s.buckets[: len(self.buckets)]):
            self.buckets[i] += n
        if s.last >= self.last:
            self.last, self.mode = s.last, s.mode
        self.offloads += s.offloads
        self.samples.extend(s.samples)

    def row(self) -> dict[str, Any]:
        e4, e5 = _errors(self.statuses, 400, 500), _errors(self.statuses, 500, 600)
        sub, _, rest = self.key.partition("/")
        eid, _, rel = rest.partition("/")
        return {
            "script": rel,
            "subdomain": sub,
            "execId": eid,
            "key": self.key,
            "requests": self.requests,
            "errors": e4 + e5,
            "errors4xx": e4,
            "errors5xx": e5,
            "errorRate": round((e4 + e5) / self.requests, 4) if self.requests else 0.0,
            "timeouts": self.timeouts,
            "bytes": self.bytes,
            "avgMs": round(self.seconds * 1000 / self.requests, 3) if self.requests else 0.0,
            "statuses": self.statuses,
            "lastActivity": iso(self.last),
            "mode": self.mode,
            "offloads": self.offloads,
        }


def summed(reports: Iterable[WorkerMonitor]) -> dict[str, Sum]:
    out: dict[str, Sum] = {}
    for report in reports:
        for s in report.scripts:
            out.setdefault(s.key, Sum(s.key)).add(s)
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(ordered[k], 3)


def process_figures(pid: int, cache: dict[int, psutil.Process]) -> dict[str, Any]:
    try:
        proc = cache.get(pid)
        if proc is None or not proc.is_running():
            proc = cache[pid] = psutil.Process(pid)
        with proc.oneshot():
            mem = proc.memory_info()
            times = proc.cpu_times()
            return {
                "rss": mem.rss,
                "cpu": proc.cpu_percent(interval=None),
                "cpuSeconds": round(times.user + times.system, 3),
            }
    except (psutil.Error, OSError):
        cache.pop(pid, None)
        return {"rss": None, "cpu": None, "cpuSeconds": None}


def uptime(started: float) -> float:
    return round(time.time() - started, 3)
