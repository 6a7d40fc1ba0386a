"""Shared-state feature: get, set, merge and clear over the management API."""

from __future__ import annotations

import falcon.testing

from hoodyexec.http.management import create_management

from .helpers import two_workers


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


def test_readme_orders_example(env):
    """The README's shared-state example answers as written."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"```python\n(# api/orders\.py\n.*?)```", readme, re.S).group(1)
    env.write("api/orders.py", code)

    async def go(c):
        made = [
            (await c.simulate_post("/api/orders", json={"item": item})).json
            for item in ("tea", "cake")
        ]
        one = await c.simulate_get("/api/orders", params={"id": "2"})
        every = await c.simulate_get("/api/orders")
        return made, one.json, every.json

    made, one, every = env.run(go)
    assert made == [{"id": 1}, {"id": 2}]
    assert one == {"status": "new"}
    assert every == {"1": {"item": "tea", "status": "new"}, "2": {"item": "cake", "status": "new"}}
