"""Routes feature: route/discover, route/resolve and route/test (in-process)."""

from __future__ import annotations

from .helpers import B, R


def test_route_discover_resolve(api):
    for path, content in {
        "r/users/[id].py": "return params\n",
        "r/users/me.py": "return 'me'\n",
        "r/files/[...rest].py": "return 1\n",
        "r/_lib.py": "X=1\n",
        "r/a.py": "return 1\n",
        "r/a/index.py": "return 2\n",
    }.items():
        api.simulate_post(B + "write", json={"path": path, "content": content, "validate": False})
    r = api.simulate_post(R + "discover", json={"baseDir": "r"})
    routes = {x["route"]: x for x in r.json["routes"]}
    assert {"/r/users/[id]", "/r/users/me", "/r/files/[...rest]", "/r/a"} <= set(routes)
    assert routes["/r/users/[id]"]["kind"] == "dynamic" and routes["/r/users/[id]"]["params"] == [
        "id"
    ]
    dup = [x for x in r.json["routes"] if x["file"] == "r/a/index.py"][0]
    assert dup["active"] is False and "same route" in dup["reason"]
    assert all(not x["file"].startswith("r/_") for x in r.json["routes"])
    r = api.simulate_post(R + "discover", json={"baseDir": "r", "includeMetadata": True})
    assert r.json["routes"][0]["shape"] == "body"
    r = api.simulate_post(R + "resolve", json={"path": "/r/users/42?x=1"})
    assert (
        r.json["matched"] is True
        and r.json["file"] == "r/users/[id].py"
        and r.json["params"] == {"id": "42"}
    )
    assert (
        api.simulate_post(R + "resolve", json={"path": "/r/users/me"}).json["file"]
        == "r/users/me.py"
    )
    assert api.simulate_post(R + "resolve", json={"path": "/r/files/x/y"}).json["params"] == {
        "rest": "x/y"
    }
    assert api.simulate_post(R + "resolve", json={"path": "/nowhere"}).json["matched"] is False
    assert api.simulate_post(R + "resolve", json={}).status_code == 400


def test_route_test_runs_the_script(api):
    api.simulate_post(
        B + "write",
        json={
            "path": "t/echo/[id].py",
            "content": (
                "def handler(id, body, query, metadata, res):\n"
                "    res.header('X-Trigger', metadata.trigger)\n"
                "    return {'id': id, 'body': body, 'query': query, 'trigger': metadata.trigger}\n"
            ),
        },
    )
    r = api.simulate_post(
        R + "test",
        json={"path": "/t/echo/9", "method": "POST", "body": {"a": 1}, "query": {"q": "z"}},
    )
    assert r.status_code == 200
    out = r.json
    assert out["status"] == 200 and out["body"] == {
        "id": "9",
        "body": {"a": 1},
        "query": {"q": "z"},
        "trigger": "test",
    }
    assert out["headers"]["x-trigger"] == "test" and out["durationMs"] >= 0
    api.simulate_post(B + "write", json={"path": "t/boom.py", "content": "raise KeyError('k')\n"})
    out = api.simulate_post(R + "test", json={"path": "t/boom.py"}).json
    assert out["status"] == 500 and out["body"]["type"] == "KeyError"
    out = api.simulate_post(R + "test", json={"path": "/t/missing"}).json
    assert out["status"] == 404
