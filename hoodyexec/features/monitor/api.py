"""Management API: ``monitor/stats|active-requests|scripts|script-performance|metrics``.

Every figure comes from the request workers themselves (``MonitorQuery`` over
the link, answered from memory) and is summed here; process figures come from
psutil. ``metrics`` is prometheus-client's multiprocess exposition plus the
kit's processes' memory and CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.asgi
import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hoodyexec.engine import metrics
from hoodyexec.errors import BadRequest
from hoodyexec.http import errors
from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.ipc.protocol import MonitorQuery, WorkerMonitor

from . import cluster
from .schemas import (
    ACTIVE,
    METRICS,
    PERFORMANCE,
    SCRIPTS,
    STATS,
    ActiveQuery,
    ClusterQuery,
    PerformanceBody,
    ScriptsQuery,
)
from .service import (
    SORT_KEYS,
    iso,
    percentile,
    process_figures,
    since_of,
    summed,
    uptime,
)

GATHER_TIMEOUT = 1.0


class MonitorAPI:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._procs: dict[int, psutil.Process] = {}

    async def _reports(self, query: MonitorQuery | None = None) -> list[WorkerMonitor]:
        if self.ctx.gather is None:
            return []
        replies = await self.ctx.gather(query or MonitorQuery(), GATHER_TIMEOUT)
        return sorted(
            (r.answer for r in replies if isinstance(r.answer, WorkerMonitor)),
            key=lambda w: w.pid,
        )

    async def _cluster(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: Any = None
    ) -> None:
        """The same call to every live node (``?cluster=true``), each node's answer."""
        backend = self.ctx.backend
        registry = backend.nodes() if backend is not None else None
        if registry is None:
            raise BadRequest(
                "cluster=true needs a shared state backend (state-url of PostgreSQL or Redis)",
                field="cluster",
            )
        nodes = await asyncio.to_thread(registry.nodes, time.time())
        params = {k: str(v) for k, v in req.params.items() if k != "cluster"}
        token = self.ctx.settings.token if self.ctx.settings is not None else None
        answers = await cluster.gather(
            nodes, self.ctx.node, req.method, req.path, params, body, token
        )
        errors.json_response(
            resp,
            {
                "success": True,
                "cluster": True,
                "node": self.ctx.node,
                "count": len(answers),
                "reachable": sum(1 for a in answers if a["reachable"]),
                "nodes": answers,
            },
        )

    async def stats(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, q: ClusterQuery
    ) -> None:
        if q.cluster:
            return await self._cluster(req, resp)
        reports = await self._reports()
        sums = summed(reports)
        total = sum(s.requests for s in sums.values())
        errors_n = sum(s.row()["errors"] for s in sums.values())
        active = sum(len(r.active) for r in reports)
        cron = self.ctx.facts.get("cron")
        workers = [
            {
                "pid": r.pid,
                **process_figures(r.pid, self._procs),
                "requests": sum(s.requests for s in r.scripts),
                "active": len(r.active),
                "rate1m": r.rate1m,
                "instances": r.instances,
                "uptime": uptime(r.started),
            }
            for r in reports
        ]
        body = {
            "success": True,
            "uptime": uptime(self.ctx.started),
            "requests": {
                "total": total,
                "active": active,
                "errors": errors_n,
                "errorRate": round(errors_n / total, 4) if total else 0.0,
                "rate1m": round(sum(r.rate1m for r in reports), 3),
            },
            "websocket": _websocket(reports),
            "cron": cron() if cron is not None else None,
            "cache": {
                "instances": max((r.instances for r in reports), default=0),
                "scripts": len(sums),
            },
            "workers": workers,
            "master": {
                "pid": self.ctx.master_pid,
                **process_figures(self.ctx.master_pid, self._procs),
            },
            "control": {
                "pid": self.ctx.control_pid,
                **process_figures(self.ctx.control_pid, self._procs),
            },
        }
        errors.json_response(resp, body)

    async def active(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: ActiveQuery
    ) -> None:
        if query.cluster:
            return await self._cluster(req, resp)
        reports = await self._reports(MonitorQuery(stacks=query.stacks))
        items = []
        for r in reports:
            for a in r.active:
                item: dict[str, Any] = {
                    "executionId": a.execution_id,
                    "script": a.script,
                    "method": a.method,
                    "path": a.path,
                    "startedAt": iso(a.started_at),
                    "elapsedMs": a.elapsed_ms,
                    "mode": a.mode,
                    "workerPid": r.pid,
                }
                if query.stacks:
                    item["stack"] = a.stack
                items.append(item)
        items.sort(key=lambda i: -float(i["elapsedMs"]))
        errors.json_response(
            resp, {"success": True, "requests": items, "active": items, "count": len(items)}
        )

    async def scripts(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, query: ScriptsQuery
    ) -> None:
        if query.cluster:
            return await self._cluster(req, resp)
        if query.sort not in SORT_KEYS:
            raise BadRequest(
                f"unknown sort {query.sort!r} (one of {', '.join(SORT_KEYS)})", field="sort"
            )
        limit = max(1, min(500, query.limit))
        sums = list(summed(await self._reports()).values())
        if query.sort == "lastActivity":
            # The time itself: the ISO string is rounded to the millisecond, and
            # two scripts answered within one millisecond would tie.
            sums.sort(key=lambda s: s.last, reverse=True)
        rows = [s.row() for s in sums]
        if query.sort != "lastActivity":
            rows.sort(key=lambda r: r[query.sort], reverse=True)
        errors.json_response(
            resp,
            {
                "success": True,
                "scripts": rows[:limit],
                "count": min(limit, len(rows)),
                "total": len(rows),
                "sort": query.sort,
                "limit": limit,
            },
        )

    async def performance(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        body: PerformanceBody,
        query: ClusterQuery,
    ) -> None:
        since = since_of(body.since)
        if query.cluster:
            sent = {"script": body.script, "since": body.since}
            return await self._cluster(req, resp, {k: v for k, v in sent.items() if v})
        reports = await self._reports(MonitorQuery(samples=True, since=since))
        rows = []
        for key, s in sorted(summed(reports).items()):
            row = s.row()
            if body.script and body.script not in (row["script"], row["key"]):
                continue
            samples = s.samples
            rows.append(
                {
                    "script": row["script"],
                    "key": key,
                    "subdomain": row["subdomain"],
                    "execId": row["execId"],
                    "count": row["requests"],
                    "errors": row["errors"],
                    "errorRate": row["errorRate"],
                    "timeouts": row["timeouts"],
                    "avgMs": row["avgMs"],
                    "samples": len(samples),
                    "p50": percentile(samples, 0.50),
                    "p95": percentile(samples, 0.95),
                    "p99": percentile(samples, 0.99),
                    "lastActivity": row["lastActivity"],
                }
            )
        errors.json_response(
            resp, {"success": True, "scripts": rows, "count": len(rows), "since": body.since}
        )

    async def metrics(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, q: None
    ) -> None:
        pids = [("master", self.ctx.master_pid), ("control", self.ctx.control_pid)]
        pids += [("worker", pid) for pid in await self.ctx.worker_pids()]
        resp.data = metrics.exposition([_Processes(pids, self._procs)])
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"


