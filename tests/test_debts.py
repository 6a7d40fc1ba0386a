"""Regression tests for correctness debts: each failed before its fix (in-process
unless marked slow)."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import falcon.testing
import pytest

from .scriptenv import ScriptEnv, management_app

B = "/api/v1/exec/scripts/"
R = "/api/v1/exec/route/"


@pytest.fixture
def env(tmp_path):
    return ScriptEnv(tmp_path)


@pytest.fixture
def api(env):
    """The management app over the same home as ``env``'s request worker."""
    client = falcon.testing.TestClient(management_app(env.home))
    client.root = env.home.instance_dir()
    return client


# -- 1. a symlink leading outside the instance is never routed -------------------------
def _outside(tmp_path) -> str:
    folder = tmp_path / "outside"
    folder.mkdir(exist_ok=True)
    secret = folder / "secret.py"
    secret.write_text("return {'secret': True}\n")
    return str(secret)


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


def test_symlink_outside_instance_is_not_routed_when_added_live(env, tmp_path):
    secret = _outside(tmp_path)
    env.write("ok.py", "return 1\n")
    root = env.home.instance_dir()

    async def go(c):
        assert (await c.simulate_get("/ok")).status_code == 200  # the table is live now
        os.symlink(secret, os.path.join(root, "evil.py"))
        first = (await c.simulate_get("/evil")).status_code
        # a link renamed over a routed, already compiled file takes its route away
        os.symlink(secret, os.path.join(root, ".swap"))
        os.replace(os.path.join(root, ".swap"), os.path.join(root, "ok.py"))
        second = (await c.simulate_get("/ok")).status_code
        # and a real file renamed over the link is a route again
        with open(os.path.join(root, ".real"), "w") as fh:
            fh.write("return 2\n")
        os.replace(os.path.join(root, ".real"), os.path.join(root, "ok.py"))
        third = await c.simulate_get("/ok")
        return first, second, third.status_code, third.json

    assert env.run(go) == (404, 404, 200, 2)


def test_catalog_refuses_a_link_leading_outside_without_inotify(tmp_path):
    from hoodyexec.engine.catalog import Catalog
    from hoodyexec.engine.routes import route_for
    from hoodyexec.http.router import table_for

    root = tmp_path / "scripts"
    (root / "default" / "1").mkdir(parents=True)
    os.symlink(_outside(tmp_path), root / "default" / "1" / "evil.py")
    catalog = Catalog(str(root), table_for, watch=False)
    inst = catalog.instance("default", "1")
    with pytest.raises(FileNotFoundError):
        catalog.load(inst, route_for("evil.py"))


# -- 2. scripts/delete acts on the instance a JSON body names ---------------------------
def test_delete_honours_body_scope_and_query_wins(env, api):
    for instance in ("default/1", "default/2", "api/3"):
        env.write("x.py", "return 1\n", instance=instance)
    scripts = env.home.scripts

    def exists(instance: str) -> bool:
        return os.path.exists(os.path.join(scripts, instance, "x.py"))

    q = {"path": "x.py", "confirm": "true"}
    r = api.simulate_delete(B + "delete", params=q, json={"execId": "2"})
    assert r.status_code == 200 and (r.json["subdomain"], r.json["execId"]) == ("default", "2")
    assert not exists("default/2") and exists("default/1")
    # the query wins over the body: never the body's instance, never the default one
    r = api.simulate_delete(
        B + "delete", params={**q, "execId": "3", "subdomain": "api"}, json={"execId": "1"}
    )
    assert r.status_code == 200 and not exists("api/3") and exists("default/1")
    # a body that cannot be read deletes nothing
    for bad in ({"execId": 1}, "not json"):
        kw = {"json": bad} if isinstance(bad, dict) else {"body": bad}
        r = api.simulate_delete(
            B + "delete", params=q, headers={"Content-Type": "application/json"}, **kw
        )
        assert r.status_code == 400 and exists("default/1")


