"""Monitoring endpoints, declared once."""

from __future__ import annotations

from hoodyexec.http.spec import Endpoint, Fields

E = "/api/v1/exec/monitor/"


class ClusterQuery(Fields):
    # every live node of the cluster (a shared state backend), each its own answer
    cluster: bool = False


class ActiveQuery(ClusterQuery):
    stacks: bool = False


class ScriptsQuery(ClusterQuery):
    limit: int = 100  # clamped to [1, 500]
    sort: str = "lastActivity"


class PerformanceBody(Fields):
    script: str | None = None
    since: str | None = None


STATS = Endpoint(
    "GET",
    E + "stats",
    "Get Stats",
    "monitor",
    query=ClusterQuery,
    responses={200: "OK", 400: "cluster=true without a shared state backend"},
)
ACTIVE = Endpoint(
    "GET",
    E + "active-requests",
    "Get Active Requests",
    "monitor",
    query=ActiveQuery,
    responses={200: "Every script execution in flight, in every worker"},
)
SCRIPTS = Endpoint(
    "GET",
    E + "scripts",
    "List Monitor Scripts",
    "monitor",
    query=ScriptsQuery,
    responses={200: "OK", 400: "Unknown sort key"},
)
PERFORMANCE = Endpoint(
    "POST",
    E + "script-performance",
    "Get Script Performance",
    "monitor",
    body=PerformanceBody,
    body_required=False,
    query=ClusterQuery,
    responses={200: "OK", 400: "Bad since"},
)
METRICS = Endpoint(
    "GET",
    E + "metrics",
    "Prometheus Export",
    "monitor",
    responses={200: "Prometheus text exposition format 0.0.4"},
)
