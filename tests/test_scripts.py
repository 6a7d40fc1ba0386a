"""Script invocation in-process: shapes, injection, responses, failures, magic."""

from __future__ import annotations

import json
import time

import pytest

from .scriptenv import ScriptEnv


# -- shapes -------------------------------------------------------------------
def test_body_mode_return_and_metadata(env):
    env.write(
        "hello.py",
        """\
        # @description Greeting
        return {"hi": metadata.query.get("name", "world"), "trigger": metadata["trigger"],
                "script": metadata.script, "method": metadata.method, "path": metadata.path,
                "exec": [metadata.subdomain, metadata.execId], "id": metadata.executionId == req.id,
                "magic": metadata.magic}
        """,
    )
    r = env.get("/hello", params={"name": "ann"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json == {
        "hi": "ann",
        "trigger": "http",
        "script": "hello.py",
        "method": "GET",
        "path": "/hello",
        "exec": ["default", "1"],
        "id": True,
        "magic": {"description": "Greeting"},
    }


def test_body_mode_top_level_await_and_globals_persist(env):
    env.write(
        "count.py",
        """\
        import asyncio
        global n
        n = globals().get("n", 0) + 1
        await asyncio.sleep(0)
        return {"n": n}
        """,
    )

    async def go(c):
        return [(await c.simulate_get("/count")).json["n"] for _ in range(3)]

    assert env.run(go) == [1, 2, 3]


def test_handler_mode_runs_module_once_and_injects(env):
    env.write(
        "api/users/[id].py",
        """\
        loads = 0
        loads += 1
        def handler(req, id, query, body, params, metadata, shared, console, res):
            return {"id": id, "loads": loads, "query": query, "body": body, "params": params,
                    "host": metadata.hostname}
        """,
    )

    async def go(c):
        a = await c.simulate_post("/api/users/42", params={"x": "1"}, json={"k": [1]})
        b = await c.simulate_get("/api/users/7")
        return a, b

    a, b = env.run(go)
    assert a.json == {
        "id": "42",
        "loads": 1,
        "query": {"x": "1"},
        "body": {"k": [1]},
        "params": {"id": "42"},
        "host": "falconframework.org",
    }
    assert b.json["loads"] == 1 and b.json["id"] == "7" and b.json["body"] is None


def test_async_main_and_typed_route_param(env):
    env.write(
        "sq/[n].py",
        """\
        async def main(n: int):
            return n * n
        """,
    )
    assert env.get("/sq/12").json == 144
    r = env.get("/sq/abc")
    assert r.status_code == 400 and r.json["field"] == "$.n" and "executionId" in r.json


def test_method_functions_and_405(env):
    env.write(
        "items.py",
        """\
        def GET():
            return ["a"]
        def POST(body):
            return {"got": body}, 201
        """,
    )

    async def go(c):
        return (
            await c.simulate_get("/items"),
            await c.simulate_post("/items", json={"x": 1}),
            await c.simulate_delete("/items"),
            await c.simulate_head("/items"),
            await c.simulate_options("/items"),
        )

    get, post, delete, head, options = env.run(go)
    assert get.json == ["a"]
    assert post.status_code == 201 and post.json == {"got": {"x": 1}}
    assert delete.status_code == 405 and delete.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert "error" in delete.json
    assert head.status_code == 200
    assert options.status_code == 204 and "POST" in options.headers["allow"]


def test_typed_body_struct_dataclass_typeddict(env):
    env.write(
        "typed.py",
        """\
        import dataclasses
        from typing import TypedDict
        import msgspec

        class Item(msgspec.Struct):
            name: str
            qty: int = 1

        @dataclasses.dataclass
        class Filter:
            limit: int = 10

        class Note(TypedDict):
            text: str

        def POST(item: Item):
            return item

        def GET(query: Filter):
            return {"limit": query.limit}

        def PUT(note: Note):
            return note
        """,
    )

    async def go(c):
        return (
            await c.simulate_post("/typed", json={"name": "x", "qty": 3}),
            await c.simulate_post("/typed", json={"name": "x", "qty": "many"}),
            await c.simulate_post("/typed", json={"qty": 1}),
            await c.simulate_get("/typed", params={"limit": "5"}),
            await c.simulate_get("/typed", params={"limit": "lots"}),
            await c.simulate_put("/typed", json={"text": "hi"}),
            await c.simulate_post(
                "/typed",
                body="name=y&qty=4",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
        )

    ok, bad_type, missing, q_ok, q_bad, td, form = env.run(go)
    assert ok.json == {"name": "x", "qty": 3}
    assert bad_type.status_code == 400 and bad_type.json["field"] == "$.qty"
    assert missing.status_code == 400 and "name" in missing.json["error"]
    assert q_ok.json == {"limit": 5}
    assert q_bad.status_code == 400 and q_bad.json["field"] == "$.limit"
    assert td.json == {"text": "hi"}
    assert form.json == {"name": "y", "qty": 4}


def test_uninjectable_parameter_is_a_clear_500(env):
    env.write("bad.py", "def handler(zzz):\n    return 1\n")
    r = env.get("/bad")
    assert r.status_code == 500 and "zzz" in r.json["error"] and r.json["type"] == "InjectionError"


# -- request parsing ---------------------------------------------------------
def test_request_body_kinds(env):
    env.write(
        "echo.py",
        """\
        return {"type": type(req.body).__name__, "body": req.body if not isinstance(req.body, bytes)
                else req.body.hex(), "raw": len(req.raw), "ct": req.headers["CONTENT-TYPE"] if "content-type" in req.headers else None,
                "cookies": req.cookies, "client": req.client}
        """,
    )

    async def go(c):
        return (
            await c.simulate_post("/echo", json={"a": 1}),
            await c.simulate_post("/echo", body="hello", headers={"content-type": "text/plain"}),
            await c.simulate_post(
                "/echo", body=b"\x00\x01", headers={"content-type": "application/octet-stream"}
            ),
            await c.simulate_post(
                "/echo",
                body="a=1&a=2&b=",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            await c.simulate_get("/echo", headers={"cookie": "s=abc; t=1"}),
            await c.simulate_post(
                "/echo", body="{oops", headers={"content-type": "application/json"}
            ),
            await c.simulate_post(
                "/echo",
                body=b'--XX\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhey\r\n'
                b'--XX\r\nContent-Disposition: form-data; name="t"\r\n\r\nval\r\n--XX--\r\n',
                headers={"content-type": "multipart/form-data; boundary=XX"},
            ),
        )

    js, text, binary, form, get, bad, multi = env.run(go)
    assert js.json["body"] == {"a": 1} and js.json["type"] == "dict"
    assert text.json["body"] == "hello" and text.json["type"] == "str"
    assert binary.json == {**binary.json, "type": "bytes", "body": "0001"}
    assert form.json["body"] == {"a": ["1", "2"], "b": ""}
    assert get.json["body"] is None and get.json["cookies"] == {"s": "abc", "t": "1"}
    assert get.json["client"]
    assert (
        bad.status_code == 400 and bad.json["error"] == "Invalid JSON" and "executionId" in bad.json
    )
    assert multi.json["type"] == "dict" and multi.json["body"]["t"] == "val"
    assert multi.json["body"]["f"]["filename"] == "a.txt"


def test_body_limit_413(tmp_path):
    env = ScriptEnv(tmp_path, "--max-body-size", "100")
    env.write("up.py", "return len(req.raw)\n")

    async def go(c):
        return (
            await c.simulate_post("/up", body=b"x" * 100),
            await c.simulate_post("/up", body=b"x" * 101),
        )

    ok, big = env.run(go)
    assert ok.json == 100
    assert big.status_code == 413 and "limit" in big.json["error"]


# -- responses ---------------------------------------------------------------
@pytest.mark.parametrize(
    "code, status, ctype, body",
    [
        ("return [1, 'a', None, True, 1.5]", 200, "application/json", b'[1,"a",null,true,1.5]'),
        ("return 42", 200, "application/json", b"42"),
        ("return False", 200, "application/json", b"false"),
        ("return 'hi'", 200, "text/plain; charset=utf-8", b"hi"),
        ("return b'\\x00\\x01'", 200, "application/octet-stream", b"\x00\x01"),
        ("return None", 204, None, b""),
        ("pass", 204, None, b""),
        ("return {'a': 1}, 201", 201, "application/json", b'{"a":1}'),
        ("return 'x', 202, {'X-A': 'b'}", 202, "text/plain; charset=utf-8", b"x"),
        (
            "import datetime, uuid\nreturn {'d': datetime.date(2026, 1, 2), 'u': uuid.UUID(int=1)}",
            200,
            "application/json",
            b'{"d":"2026-01-02","u":"00000000-0000-0000-0000-000000000001"}',
        ),
        (
            "import msgspec\nclass P(msgspec.Struct):\n    x: int\nreturn P(3)",
            200,
            "application/json",
            b'{"x":3}',
        ),
        (
            "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\nreturn P(4)",
            200,
            "application/json",
            b'{"x":4}',
        ),
    ],
)
def test_return_value_mapping(env, code, status, ctype, body):
    env.write("r.py", code + "\n")
    r = env.get("/r")
    assert r.status_code == status
    if ctype:
        assert r.headers["content-type"] == ctype
    assert r.content == body


def test_tuple_headers_and_unserializable(env):
    env.write("h.py", "return 'x', 202, {'X-A': 'b'}\n")
    assert env.get("/h").headers["x-a"] == "b"
    env.write("u.py", "return {'s': {1, 2}.__iter__()}\n")
    r = env.get("/u")
    assert r.status_code == 500 and "serialize" in r.json["error"]


def test_res_builder_wins_and_chains(env):
    env.write(
        "res.py",
        """\
        kind = metadata.query.get("k")
        if kind == "json":
            res.status(201).header("X-One", "1").json({"made": True})
            return {"ignored": True}
        if kind == "text":
            return res.text("plain", 203)
        if kind == "html":
            return res.html("<b>x</b>")
        if kind == "redirect":
            return res.redirect("/elsewhere")
        if kind == "cookie":
            res.cookie("sid", "a b", max_age=60).send(b"\\x01", "application/x-thing")
            return
        if kind == "status-only":
            res.status(418)
            return {"teapot": True}
        """,
    )

    async def go(c):
        return {
            k: await c.simulate_get("/res", params={"k": k})
            for k in ["json", "text", "html", "redirect", "cookie", "status-only"]
        }

    r = env.run(go)
    assert (
        r["json"].status_code == 201
        and r["json"].json == {"made": True}
        and r["json"].headers["x-one"] == "1"
    )
    assert r["text"].status_code == 203 and r["text"].text == "plain"
    assert r["html"].headers["content-type"] == "text/html; charset=utf-8"
    assert r["redirect"].status_code == 302 and r["redirect"].headers["location"] == "/elsewhere"
    assert (
        r["cookie"].content == b"\x01"
        and r["cookie"].headers["content-type"] == "application/x-thing"
    )
    assert (
        "sid=a%20b" in r["cookie"].headers["set-cookie"]
        and "Max-Age=60" in r["cookie"].headers["set-cookie"]
    )
    assert r["status-only"].status_code == 418 and r["status-only"].json == {"teapot": True}


def test_streams_sync_async_and_sse(env):
    env.write("gen.py", "for i in range(3):\n    yield {'i': i}\n")
    env.write(
        "agen.py",
        "import asyncio\nasync def handler():\n    for i in range(2):\n        await asyncio.sleep(0)\n        yield f'line {i}\\n'\n",
    )
    env.write(
        "sse.py",
        "def handler(res):\n    return res.sse(iter(['a', {'event': 'x', 'data': {'k': 1}, 'id': '7'}]))\n",
    )

    async def go(c):
        return (
            await c.simulate_get("/gen"),
            await c.simulate_get("/agen"),
            await c.simulate_get("/gen", headers={"accept": "text/event-stream"}),
            await c.simulate_get("/sse"),
        )

    gen, agen, gen_sse, sse = env.run(go)
    assert gen.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(x) for x in gen.text.splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert agen.text == "line 0\nline 1\n" and agen.headers["content-type"].startswith("text/plain")
    assert gen_sse.headers["content-type"] == "text/event-stream"
    assert gen_sse.text == 'data: {"i":0}\n\ndata: {"i":1}\n\ndata: {"i":2}\n\n'
    assert sse.text == 'data: a\n\nevent: x\nid: 7\ndata: {"k":1}\n\n'


# -- failures ---------------------------------------------------------------
def test_exception_is_json_500_with_traceback_in_log_and_worker_survives(env):
    env.write("boom.py", "x = 1\nraise ValueError('nope')\n")
    env.write("ok.py", "return 'fine'\n")

    async def go(c):
        return await c.simulate_get("/boom"), await c.simulate_get("/ok")

    boom, ok = env.run(go)
    assert boom.status_code == 500
    assert (
        boom.json["error"] == "nope"
        and boom.json["type"] == "ValueError"
        and boom.json["executionId"]
    )
    assert ok.text == "fine"
    log = env.log("boom.py")
    assert (
        f"[{boom.json['executionId']}]" in log and "Traceback" in log and 'boom.py", line 2' in log
    )


def test_syntax_and_magic_errors_name_the_line(env):
    env.write("syn.py", "x = 1\nif x\n    return 2\n")
    env.write("mag.py", "# @description fine\n# @timeout soon\nreturn 1\n")
    env.write("unk.py", "# @frobnicate yes\nreturn 1\n")
    r = env.get("/syn")
    assert r.status_code == 500 and r.json["type"] == "SyntaxError" and r.json["line"] == 2
    assert "line 2" in r.json["error"]
    r = env.get("/mag")
    assert r.status_code == 500 and r.json["line"] == 2 and "@timeout" in r.json["error"]
    r = env.get("/unk")
    assert (
        r.status_code == 500 and r.json["line"] == 1 and "unknown magic comment" in r.json["error"]
    )


def test_unknown_route_and_private_and_non_py(env):
    env.write("_lib.py", "VALUE = 41\n")
    env.write("_hoody/secret.py", "return 'no'\n")
    env.write("use.py", "from _lib import VALUE\nreturn VALUE + 1\n")
    env.write("notes.txt", "plain")
    assert env.get("/use").json == 42
    for path in ["/_lib", "/_hoody/secret", "/notes.txt", "/notes", "/missing"]:
        r = env.get(path)
        assert r.status_code == 404 and r.json["error"], path


def test_private_module_change_reloads_importers(env):
    env.write("_lib.py", "VALUE = 1\n")
    env.write("use.py", "from _lib import VALUE\ndef handler():\n    return VALUE\n")

    async def go(c):
        first = (await c.simulate_get("/use")).json
        env.write("_lib.py", "VALUE = 2\n")
        return first, (await c.simulate_get("/use")).json

    assert env.run(go) == (1, 2)


def test_enabled_false_is_404(env):
    env.write("off.py", "# @enabled false\nreturn 1\n")
    assert env.get("/off").status_code == 404


def test_token_forms(env, monkeypatch):
    env.write("t.py", "# @token s3cret\nreturn 'in'\n")
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    env.write("e.py", "# @token env:HOOK_SECRET\nreturn 'in'\n")
    env.write("u.py", "# @token env:UNSET_SECRET_X\nreturn 'in'\n")

    async def go(c):
        return [
            (await c.simulate_get("/t")).status_code,
            (await c.simulate_get("/t", headers={"Authorization": "Bearer s3cret"})).status_code,
            (await c.simulate_get("/t", headers={"X-Hoody-Token": "s3cret"})).status_code,
            (await c.simulate_get("/t", params={"token": "s3cret"})).status_code,
            (await c.simulate_get("/t", headers={"Authorization": "Bearer wrong"})).status_code,
            (await c.simulate_get("/e", headers={"Authorization": "Bearer from-env"})).status_code,
            (await c.simulate_get("/e", headers={"Authorization": "Bearer s3cret"})).status_code,
            (await c.simulate_get("/u", params={"token": ""})).status_code,
        ]

    assert env.run(go) == [401, 200, 200, 200, 401, 200, 401, 401]


def test_cors_preflight_and_headers(env):
    env.write("c.py", "# @cors https://a.example https://b.example\nreturn 1\n")
    env.write("s.py", "# @cors *\ndef POST():\n    return 2\n")

    async def go(c):
        return (
            await c.simulate_options(
                "/c",
                headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"},
            ),
            await c.simulate_get("/c", headers={"Origin": "https://b.example"}),
            await c.simulate_get("/c", headers={"Origin": "https://evil.example"}),
            await c.simulate_options(
                "/s", headers={"Origin": "https://x", "Access-Control-Request-Method": "POST"}
            ),
        )

    pre, get, evil, star = env.run(go)
    assert (
        pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://a.example"
    )
    assert "access-control-allow-methods" in pre.headers
    assert get.json == 1 and get.headers["access-control-allow-origin"] == "https://b.example"
    assert "access-control-allow-origin" not in evil.headers
    assert star.status_code == 204 and star.headers["access-control-allow-origin"] == "*"
    assert "POST" in star.headers["access-control-allow-methods"]


def test_concurrency_limit_503(tmp_path):
    env = ScriptEnv(tmp_path, "--max-concurrency", "1")
    env.write("slow.py", "import asyncio\nawait asyncio.sleep(0.3)\nreturn 1\n")

    async def go(c):
        import asyncio

        return await asyncio.gather(c.simulate_get("/slow"), c.simulate_get("/slow"))

    a, b = sorted(env.run(go), key=lambda r: r.status_code)
    assert a.status_code == 200
    assert b.status_code == 503 and b.headers["retry-after"] == "1" and b.json["error"]


# -- logs ---------------------------------------------------------------------
def test_console_print_logging_go_to_the_script_log(env):
    env.write(
        "talk.py",
        """\
        import logging
        console.log("hello", {"a": 1})
        console.warn("careful")
        console.debug("dbg")
        print("printed", 42)
        logging.getLogger("mine").info("via logging")
        return req.id
        """,
    )
    env.write(
        "quiet.py",
        "# @log-level warn\nconsole.info('hidden')\nconsole.error('shown')\nreturn req.id\n",
    )
    r = env.get("/talk")
    eid = r.text
    log = env.log("talk.py")
    for needle in [
        'hello {"a":1}',
        "WARN  [" + eid + "] careful",
        "DEBUG [" + eid + "] dbg",
        "printed 42",
        "mine: via logging",
    ]:
        assert needle in log, needle
    assert all(f"[{eid}]" in line for line in log.strip().splitlines())
    env.get("/quiet")
    quiet = env.log("quiet.py")
    assert "shown" in quiet and "hidden" not in quiet


def test_concurrent_executions_log_under_their_own_ids(env):
    env.write(
        "p.py",
        """\
        import asyncio
        print("start", metadata.query["n"])
        await asyncio.sleep(0.01)
        print("end", metadata.query["n"])
        return req.id
        """,
    )

    async def go(c):
        import asyncio

        return await asyncio.gather(
            *[c.simulate_get("/p", params={"n": str(i)}) for i in range(20)]
        )

    results = env.run(go)
    log = env.log("p.py")
    for i, r in enumerate(results):
        eid = r.text
        mine = [line for line in log.splitlines() if f"[{eid}]" in line]
        assert [m.split("] ", 1)[1] for m in mine] == [f"start {i}", f"end {i}"]


# -- shared ------------------------------------------------------------------
def test_shared_state_ops(env):
    env.write(
        "s.py",
        """\
        op = metadata.query["op"]
        if op == "write":
            shared.set("a.b", [1, 2])
            shared.merge("cfg", {"x": 1})
            shared.merge("cfg", {"y": 2})
            shared.incr("n")
            shared.incr("n", 5)
            shared.delete("gone")
        return {"all": shared.all(), "b1": shared.get("a.b.1"), "missing": shared.get("nope", "dflt")}
        """,
    )

    async def go(c):
        await c.simulate_get("/s", params={"op": "write"})
        return await c.simulate_get("/s", params={"op": "read"})

    r = env.run(go)
    assert r.json == {
        "all": {"a": {"b": [1, 2]}, "cfg": {"x": 1, "y": 2}, "n": 6},
        "b1": 2,
        "missing": "dflt",
    }


# -- hosts ------------------------------------------------------------------
def test_host_selects_instance(env):
    env.write("who.py", "return ['one']\n")
    env.write(
        "who.py",
        "return [metadata.subdomain, metadata.execId, metadata.hostname]\n",
        instance="default/2",
    )
    env.write("who.py", "return ['api-3']\n", instance="api/3")

    async def go(c):
        return [
            (await c.simulate_get("/who", host=h)).json
            for h in [
                "localhost",
                "exec-2.localhost",
                "EXEC-2.localhost",
                "api.exec-3.example.org",
                "other.host",
            ]
        ]

    assert env.run(go) == [
        ["one"],
        ["default", "2", "exec-2.localhost"],
        ["default", "2", "exec-2.localhost"],
        ["api-3"],
        ["one"],
    ]


# -- freshness ------------------------------------------------------------------
def test_new_changed_and_removed_files_seen_on_next_request(env):
    env.write("v.py", "return 1\n")

    # In process the scenario calls the app in the loop step that changed the
    # file: env.poll() stands for the I/O step in which a worker's loop applies
    # inotify events before it reads the next request (env.write polls itself).
    async def go(c):
        out = [(await c.simulate_get("/v")).json]
        env.write("v.py", "return 2\n")  # atomic replace
        out.append((await c.simulate_get("/v")).json)
        with open(env.write("v.py", "return 3\n"), "w") as fh:  # in-place edit, same inode
            fh.write("return 4\n")
        env.poll()
        out.append((await c.simulate_get("/v")).json)
        env.write("n/[id].py", "return ['dyn']\n")
        out.append((await c.simulate_get("/n/me")).json)
        env.write(
            "n/me.py", "return ['static']\n"
        )  # a new static route shadows the dynamic one at once
        out.append((await c.simulate_get("/n/me")).json)
        (env.write("n/me.py", "")).unlink()
        env.poll()
        out.append((await c.simulate_get("/n/me")).json)
        (env.write("v.py", "")).unlink()
        env.poll()
        out.append((await c.simulate_get("/v")).status_code)
        return out

    assert env.run(go) == [1, 2, 4, ["dyn"], ["static"], ["dyn"], 404]


# -- modes and timeouts ---------------------------------------------------------
def test_timeouts_in_every_mode(env):
    env.write("spin.py", "# @timeout 200\n# @mode inline\nwhile True:\n    pass\n")
    env.write("tspin.py", "# @timeout 200\n# @mode thread\nwhile True:\n    pass\n")
    env.write("aspin.py", "# @timeout 200\nasync def handler():\n    while True:\n        pass\n")
    env.write("await.py", "# @timeout 200\nimport asyncio\nawait asyncio.sleep(30)\n")
    env.write(
        "catch.py",
        "# @timeout 200\ntry:\n    while True:\n        pass\nexcept Exception:\n    return 'swallowed'\n",
    )
    env.write("fast.py", "return 'fast'\n")

    async def go(c):
        out = {}
        for name in ["spin", "tspin", "aspin", "await", "catch"]:
            t = time.monotonic()
            r = await c.simulate_get(f"/{name}")
            out[name] = (r.status_code, r.json["type"], time.monotonic() - t)
        t = time.monotonic()
        out["fast"] = ((await c.simulate_get("/fast")).text, time.monotonic() - t)
        return out

    out = env.run(go)
    for name in ["spin", "tspin", "aspin", "await", "catch"]:
        status, kind, took = out[name]
        assert status == 504 and kind == "Timeout", name
        assert took < 1.5, (name, took)
    assert out["fast"][0] == "fast" and out["fast"][1] < 0.5


def test_auto_mode_moves_loop_holders_to_threads(env):
    env.write(
        "sleepy.py",
        "import time, threading\ntime.sleep(0.05)\nreturn threading.current_thread().name\n",
    )

    async def go(c):
        return [(await c.simulate_get("/sleepy")).text for _ in range(3)]

    names = env.run(go)
    assert names[0] == "MainThread"
    assert names[1] == names[2] == "hoodyexec-pool"
    assert "moved to the thread pool" in env.log("sleepy.py")


def test_readme_handler_example(env):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"```python\n# api/users/\[id\]\.py\n(.*?)```", readme, re.S).group(1)
    env.write("api/users/[id].py", code)

    async def go(c):
        ok = await c.simulate_post("/api/users/7", json={"name": "ann"})
        bad = await c.simulate_post("/api/users/7", json={"name": 1})
        return ok, bad

    ok, bad = env.run(go)
    assert ok.json == {"id": 7, "saved": True}
    assert bad.status_code == 400 and bad.json["field"] == "$.name"
    assert bad.json["error"] == "Invalid body: Expected `str`, got `int` - at `$.name`"


def test_sync_generator_does_not_block_the_loop(env):
    env.write(
        "slowgen.py", "import time\nfor i in range(3):\n    time.sleep(0.3)\n    yield f'{i}\\n'\n"
    )
    env.write("fast.py", "return 'fast'\n")

    async def go(c):
        import asyncio

        async def timed(path):
            t0 = time.monotonic()
            r = await c.simulate_get(path)
            return r, time.monotonic() - t0

        stream = asyncio.ensure_future(timed("/slowgen"))
        await asyncio.sleep(0.1)
        fast = await timed("/fast")
        return await stream, fast

    (stream, stream_took), (fast, fast_took) = env.run(go)
    assert stream.text == "0\n1\n2\n" and stream_took > 0.8
    assert fast.text == "fast" and fast_took < 0.25


def test_host_pattern_is_configurable(tmp_path):
    env = ScriptEnv(tmp_path, "--host-pattern", r"^(?P<execId>\d+)\.apps\.")
    env.write("who.py", "return [metadata.subdomain, metadata.execId]\n", instance="default/5")
    env.write("who.py", "return ['fallback']\n")

    async def go(c):
        return [
            (await c.simulate_get("/who", host=h)).json
            for h in ["5.apps.example", "exec-5.localhost"]
        ]

    assert env.run(go) == [["default", "5"], ["fallback"]]
