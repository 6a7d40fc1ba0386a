"""The HTTP apps in-process (falcon's test tools, no sockets but the control one)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import falcon.testing
import pytest

from hoodyexec import __version__
from hoodyexec.http.gateway import create_gateway
from hoodyexec.http.management import create_management
from hoodyexec.ipc.hub import ControlServer


async def two_workers() -> list[int]:
    return [11, 12]


def management(token=None):
    return create_management(
        started=0.0, master_pid=1, control_pid=2, worker_pids=two_workers, token=token
    )


def test_health_shape():
    r = falcon.testing.TestClient(management()).simulate_get("/api/v1/exec/health")
    assert r.status_code == 200
    body = r.json
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["master"] == 1 and body["control"] == 2 and body["workers"] == [11, 12]
    assert body["uptime"] > 0


def test_reference_endpoints_answer_501_until_built():
    client = falcon.testing.TestClient(management())
    r = client.simulate_post(
        "/api/v1/exec/scripts/write", json={"path": "a.py", "content": "return 1"}
    )
    assert r.status_code == 501 and "not implemented" in r.json["error"]
    r = client.simulate_delete("/api/v1/exec/sdk/abc")
    assert r.status_code == 501
    r = client.simulate_get("/openapi.json")
    assert r.status_code == 200 and r.json["openapi"].startswith("3.")


def test_unknown_and_wrong_method_are_json():
    client = falcon.testing.TestClient(management())
    r = client.simulate_get("/api/v1/exec/does-not-exist")
    assert r.status_code == 404 and "Unknown management endpoint" in r.json["error"]
    r = client.simulate_get("/api/v1/exec/scripts/write")
    assert r.status_code == 405 and r.headers["Allow"] == "POST" and r.json["error"]
    r = client.simulate_post("/api/v1/exec/health")
    assert r.status_code == 405 and r.json["error"]


def test_token_guards_everything_but_health():
    client = falcon.testing.TestClient(management(token="tok"))
    assert client.simulate_get("/api/v1/exec/health").status_code == 200
    assert client.simulate_get("/api/v1/exec/list").status_code == 401
    assert (
        client.simulate_get("/api/v1/exec/list", headers={"Authorization": "Basic tok"}).status_code
        == 401
    )
    assert (
        client.simulate_get(
            "/api/v1/exec/list", headers={"Authorization": "Bearer tokx"}
        ).status_code
        == 401
    )
    assert (
        client.simulate_get(
            "/api/v1/exec/list", headers={"Authorization": "Bearer tok"}
        ).status_code
        == 501
    )


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
            assert r.status_code == 501
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


def test_shared_state_endpoints(tmp_path):
    from hoodyexec.storage.sqlite import SqliteStore as SharedStore

    store = SharedStore(str(tmp_path / "s.db"))
    app = create_management(
        started=0.0, master_pid=1, control_pid=2, worker_pids=two_workers, shared=store
    )
    c = falcon.testing.TestClient(app)
    base = "/api/v1/exec/shared-state/"
    r = c.simulate_post(base + "set", json={"hostname": "h", "path": "a.b", "value": 1})
    assert r.status_code == 200 and r.json["value"] == 1 and r.json["success"] is True
    r = c.simulate_post(
        base + "set", json={"hostname": "h", "path": "a", "value": {"c": 2}, "merge": True}
    )
    assert r.json["value"] == {"b": 1, "c": 2}
    r = c.simulate_post(base + "get", json={"hostname": "h"})
    assert r.json["value"] == {"a": {"b": 1, "c": 2}} and r.json["exists"] is True
    r = c.simulate_post(base + "get", json={"hostname": "h", "path": "a.zz"})
    assert r.json["value"] is None and r.json["exists"] is False
    assert store.get("h", "a.c") == 2  # the same store scripts use
    r = c.simulate_post(base + "clear", json={"hostname": "h", "path": "a.b"})
    assert r.json["cleared"] is True and store.get("h") == {"a": {"c": 2}}
    store.set("other", "x", 1)
    r = c.simulate_post(base + "clear", json={"hostname": "h"})
    assert r.json["cleared"] is True and store.get("h") == {} and store.get("other") == {"x": 1}
    r = c.simulate_post(base + "clear", json={"clearAll": True})
    assert r.json["cleared"] == "all" and store.get("other") == {}
    # errors: JSON with the field named
    missing = c.simulate_post(base + "get", json={"path": "x"}).json
    assert missing == {"error": "hostname is required", "field": "hostname"}
    assert c.simulate_post(base + "set", json={"hostname": "h"}).status_code == 400
    assert (
        c.simulate_post(
            base + "set", body="{bad", headers={"content-type": "application/json"}
        ).json["error"]
        == "Invalid JSON"
    )
    assert c.simulate_post(base + "clear", json={}).status_code == 400
    assert c.simulate_post(base + "get").status_code == 400
    r = c.simulate_post(base + "set", json={"hostname": "h", "value": [1]})
    assert r.status_code == 400 and "object" in r.json["error"]
