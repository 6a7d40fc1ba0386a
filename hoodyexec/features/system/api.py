"""System: ``GET /api/v1/exec/health``."""

from __future__ import annotations

import time

import falcon.asgi

from hoodyexec import __version__
from hoodyexec.http import errors
from hoodyexec.http.auth import HEALTH_PATH
from hoodyexec.http.context import Context, WorkerPids
from hoodyexec.http.endpoint import FalconApp
from hoodyexec.http.spec import Endpoint


class Health:
    """Health tells the truth: ``starting`` (503) until every configured request
    worker has linked once, then ``ok`` with the live workers that answered."""

    def __init__(
        self,
        started: float,
        master_pid: int,
        control_pid: int,
        worker_pids: WorkerPids,
        expected_workers: int = 1,
    ) -> None:
        self.started = started
        self.master_pid = master_pid
        self.control_pid = control_pid
        self.worker_pids = worker_pids
        self.expected_workers = expected_workers
        self.up = False  # latched once all workers have linked

    async def __call__(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, _: None, __: None
    ) -> None:
        workers = await self.worker_pids()
        self.up = self.up or len(workers) >= self.expected_workers
        errors.json_response(
            resp,
            {
                "status": "ok" if self.up else "starting",
                "version": __version__,
                "uptime": round(time.time() - self.started, 3),
                "master": self.master_pid,
                "workers": workers,
                "control": self.control_pid,
            },
            status=200 if self.up else 503,
        )
        if not self.up:
            resp.set_header("Retry-After", "1")


HEALTH = Endpoint(
    "GET",
    HEALTH_PATH,
    "Health Check",
    "health",
    public=True,
    responses={
        200: "Serving: every request worker has linked",
        503: 'Starting: not every request worker has linked yet ({"status": "starting"}, '
        "Retry-After)",
    },
)


def register(app: FalconApp, ctx: Context) -> None:
    ctx.route(
        HEALTH,
        Health(ctx.started, ctx.master_pid, ctx.control_pid, ctx.worker_pids, ctx.expected_workers),
    )
