"""The route table (http/router.py): precedence, duplicates, incremental changes."""

from __future__ import annotations

from hoodyexec.engine.routes import route_for
from hoodyexec.http.router import RouteTable

from ..features.helpers import R


def table(*files):
    return RouteTable([route_for(f) for f in files])


def test_precedence_static_dynamic_catchall():
    t = table(
        "api/users/[id].py", "api/users/me.py", "api/[...rest].py", "[...all].py", "api/[a]/[b].py"
    )
    assert t.find("/api/users/me")[0].file == "api/users/me.py"
    assert t.find("/api/users/7") == (route_for("api/users/[id].py"), {"id": "7"})
    assert t.find("/api/x/y")[1] == {"a": "x", "b": "y"}
    assert t.find("/api/users/me/deep")[1] == {"rest": "users/me/deep"}
    assert t.find("/other/thing")[1] == {"all": "other/thing"}


def test_different_param_names_in_one_folder():
    t = table("[id]/posts.py", "[slug].py")
    assert t.find("/5/posts")[1] == {"id": "5"}
    assert t.find("/hello")[1] == {"slug": "hello"}


def test_optional_catch_all_matches_its_folder():
    t = table("docs/[[...slug]].py")
    assert t.find("/docs")[0].file == "docs/[[...slug]].py" and t.find("/docs")[1] == {}
    assert t.find("/docs/a/b")[1] == {"slug": "a/b"}


def test_duplicate_routes_keep_one_and_report():
    t = table("a.py", "a/index.py", "u/[id].py", "u/[name].py")
    assert t.find("/a")[0].file == "a.py"
    assert t.find("/u/1")[0].file == "u/[id].py"
    skipped = dict(t.report())
    assert "same route as a.py" in skipped["a/index.py"] and "u/[id].py" in skipped["u/[name].py"]


def test_incremental_add_remove():
    t = table("u/[id].py")
    assert t.find("/u/me")[0].file == "u/[id].py"
    t.add("u/me.py")
    assert t.find("/u/me")[0].file == "u/me.py"
    t.remove("u/me.py")
    assert t.find("/u/me")[0].file == "u/[id].py"
    t.add("a/index.py")
    t.add("a.py")
    assert t.find("/a")[0].file == "a.py"
    t.remove("a.py")
    assert t.find("/a")[0].file == "a/index.py"
    t.remove("u/[id].py")
    assert t.find("/u/me") is None
    t.add("_private.py")
    assert t.find("/_private") is None


def test_thousand_static_routes_are_cheap_to_change():
    import time

    t = table(*[f"s{i}.py" for i in range(1000)])
    t0 = time.perf_counter()
    for i in range(1000, 1100):
        t.add(f"s{i}.py")
        assert t.find(f"/s{i}") is not None
    assert time.perf_counter() - t0 < 0.1


def test_trailing_slash_and_empty_params_are_404(env, api):
    env.write("hello.py", "return 'hello'\n")
    env.write("r/users/[id].py", "def handler(id):\n    return {'id': id}\n")
    env.write("r/users/[id]/posts.py", "def handler(id):\n    return {'posts': id}\n")
    env.write("files/[...p].py", "def handler(p):\n    return {'p': p}\n")
    env.write("docs/[[...slug]].py", "def handler(slug=None):\n    return {'slug': slug}\n")
    env.write("index.py", "return 'root'\n")

    async def go(c):
        paths = [
            "/", "/hello", "/hello/", "/r/users/7", "/r/users/", "/r/users//posts",
            "/r/users/7/posts/", "/files/a/b", "/files/a/b/", "/files/", "/docs", "/docs/",
            "/docs/x",
        ]  # fmt: skip
        return {p: (await c.simulate_get(p)).status_code for p in paths}

    assert env.run(go) == {
        "/": 200,
        "/hello": 200,
        "/hello/": 404,
        "/r/users/7": 200,
        "/r/users/": 404,
        "/r/users//posts": 404,
        "/r/users/7/posts/": 404,
        "/files/a/b": 200,
        "/files/a/b/": 404,
        "/files/": 404,
        "/docs": 200,
        "/docs/": 404,
        "/docs/x": 200,
    }
    for path in ("/r/users/", "/hello/", "/docs/"):
        r = api.simulate_post(R + "resolve", json={"path": path})
        assert r.json["matched"] is False, (path, r.json)