# -- 3. ``handler = <callable>`` at module level is the handler shape ------------------
def test_handler_bound_by_assignment_is_handler_mode(env, api):
    env.write(
        "impl.py",
        """\
        loads = 0
        loads += 1
        def _impl(req, query):
            return {"loads": loads, "q": query}
        handler = _impl
        """,
    )
    env.write("lam.py", "handler = lambda body: {'body': body}\n")
    env.write(
        "part.py",
        """\
        import functools
        def _impl(query, k: int):
            return {"k": k, "q": query}
        handler = functools.partial(_impl, k=3)
        """,
    )
    env.write("_lib.py", "def handler(query):\n    return {'lib': query}\n")
    env.write("imported.py", "from _lib import handler\n")
    env.write("meth.py", "GET = lambda: 'got'\ndef _post(body):\n    return body\nPOST = _post\n")
    env.write("notcallable.py", "x = 1\nhandler = 5\n")

    async def go(c):
        impl = [(await c.simulate_get("/impl", params={"a": "1"})).json for _ in range(2)]
        return (
            impl,
            (await c.simulate_post("/lam", json={"x": 1})).json,
            (await c.simulate_get("/part", params={"a": "2"})).json,
            (await c.simulate_get("/imported", params={"b": "3"})).json,
            (await c.simulate_get("/meth")).text,
            (await c.simulate_post("/meth", json=[1])).json,
            (await c.simulate_put("/meth")).status_code,
            await c.simulate_get("/notcallable"),
        )

    impl, lam, part, imported, got, posted, put, bad = env.run(go)
    assert impl == [{"loads": 1, "q": {"a": "1"}}] * 2  # the module ran once
    assert lam == {"body": {"x": 1}} and part == {"k": 3, "q": {"a": "2"}}
    assert imported == {"lib": {"b": "3"}}
    assert (got, posted, put) == ("got", [1], 405)
    assert bad.status_code == 500 and bad.json["type"] == "ShapeError"
    assert bad.json["line"] == 2 and "handler must be callable" in bad.json["error"]
    shape = api.simulate_get(B + "read", params={"path": "lam.py"}).json["shape"]
    assert shape == "handler"


def test_validation_checks_parameters_of_an_assigned_handler():
    from hoodyexec.features.validate.service import check_static

    result = check_static("def _impl(req, nope):\n    return 1\n\nhandler = _impl\n")
    assert [w["line"] for w in result["warnings"]] == [1] and "nope" in result["warnings"][0][
        "message"
    ]
    result = check_static("handler = lambda req, \\\n    other: 1\n")
    assert [w["line"] for w in result["warnings"]] == [2]


# -- 4. a handler parameter that can never be injected fails validation ----------------
def test_write_refuses_uninjectable_handler_parameter_with_its_line(env, api):
    code = "def handler(req,\n            nope):\n    return 1\n"
    r = api.simulate_post(B + "write", json={"path": "bad.py", "content": code})
    assert r.status_code == 400 and r.json["error"] == "Script validation failed", r.json
    [message] = r.json["validation"]["errors"]
    assert "'nope'" in message and "(line 2)" in message
    [item] = r.json["validation"]["results"]["typescript"]["errors"]
    assert item["line"] == 2
    assert not os.path.exists(os.path.join(api.root, "bad.py"))
    # a builtin annotation is no Struct: every call would fail the same way
    r = api.simulate_post(
        B + "write", json={"path": "typed.py", "content": "def GET(limit: int):\n    return 1\n"}
    )
    assert r.status_code == 400 and "'limit'" in r.json["validation"]["errors"][0]
    # the same name as a route param, a Struct, a default, or a private module: fine
    ok = {
        "users/[nope].py": code,
        "s.py": "import msgspec\nclass S(msgspec.Struct):\n    a: int\n"
        "def POST(item: S, limit: int = 5):\n    return item\n",
        "_helpers.py": code,
        "lam.py": "handler = lambda query: query\n",
    }
    for path, content in ok.items():
        r = api.simulate_post(B + "write", json={"path": path, "content": content})
        assert r.status_code == 201 and r.json["validated"] is True, (path, r.json)
    assert env.get("/users/7").json == 1
    # without a path the route is unknown: still only a warning
    r = api.simulate_post("/api/v1/exec/validate/script", json={"code": code})
    assert r.json["valid"] is True and "'nope'" in r.json["warnings"][0]


