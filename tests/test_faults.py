"""Script faults in-process: every way a script can end is a JSON answer, never the worker's end."""

from __future__ import annotations

import pytest

from .scriptenv import ScriptEnv

EXITS = {
    "sys_exit_0": "import sys\nsys.exit(0)",
    "sys_exit_1": "import sys\nsys.exit(1)",
    "sys_exit_3": "import sys\nsys.exit(3)",
    "sys_exit_4": "import sys\nsys.exit(4)",
    "keyboard_interrupt": "raise KeyboardInterrupt('stop')",
    "generator_exit": "raise GeneratorExit()",
    "base_exception": "raise BaseException('bare')",
    "cancelled": "import asyncio\nraise asyncio.CancelledError()",
}
SHAPES = {
    "inline": lambda code: "# @mode inline\ndef handler():\n" + _indent(code),
    "thread": lambda code: "# @mode thread\ndef handler():\n" + _indent(code),
    "async": lambda code: "async def handler():\n" + _indent(code),
    "body": lambda code: code + "\n",
}


def _indent(code: str) -> str:
    return "".join("    " + line + "\n" for line in code.splitlines())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", EXITS)
def test_script_exit_family_is_a_500_with_execution_id(env, shape, kind):
    env.write("bad.py", SHAPES[shape](EXITS[kind]))
    env.write("ok.py", "return {'ok': True}\n")

    async def go(c):
        bad = await c.simulate_get("/bad")
        ok = await c.simulate_get("/ok")
        return bad, ok

    bad, ok = env.run(go)
    assert bad.status_code == 500, bad.text
    assert bad.json["executionId"] and bad.json["type"]
    assert ok.status_code == 200 and ok.json == {"ok": True}
    assert bad.json["executionId"] in env.log("bad.py")


@pytest.mark.parametrize("kind", ["sys_exit_3", "keyboard_interrupt", "base_exception"])
def test_stream_that_exits_midway_ends_and_the_worker_goes_on(env, kind):
    env.write(
        "gen.py",
        "def handler():\n    yield 'a'\n" + _indent(EXITS[kind]),
    )
    env.write("ok.py", "return {'ok': True}\n")

    async def go(c):
        from hoodyexec.http.sink import StreamAborted

        with pytest.raises(StreamAborted):  # the response is aborted, not ended
            await c.simulate_get("/gen")
        return await c.simulate_get("/ok")

    ok = env.run(go)
    assert ok.status_code == 200
    assert kind.split("_")[0].lower() in env.log("gen.py").lower().replace("systemexit", "sys")


# -- attacker-chosen Host headers ----------------------------------------------
def _rows(env) -> list[str]:
    import sqlite3

    with sqlite3.connect(env.home.db) as conn:
        # the documents that exist: those with values, and those kept empty
        rows = conn.execute(
            "SELECT hostname FROM shared_paths UNION SELECT hostname FROM shared_docs"
        )
        return [r[0] for r in rows]


def test_distinct_hosts_grow_neither_memory_nor_the_database(env):
    import os

    from hoodyexec.http.sink import HOST_CACHE, ScriptsSink

    env.write("counter.py", "return {'n': shared.incr('n')}\n")
    os.makedirs(os.path.join(env.home.scripts, "api", "7"))
    env.write("hello.py", "return {'host': metadata.hostname}\n", instance="api/7")
    sinks: list[ScriptsSink] = []
    orig = ScriptsSink.__init__

    def spy(self, *a, **kw):
        orig(self, *a, **kw)
        sinks.append(self)

    ScriptsSink.__init__ = spy  # type: ignore[method-assign]
    try:

        async def go(c):
            out = []
            for i in range(300):  # unknown instances: 404, nothing created
                out.append((await c.simulate_get("/counter", host=f"exec-{i + 9}.x")).status_code)
            for i in range(300):  # unmatched hosts: the default instance, one document
                out.append((await c.simulate_get("/counter", host=f"h{i}.example")).status_code)
            hello = await c.simulate_get("/hello", host="api.exec-7.example.org")
            return out, hello

        out, hello = env.run(go)
    finally:
        ScriptsSink.__init__ = orig  # type: ignore[method-assign]
    assert out[:300] == [404] * 300 and out[300:] == [200] * 300
    assert hello.json == {"host": "api.exec-7.example.org"}
    sink = sinks[-1]
    assert set(sink.catalog.instances) == {("default", "1"), ("api", "7")}
    assert len(sink._by_host) <= HOST_CACHE and len(sink._by_host) == 301
    assert _rows(env) == ["default/1"]