def _websocket(reports: list[WorkerMonitor]) -> dict[str, int]:
    """WebSocket sessions summed over the workers: open now, accepted since each
    worker started, messages (received from clients + sent to them)."""
    received = sum(r.websocket.received for r in reports)
    sent = sum(r.websocket.sent for r in reports)
    return {
        "open": sum(r.websocket.open for r in reports),
        "total": sum(r.websocket.total for r in reports),
        "messages": received + sent,
        "received": received,
        "sent": sent,
    }


class _Processes(Collector):
    """Memory and CPU of every kit process (multiprocess mode has no process metrics)."""

    def __init__(self, pids: list[tuple[str, int]], cache: dict[int, psutil.Process]) -> None:
        self.pids = pids
        self.cache = cache

    def collect(self) -> Iterator[Any]:
        rss = GaugeMetricFamily(
            "hoodyexec_process_resident_memory_bytes",
            "Resident memory of each kit process.",
            labels=["role", "pid"],
        )
        cpu = CounterMetricFamily(
            "hoodyexec_process_cpu_seconds",
            "CPU time (user + system) of each kit process.",
            labels=["role", "pid"],
        )
        for role, pid in self.pids:
            figures = process_figures(pid, self.cache)
            if figures["rss"] is None:
                continue
            rss.add_metric([role, str(pid)], figures["rss"])
            cpu.add_metric([role, str(pid)], figures["cpuSeconds"])
        yield rss
        yield cpu


def register(app: FalconApp, ctx: Context) -> None:
    api = MonitorAPI(ctx)
    ctx.route(STATS, api.stats)
    ctx.route(ACTIVE, api.active)
    ctx.route(SCRIPTS, api.scripts)
    ctx.route(PERFORMANCE, api.performance)
    ctx.route(METRICS, api.metrics)