def test_validation_and_loading_share_the_injection_rule():
    """``compiler.injectable`` is what ``plan`` applies: they agree on every case."""
    import msgspec

    from hoodyexec.engine import compiler

    class S(msgspec.Struct):
        a: int

    cases = [("req", None), ("id", None), ("nope", None), ("nope", int), ("nope", S)]
    for name, tp in cases:
        for default in (False, True):
            ns = {"S": S, "int": int}
            ann = f": {tp.__name__}" if tp else ""
            exec(f"def handler({name}{ann}{' = 1' if default else ''}): pass", ns)  # noqa: S102
            try:
                compiler.plan(ns["handler"], ("id",), ns)
                planned = True
            except compiler.ScriptLoadError:
                planned = False
            rule = compiler.injectable(
                name, ("id",), has_default=default, tp=tp or compiler.inspect.Parameter.empty
            )
            assert planned is rule, (name, tp, default)


# -- 5. ``//`` is not a Python comment: not offered, and explained when used -----------
def test_slash_comments_are_not_offered_and_are_explained(env, api):
    r = api.simulate_get("/api/v1/exec/magic-comments/schema")
    assert r.json["prefixes"] == ["#"]
    r = api.simulate_post(
        B + "write", json={"path": "js.py", "content": "// @description x\nreturn 1\n"}
    )
    assert r.status_code == 400
    assert all(".py files use #" in e for e in r.json["validation"]["errors"]), r.json
    env.write("magic.py", "// @description x\nreturn 1\n")
    env.write("plain.py", "// just a note\nreturn 1\n")
    for path in ("/magic", "/plain"):
        r = env.get(path)
        assert r.status_code == 500 and r.json["line"] == 1, r.json
        assert ".py files use # for comments" in r.json["error"]
    r = api.simulate_get("/api/v1/exec/magic-comments/read", params={"path": "magic.py"})
    assert r.json["valid"] is False and ".py files use #" in r.json["errors"][0]["message"]


# -- 6. magic comments are never written into a non-script file ------------------------
def test_magic_comment_updates_refuse_non_script_files(env, api):
    M = "/api/v1/exec/magic-comments/"
    env.write("data.json", '{"a": 1}\n')
    env.write("notes.txt", "hello\n")
    env.write("ok.py", "return 1\n")
    for path in ("data.json", "notes.txt"):
        for dry in (False, True):
            r = api.simulate_put(
                M + "update", json={"path": path, "comments": {"label": "x"}, "dry_run": dry}
            )
            assert r.status_code == 400 and r.json["field"] == "path", r.json
            assert "not a script" in r.json["error"]
    for extension in (".json", "txt"):
        r = api.simulate_post(
            M + "bulk-update", json={"comments": {"label": "x"}, "extension": extension}
        )
        assert r.status_code == 200, r.json
        [result] = r.json["results"]
        assert result["changed"] is False and "not a script" in result["skipped"]
    r = api.simulate_post(M + "bulk-update", json={"comments": {"label": "x"}})
    assert [x["path"] for x in r.json["results"]] == ["ok.py"] and r.json["changed"] == 1
    with open(os.path.join(api.root, "data.json")) as fh:
        assert fh.read() == '{"a": 1}\n'
    with open(os.path.join(api.root, "notes.txt")) as fh:
        assert fh.read() == "hello\n"


# -- 8. one rule for trailing slashes: empty params never match -------------------------
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


# -- 9. route/discover's baseDir is a checked path; resolve tells a disabled script ----
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


