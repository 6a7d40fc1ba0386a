"""Routes feature: route/discover, route/resolve and route/test (in-process)."""

from __future__ import annotations

import os

from ..scriptenv import _outside
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


def test_symlink_outside_instance_is_not_routed_by_scan(env, api, tmp_path):
    env.write("ok.py", "return 1\n")
    os.symlink(_outside(tmp_path), os.path.join(api.root, "evil.py"))
    os.symlink("ok.py", os.path.join(api.root, "alias.py"))  # inside: still a route
    assert api.simulate_get(B + "read", params={"path": "evil.py"}).status_code == 403
    assert env.get("/evil").status_code == 404
    assert env.get("/alias").json == 1
    r = api.simulate_post(R + "discover", json={})
    assert "evil.py" not in {x["file"] for x in r.json["routes"]}
    refused = {x["file"]: x["reason"] for x in r.json["notRoutable"]}
    assert "outside the instance" in refused["evil.py"]
    assert api.simulate_post(R + "resolve", json={"path": "/evil"}).json["matched"] is False


def test_discover_base_dir_is_path_checked(env, api):
    env.write("r/a.py", "return 1\n")
    for bad in ("../", "..", "r/../../x", "/etc", "~"):
        r = api.simulate_post(R + "discover", json={"baseDir": bad})
        assert r.status_code == 403 and r.json["error"] == "Path is excluded from access", bad
    r = api.simulate_post(R + "discover", json={"baseDir": "r/"})
    assert r.status_code == 200 and r.json["baseDir"] == "r" and r.json["count"] == 1


def test_resolve_reports_a_disabled_script_as_not_matched(env, api):
    env.write("off.py", "# @enabled false\nreturn 1\n")
    env.write("on.py", "# @enabled true\nreturn 1\n")
    assert env.get("/off").status_code == 404
    r = api.simulate_post(R + "resolve", json={"path": "/off"}).json
    assert r["matched"] is False and r["enabled"] is False and r["file"] == "off.py"
    assert "@enabled false" in r["reason"]
    r = api.simulate_post(R + "resolve", json={"path": "/on"}).json
    assert r["matched"] is True and r["enabled"] is True and "reason" not in r