def test_host_pattern_capturing_a_path_never_reaches_outside(tmp_path):
    env = ScriptEnv(tmp_path, "--host-pattern", r"^(?P<execId>[^:]+)")
    env.write("x.py", "return 1\n")
    r = env.get("/x", host="..")
    assert r.status_code == 404


# -- health tells the truth ------------------------------------------------------
def test_health_is_starting_until_every_worker_has_linked():
    import falcon.testing

    from hoodyexec.http.management import create_management

    live: list[int] = []

    async def pids() -> list[int]:
        return list(live)

    client = falcon.testing.TestClient(
        create_management(
            started=0.0, master_pid=1, control_pid=2, worker_pids=pids, expected_workers=2
        )
    )
    r = client.simulate_get("/api/v1/exec/health")
    assert r.status_code == 503 and r.json["status"] == "starting" and r.json["workers"] == []
    assert r.headers["retry-after"] == "1"
    live.append(10)
    assert client.simulate_get("/api/v1/exec/health").status_code == 503
    live.append(11)
    r = client.simulate_get("/api/v1/exec/health")
    assert r.status_code == 200 and r.json["status"] == "ok" and r.json["workers"] == [10, 11]
    live.remove(10)  # a worker being replaced: still up, and the live set is reported
    r = client.simulate_get("/api/v1/exec/health")
    assert r.status_code == 200 and r.json["workers"] == [11]


def test_an_unexpected_error_names_no_machine_path():
    import falcon.asgi
    import falcon.testing

    from hoodyexec.http import errors

    class Boom:
        async def on_get(self, req, resp):
            raise OSError(2, "No such file", "/very/secret/place/x.py")

    app = falcon.asgi.App()
    errors.install(app)
    app.add_route("/boom", Boom())
    r = falcon.testing.TestClient(app).simulate_get("/boom")
    assert r.status_code == 500 and r.json["type"] == "FileNotFoundError"
    assert "/very/secret" not in r.text


def test_shared_state_api_is_keyed_by_instance_and_creates_none_for_unknown_hosts(tmp_path):
    import falcon.testing

    from .scriptenv import management_app

    env = ScriptEnv(tmp_path)
    env.write("inc.py", "return shared.incr('hits')\n")
    api = falcon.testing.TestClient(management_app(env.home))
    assert env.get("/inc").json == 1  # Host of falcon's test client → default/1
    base = "/api/v1/exec/shared-state/"
    for host in ("127.0.0.1", "localhost:8080", "exec-1.localhost"):  # all name default/1
        r = api.simulate_post(base + "get", json={"hostname": host, "path": "hits"})
        assert r.json["value"] == 1 and r.json["exists"] is True
    # an instance with no folder has no document, and none is created for it
    r = api.simulate_post(base + "set", json={"hostname": "exec-77.localhost", "value": 1})
    assert r.status_code == 404 and "exec-77" in r.json["error"]
    r = api.simulate_post(base + "get", json={"hostname": "exec-77.localhost"})
    assert r.status_code == 200 and r.json["exists"] is False and r.json["value"] is None
    assert _rows(env) == ["default/1"]
    # route/test (run in a worker engine) sees the same document
    out = api.simulate_post("/api/v1/exec/route/test", json={"path": "/inc"}).json
    assert out["status"] == 200 and out["body"] == 2


def test_route_test_runs_in_the_instance_it_names_whatever_host_header_it_carries(tmp_path):
    import asyncio
    import os

    from hoodyexec.ipc.protocol import Invoke

    from .scriptenv import local_invoker

    env = ScriptEnv(tmp_path)
    env.write("who.py", "return [metadata.subdomain, metadata.execId, metadata.trigger]\n")
    os.makedirs(os.path.join(env.home.scripts, "api", "7"))
    env.write("who.py", "return [metadata.subdomain, metadata.execId, metadata.trigger]\n", "api/7")
    invoke = local_invoker(env.home)

    # the worker has served this Host before: it is cached for the default instance
    assert invoke.sink._target_for("localhost")[0].exec_id == "1"
    out = asyncio.run(invoke(Invoke("api", "7", "GET", "/who", headers=[("host", "localhost")])))
    assert out.status == 200 and out.body == b'["api","7","test"]'
