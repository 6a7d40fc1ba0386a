"""Prometheus metrics in prometheus-client's multiprocess mode.

The master points ``PROMETHEUS_MULTIPROC_DIR`` at ``<home>/run/metrics`` (emptied
at start) before any process imports prometheus-client, so every process —
master, request workers, control worker — writes its own files there and the
control worker's ``monitor/metrics`` sums them: counters survive a worker's
replacement, and a dead worker's live gauges are dropped by
``mark_process_dead`` when the master reaps it.

Request workers never touch these per request: ``Flusher`` copies what the
worker's ``Monitor`` counted into them once a second (and when the worker
stops), so the hot path pays for plain integer additions only.
"""

from __future__ import annotations

import glob
import os
import sys
from functools import cache
from typing import Any

from hoodyexec.engine.monitor import BUCKETS, Monitor

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_dir(path: str) -> None:
    """Called by the master before it forks: a fresh folder, named in the environment."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.unlink(stale)
    os.environ[ENV] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already: its value class was chosen without the folder
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


@cache
def metrics() -> dict[str, Any]:
    """The kit's metrics, created once per process (after ``prepare_dir``)."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "requests": Counter(
            "hoodyexec_requests",
            "Script executions by script, instance and HTTP status.",
            ["script", "instance", "status"],
        ),
        "duration": Histogram(
            "hoodyexec_request_duration_seconds",
            "Script execution time, from the start of the run to its last byte.",
            ["script", "instance"],
            buckets=BUCKETS,
        ),
        "timeouts": Counter(
            "hoodyexec_timeouts", "Executions stopped by @timeout.", ["script", "instance"]
        ),
        "active": Gauge(
            "hoodyexec_active_requests",
            "Script executions in flight (sampled once a second per worker).",
            multiprocess_mode="livesum",
        ),
        "recycles": Counter(
            "hoodyexec_worker_recycles",
            "Request or control workers that exited while the kit kept running.",
            ["role"],
        ),
        "fires": Counter("hoodyexec_schedule_fires", "Schedule fires by outcome.", ["status"]),
    }


def mark_dead(pid: int) -> None:
    """The master reaped ``pid``: drop its live gauges."""
    path = os.environ.get(ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def count_recycle(role: str) -> None:
    if os.environ.get(ENV):
        metrics()["recycles"].labels(role).inc()


def count_fire(status: str) -> None:
    if os.environ.get(ENV):
        metrics()["fires"].labels(status).inc()


class Flusher:
    """Copies a worker's ``Monitor`` increments into the metrics."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        # file → (per-status counts, timeouts, bucket counts, seconds) already sent
        self.sent: dict[str, tuple[dict[int, int], int, list[int], float]] = {}

    def __call__(self) -> None:
        monitor = self.monitor
        monitor.drain()  # also bounds the worker's pending records without metrics
        if not os.environ.get(ENV):
            return
        m = metrics()
        m["active"].set(len(monitor.active))
        for file, f in list(monitor.scripts.items()):
            statuses, timeouts, buckets, seconds = self.sent.get(file, ({}, 0, [], 0.0))
            if f.requests == sum(statuses.values()):
                continue
            name = monitor.name(file)
            sub, _, rest = name.partition("/")
            eid, _, script = rest.partition("/")
            instance = f"{sub}/{eid}"
            for status, n in list(f.statuses.items()):
                delta = n - statuses.get(status, 0)
                if delta:
                    m["requests"].labels(script, instance, str(status)).inc(delta)
            if f.timeouts > timeouts:
                m["timeouts"].labels(script, instance).inc(f.timeouts - timeouts)
            hist = m["duration"].labels(script, instance)
            # prometheus-client (pinned) keeps a child's buckets as values in
            # ``_buckets`` and its sum in ``_sum``: add the counts, not samples.
            for i, n in enumerate(f.buckets):
                delta = n - (buckets[i] if buckets else 0)
                if delta:
                    hist._buckets[i].inc(delta)
            hist._sum.inc(f.seconds - seconds)
            self.sent[file] = (dict(f.statuses), f.timeouts, list(f.buckets), f.seconds)


def exposition(extra: list[Any] | None = None) -> bytes:
    """The text exposition of every process's metrics (control worker)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    path = os.environ.get(ENV)
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    for collector in extra or ():
        registry.register(collector)
    return bytes(generate_latest(registry))
