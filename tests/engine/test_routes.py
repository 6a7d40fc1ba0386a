"""Routes from file paths (engine/routes.py): templates, kinds, what is not
routable, reserved paths, hidden names."""

from __future__ import annotations

import pytest

from hoodyexec.engine.routes import NotRoutable, is_reserved, route_for


@pytest.mark.parametrize(
    "rel, route, templates, kind",
    [
        ("echo.py", "/echo", ("/echo",), "static"),
        ("index.py", "/", ("/",), "static"),
        ("api/users/index.py", "/api/users", ("/api/users",), "static"),
        ("api/users/[id].py", "/api/users/[id]", ("/api/users/{id}",), "dynamic"),
        ("[org]/repos/[repo].py", "/[org]/repos/[repo]", ("/{org}/repos/{repo}",), "dynamic"),
        ("files/[...path].py", "/files/[...path]", ("/files/{path:path}",), "catch-all"),
        ("docs/[[...slug]].py", "/docs/[[...slug]]", ("/docs", "/docs/{slug:path}"), "catch-all"),
        ("v1.2/x-y.py", "/v1.2/x-y", ("/v1.2/x-y",), "static"),
    ],
)
def test_route_for(rel, route, templates, kind):
    r = route_for(rel)
    assert (r.route, r.templates, r.kind) == (route, templates, kind)


@pytest.mark.parametrize(
    "rel, reason",
    [
        ("notes.txt", ".py"),
        ("_lib.py", "private"),
        ("_hoody/x.py", "private"),
        ("a/_b/c.py", "private"),
        ("[...a]/b.py", "last segment"),
        ("[a]/[a].py", "twice"),
        ("bad seg.py", "not a valid"),
        ("[x-y].py", "not a valid"),
        ("api/v1/exec/x.py", "reserved"),
        ("api/v1/exec.py", "reserved"),
        ("openapi.json.py", "reserved"),
    ],
)
def test_not_routable(rel, reason):
    with pytest.raises(NotRoutable, match=reason):
        route_for(rel)


def test_reserved():
    assert (
        is_reserved("/api/v1/exec")
        and is_reserved("/api/v1/exec/health")
        and is_reserved("/openapi.yaml")
    )
    assert not is_reserved("/api/v1/executor") and not is_reserved("/openapi")


def test_one_predicate_for_hidden_names():
    from hoodyexec.engine.routes import NotRoutable, is_hidden, route_for
    from hoodyexec.http.router import RouteTable

    assert is_hidden(".x.py") and is_hidden("a/.b/c.py") and is_hidden("node_modules/x.py")
    assert not is_hidden("a/b.py") and not is_hidden("_lib.py")
    with pytest.raises(NotRoutable):
        route_for(".x.py")
    table = RouteTable()
    table.add(".x.py")
    table.add("a/.b/c.py")
    assert table.find("/.x") is None and table.report() == []
