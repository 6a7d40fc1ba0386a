"""Unit tests: routes, route table precedence, magic comments, shape detection, shared store."""

from __future__ import annotations

import ast
import multiprocessing
import threading

import pytest

from hoodyexec.engine import compiler, magic
from hoodyexec.engine.compiler import ScriptLoadError
from hoodyexec.engine.routes import NotRoutable, is_reserved, route_for
from hoodyexec.http.router import RouteTable
from hoodyexec.storage.sqlite import SqliteStore as SharedStore


# -- routes -------------------------------------------------------------------
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


# -- magic comments ------------------------------------------------------------
def test_magic_parse_values_and_defaults():
    src = (
        "#!/usr/bin/env python\n# @description  Greeting handler \n# @cors https://a.example, https://b.example\n"
        "# @timeout 5000\n\n# @schedule */5 * * * *\n# @token env:HOOK\n# @tags a, b c\n# @mode thread\n"
        "# @enabled false\n# @log-request-body\n# @ai-temperature 0.5\nimport x\n# @label not-in-block\n"
    )
    m, errors = magic.parse(src)
    assert errors == []
    assert m.description == "Greeting handler"
    assert m.cors == ["https://a.example", "https://b.example"]
    assert (m.timeout, m.schedule, m.token, m.tags, m.mode) == (
        5000,
        "*/5 * * * *",
        "env:HOOK",
        ["a", "b", "c"],
        "thread",
    )
    assert m.enabled is False and m.log_request_body is True and m.ai_temperature == 0.5
    assert m.label is None  # after the leading block: not a magic comment
    assert m.lines["timeout"] == 4 and m.raw["description"] == "Greeting handler"
    d, e = magic.parse("return 1\n", default_timeout=1234)
    assert e == [] and d.timeout == 1234 and d.enabled is True and d.mode == "auto"


@pytest.mark.parametrize(
    "line, needle",
    [
        ("# @nope 1", "unknown magic comment"),
        ("# @timeout fast", "integer"),
        ("# @timeout 0", "between"),
        ("# @schedule * * *", "5-field"),
        ("# @schedule 61 * * * *", "invalid cron"),
        ("# @cors ftp://x", "origins"),
        ("# @mode turbo", "one of"),
        ("# @enabled maybe", "true or false"),
        ("# @token env:1BAD", "env:NAME"),
        ("# @description", "needs a value"),
        ("# @ai-temperature 9", "between"),
    ],
)
def test_magic_errors_name_the_line(line, needle):
    _, errors = magic.parse("# first\n" + line + "\nreturn 1\n")
    assert len(errors) == 1 and errors[0].line == 2 and needle in errors[0].message


def test_magic_duplicate():
    _, errors = magic.parse("# @timeout 1\n# @timeout 2\n")
    assert errors[0].line == 2 and "twice" in errors[0].message


def test_schema_lists_every_name():
    names = {s.name for s in magic.SCHEMA}
    assert {
        "description",
        "cors",
        "timeout",
        "schedule",
        "token",
        "websocket",
        "log-level",
        "log-request-body",
        "ai-model",
        "ai-temperature",
        "ai-max-tokens",
        "ai-key",
        "label",
        "tags",
        "mode",
        "enabled",
    } == names


# -- shape detection -----------------------------------------------------------
@pytest.mark.parametrize(
    "src, shape, is_async, methods",
    [
        ("return 1", "body", False, []),
        ("x = 1", "body", False, []),
        ("import asyncio\nawait asyncio.sleep(0)", "body", True, []),
        ("async for x in y():\n    pass", "body", True, []),
        ("yield 1", "body", False, []),
        ("def handler(req):\n    return 1", "handler", None, []),
        ("async def main():\n    return 1", "handler", None, []),
        ("def GET():\n    return 1\ndef POST():\n    return 2", "methods", None, ["GET", "POST"]),
        ("def handler():\n    return 1\nreturn 2", "body", False, []),
        (
            "def helper():\n    return 1\nclass A:\n    def handler(self):\n        return 2",
            "body",
            False,
            [],
        ),
        ("def f():\n    return 1\nasync def g():\n    await x", "body", False, []),
    ],
)
def test_shape_detection(src, shape, is_async, methods):
    facts = compiler.analyse(ast.parse(src))
    assert facts["shape"] == shape and facts["async"] == is_async and facts["methods"] == methods


def test_body_mode_keeps_line_numbers_and_future_imports():
    s = compiler.load(
        "/x/t.py", "t.py", (1, 1, 1), "from __future__ import annotations\n\nx = 1\n1 / 0\n"
    )
    with pytest.raises(ZeroDivisionError) as err:
        s.entries["*"].fn(*[None] * 6)
    assert err.traceback[-1].lineno + 1 == 4  # pytest's lineno is 0-based


def test_load_errors():
    with pytest.raises(ScriptLoadError) as err:
        compiler.load("/x/t.py", "t.py", (1, 1, 1), "def handler(:\n")
    assert err.value.extra["line"] == 1 and err.value.extra["type"] == "SyntaxError"
    with pytest.raises(ScriptLoadError) as err:
        compiler.load(
            "/x/t.py",
            "t.py",
            (1, 1, 1),
            "import nonexistent_module_xyz\ndef handler():\n    pass\n",
        )
    assert err.value.extra["type"] == "ModuleNotFoundError" and err.value.extra["line"] == 1
    with pytest.raises(ScriptLoadError, match="cannot resolve annotations"):
        compiler.load(
            "/x/t.py",
            "t.py",
            (1, 1, 1),
            "from __future__ import annotations\ndef handler(body: Missing):\n    pass\n",
        )