# -- 7. a stream that fails midway is aborted, never ended as a normal 200 -------------
async def _asgi_get(app, path: str, accept: str = "*/*"):
    """One GET straight through the ASGI app: (messages sent, what it raised)."""
    sent: list[dict] = []
    first = True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"accept", accept.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    try:
        await asyncio.wait_for(app(scope, receive, send), 10)
    except asyncio.CancelledError as exc:
        return sent, exc
    return sent, None


STREAMS = {
    "sync-raise": "def handler():\n    yield 'a'\n    raise ValueError('boom')\n",
    "async-raise": "async def handler():\n    yield 'a'\n    raise ValueError('boom')\n",
    "exit": "def handler():\n    yield 'a'\n    raise SystemExit(3)\n",
    "timeout": "# @timeout 200\nimport asyncio\nasync def handler():\n"
    "    yield 'a'\n    await asyncio.sleep(5)\n    yield 'never'\n",
}


@pytest.mark.parametrize("kind", STREAMS)
@pytest.mark.parametrize("sse", [False, True])
def test_stream_failing_midway_is_aborted(env, kind, sse):
    from hoodyexec.http.sink import StreamAborted

    env.write("gen.py", STREAMS[kind])
    env.write("ok.py", "def handler():\n    yield 'a'\n    yield 'b'\n")
    accept = "text/event-stream" if sse else "*/*"

    async def go(c):
        failed = await _asgi_get(c.app, "/gen", accept)
        ok = await _asgi_get(c.app, "/ok", accept)
        return failed, ok

    (sent, raised), (ok_sent, ok_raised) = env.run(go)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    # no last body message: the server closes instead of ending the response
    assert all(m.get("more_body") for m in bodies) and isinstance(raised, StreamAborted)
    text = b"".join(m.get("body", b"") for m in bodies).decode()
    if sse:
        assert text.startswith("data: a\n\n")
        event, data = text.split("\n\n")[1].split("\n")
        failure = json.loads(data.removeprefix("data: "))
        assert event == "event: error" and failure["executionId"] in env.log("gen.py")
        assert failure["type"] == {"timeout": "Timeout", "exit": "SystemExit"}.get(
            kind, "ValueError"
        )
    else:
        assert text == "a"
    # a stream that ends well still ends with the last (empty) body message
    assert ok_raised is None and ok_sent[-1] == {"type": "http.response.body"}


def _raw_get(port: int, path: str, accept: str = "*/*") -> tuple[bytes, bytes, bool]:
    """(head, body as sent, closed by the server) for one kept-alive HTTP/1.1 GET."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n".encode())
        data = b""
        closed = False
        while not data.endswith(b"\r\n0\r\n\r\n"):
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break  # kept alive after a complete response would end here
            if not chunk:
                closed = True
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, closed


@pytest.mark.slow
def test_stream_failing_midway_aborts_the_connection_on_the_wire(make_kit):
    kit = make_kit(workers=1).start()
    folder = kit.home / "scripts" / "default" / "1"
    for name, code in {**STREAMS, "ok": "def handler():\n    yield 'a'\n"}.items():
        (folder / f"{name}.py").write_text(code)
    head, body, _ = _raw_get(kit.port, "/ok")
    assert b" 200 " in head and body == b"1\r\na\r\n0\r\n\r\n"  # a complete stream
    for name in STREAMS:
        for accept in ("*/*", "text/event-stream"):
            head, body, closed = _raw_get(kit.port, f"/{name}", accept)
            assert b" 200 " in head and b"transfer-encoding: chunked" in head.lower(), head
            # the server closed the connection without the terminating zero-length chunk
            assert closed and not body.endswith(b"0\r\n\r\n"), (name, accept, body)
            if accept == "text/event-stream":
                assert b"event: error\n" in body, body
                assert b'"executionId":' in body
            else:
                assert body == b"1\r\na\r\n", (name, body)
    assert _raw_get(kit.port, "/ok")[1].endswith(b"0\r\n\r\n")  # the worker goes on
