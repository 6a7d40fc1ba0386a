"""The route table (http/router.py): precedence, duplicates, incremental changes."""

from __future__ import annotations

from hoodyexec.engine.routes import route_for
from hoodyexec.http.router import RouteTable


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
