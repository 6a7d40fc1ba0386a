"""The request worker's gateway (http/gateway.py) in-process: management calls
forwarded over a real control socket, and what it answers without one."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import falcon.testing
import pytest

from hoodyexec.http.gateway import create_gateway
from hoodyexec.ipc.hub import ControlServer

from ..features.helpers import management


@pytest.fixture
def sock_path():
    with tempfile.TemporaryDirectory() as d:
        yield str(Path(d) / "c.sock")


def test_gateway_forwards_management_calls(sock_path):
    async def main():
        server = ControlServer(sock_path, management(token="t"))
        await server.start()
        gateway = create_gateway(sock_path, pid=5, link_client=False)
        async with falcon.testing.ASGIConductor(gateway) as conductor:
            r = await conductor.simulate_get("/api/v1/exec/health")
            assert r.status_code == 200 and r.json["workers"] == [11, 12]
            assert r.headers["content-length"] == str(len(r.content))
            r = await conductor.simulate_get(
                "/api/v1/exec/list", headers={"Authorization": "Bearer t"}
            )
            assert r.status_code == 404  # forwarded past the token (no home: no list)
            r = await conductor.simulate_get("/api/v1/exec/list")
            assert r.status_code == 401
            r = await conductor.simulate_get("/openapi.yaml", headers={"Authorization": "Bearer t"})
            assert r.status_code == 200 and r.headers["content-type"] == "application/yaml"
            # not a management path: never forwarded
            r = await conductor.simulate_get("/api/v1/execute")
            assert r.status_code == 404 and r.json["error"] == "No script at /api/v1/execute"
        await server.close()

    asyncio.run(main())


def test_gateway_without_control_worker_is_503_with_retry_after(sock_path):
    async def main():
        gateway = create_gateway(sock_path, pid=5, link_client=False, connect_timeout=0.2)
        async with falcon.testing.ASGIConductor(gateway) as conductor:
            r = await conductor.simulate_get("/api/v1/exec/health")
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "control worker unavailable" in r.json["error"]
            r = await conductor.simulate_get("/hello")
            assert r.status_code == 404

    asyncio.run(main())