# -- shared store ----------------------------------------------------------------
def test_store_paths_and_errors(tmp_path):
    store = SharedStore(str(tmp_path / "s.db"))
    store.set("h", "a.b.c", 1)
    assert store.get("h") == {"a": {"b": {"c": 1}}}
    store.set("h", "l", [1, 2, 3])
    store.set("h", "l.1", "x")
    assert store.get("h", "l") == [1, "x", 3] and store.get("h", "l.-1") == 3
    assert store.delete("h", "l.0") is True and store.get("h", "l") == ["x", 3]
    assert store.delete("h", "nope") is False
    assert store.merge("h", "a", {"b": {"d": 2}}) == {"b": {"c": 1, "d": 2}}
    assert store.get("other", "a", "dflt") == "dflt"
    with pytest.raises(Exception, match="increment"):
        store.incr("h", "a", 1)
    with pytest.raises(Exception, match="empty segment"):
        store.get("h", "a..b")
    assert store.clear("h") == 1 and store.get("h") == {}


def test_store_incr_is_atomic_across_threads(tmp_path):
    store = SharedStore(str(tmp_path / "s.db"))
    seen: list[int] = []

    def work():
        for _ in range(50):
            seen.append(store.incr("h", "n"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 201))


def _proc_incr(path: str, q) -> None:
    store = SharedStore(path)
    q.put([store.incr("h", "n") for _ in range(50)])


def test_store_incr_is_atomic_across_processes(tmp_path):
    path = str(tmp_path / "s.db")
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_proc_incr, args=(path, q)) for _ in range(4)]
    for p in procs:
        p.start()
    values = sorted(v for _ in procs for v in q.get(timeout=60))
    for p in procs:
        p.join(30)
    assert values == list(range(1, 201))


# -- thread pool ----------------------------------------------------------------
def test_pool_interrupts_python_code_and_replaces_stuck_threads():
    import time as _time

    from hoodyexec.engine.executor import ScriptTimeout, ThreadPool

    tripped = []
    pool = ThreadPool(2, on_stuck_limit=lambda: tripped.append(True), stuck_limit=2)

    def spin():
        while True:
            pass

    job = pool.submit(spin)
    _time.sleep(0.05)
    assert pool.interrupt(job) is True
    with pytest.raises(ScriptTimeout):
        job.future.result(timeout=5)
    assert pool.submit(lambda: 7).future.result(timeout=5) == 7  # the thread survived

    stuck = [pool.submit(_time.sleep, 1.0) for _ in range(2)]
    _time.sleep(0.05)
    assert all(j.thread is not None for j in stuck)  # both running: the pool is full
    for j in stuck:
        pool.mark_stuck(j)  # as the executor does after the grace period
    assert tripped == [True]
    t0 = _time.monotonic()
    assert pool.submit(lambda: "free").future.result(timeout=5) == "free"
    assert _time.monotonic() - t0 < 0.5  # a replacement thread took it, not the stuck ones


def test_catalog_without_inotify_falls_back_to_stat(tmp_path):
    import os as _os
    import time as _time

    from hoodyexec.engine.catalog import Catalog

    root = tmp_path / "scripts"
    inst_dir = root / "default" / "1"
    inst_dir.mkdir(parents=True)
    (inst_dir / "v.py").write_text("return 1\n")
    from hoodyexec.http.router import table_for

    catalog = Catalog(str(root), table_for, watch=False)
    inst = catalog.instance("default", "1")
    route, _ = inst.router.find("/v")
    first = catalog.load(inst, route)
    assert catalog.load(inst, route) is first  # unchanged: the cached version
    _time.sleep(0.01)
    (inst_dir / "v.py").write_text("return 22\n")
    second = catalog.load(inst, route)
    assert second is not first and "22" in second.source
    _os.unlink(inst_dir / "v.py")
    with pytest.raises(FileNotFoundError):
        catalog.load(inst, route)


def test_unstarted_stream_gives_its_concurrency_slot_back(tmp_path):
    import asyncio
    import gc

    import falcon.asgi

    from .scriptenv import ScriptEnv

    env = ScriptEnv(tmp_path)
    env.write("gen.py", "for i in range(3):\n    yield i\n")
    from hoodyexec.workers.request import load_app

    app = load_app(env.settings, env.home, link=False)
    sink = next(s for _, s, _ in app._sinks if hasattr(s, "inflight"))

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        req = falcon.asgi.Request(
            {
                "type": "http",
                "method": "GET",
                "path": "/gen",
                "headers": [(b"host", b"x")],
                "query_string": b"",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "scheme": "http",
                "root_path": "",
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 2),
            },
            receive,
        )
        resp = falcon.asgi.Response()
        await sink(req, resp)
        assert sink.inflight == 1 and resp.stream is not None
        resp.stream = None  # the client went away: nobody ever iterates it
        del resp
        gc.collect()
        assert sink.inflight == 0

    asyncio.run(main())


def test_script_logs_keep_a_bounded_number_of_files_open(tmp_path, monkeypatch):
    from hoodyexec.engine import capture as logs

    monkeypatch.setattr(logs, "MAX_OPEN_LOGS", 5)
    book = logs.LogBook(str(tmp_path))
    scripts = [book.for_script("default", "1", f"s{i}.py") for i in range(20)]
    for round_ in range(2):
        for i, log in enumerate(scripts):
            log.write(20, f"e{round_}", f"line {i}")
    assert sum(1 for log in scripts if log._fd is not None) <= 5
    for i in range(20):
        text = (tmp_path / "default" / "1" / f"s{i}.log").read_text()
        assert (
            f"[e0] line {i}" in text and f"[e1] line {i}" in text
        )  # reopened on demand, nothing lost
