"""Templates feature: every built-in renders and answers correctly in-process; safe
substitution; custom template storage with atomic files and error statuses; the
endpoints."""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hoodyexec.engine import magic
from hoodyexec.errors import HoodyError
from hoodyexec.features.templates.service import (
    BUILTINS,
    Template,
    TemplateConflict,
    TemplateInvalid,
    TemplateNotFound,
    TemplateStore,
    Variable,
    check_code,
    parse_variables,
    render_template,
)

from ..scriptenv import ScriptEnv
from .helpers import T

EVIL = '"); import os; os.system("x")#\n\'\'\'\\ """ {{other}} \u2028 \x00 end'


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(str(tmp_path / "templates"))


def install(env: ScriptEnv, store: TemplateStore, name: str, **variables: object) -> str:
    """Render ``name`` and write it under its suggested filename; returns the code."""
    code = store.render(name, variables)
    env.write(store.get(name).filename, code)
    return code


def sse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append(fields)
    return events


# -- built-ins, each run for real ------------------------------------------------
def test_builtins_are_complete_and_render_with_defaults(store: TemplateStore) -> None:
    expected = {
        "hello",
        "json-api",
        "hmac-webhook",
        "shell-command",
        "workflow",
        "scheduled-job",
        "http-call",
        "sse-stream",
        "typed-crud",
    }
    assert expected <= set(BUILTINS)
    for name, template in BUILTINS.items():
        assert template.builtin and template.filename.endswith(".py") and template.variables
        check_code(template.code, template.variables)
        code = store.render(name)
        ast.parse(code)
        parsed, problems = magic.parse(code)
        assert problems == [] and parsed.description, name
        assert "{{" not in code, name


def test_hello(env: ScriptEnv, store: TemplateStore) -> None:
    install(env, store, "hello")
    env.write("hi.py", store.render("hello", {"greeting": "Hi", "default_name": "you"}))

    async def go(c):
        return (
            await c.simulate_get("/hello"),
            await c.simulate_get("/hello", params={"name": "ann"}),
            await c.simulate_get("/hi"),
        )

    default, named, custom = env.run(go)
    assert default.status_code == 200 and default.json == {"message": "Hello, world!"}
    assert named.json == {"message": "Hello, ann!"}
    assert custom.json == {"message": "Hi, you!"}


def test_json_api_add_and_list(env: ScriptEnv, store: TemplateStore) -> None:
    install(env, store, "json-api")
    install_small = store.render("json-api", {"collection": "tiny", "max_items": 1})
    env.write("tiny.py", install_small)

    async def go(c):
        return (
            await c.simulate_post("/api/records", json={"name": "pen", "qty": 2}),
            await c.simulate_post("/api/records", json={"name": "ink", "id": 99}),
            await c.simulate_get("/api/records"),
            await c.simulate_get("/api/records", params={"id": "2"}),
            await c.simulate_get("/api/records", params={"id": "7"}),
            await c.simulate_post("/api/records", json=[1, 2]),
            await c.simulate_post("/tiny", json={"a": 1}),
            await c.simulate_post("/tiny", json={"a": 2}),
        )

    first, second, listed, one, missing, bad, tiny1, tiny2 = env.run(go)
    assert first.status_code == 201 and first.json == {"name": "pen", "qty": 2, "id": 1}
    assert second.status_code == 201 and second.json == {"name": "ink", "id": 2}
    assert listed.json == {"items": [first.json, second.json], "count": 2}
    assert one.json == second.json
    assert missing.status_code == 404 and "7" in missing.json["error"]
    assert bad.status_code == 400
    assert tiny1.status_code == 201 and tiny2.status_code == 409


def test_hmac_webhook(env: ScriptEnv, store: TemplateStore, monkeypatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "s3cret")
    monkeypatch.delenv("OTHER_HOOK_SECRET", raising=False)
    install(env, store, "hmac-webhook")
    env.write("fallback.py", store.render("hmac-webhook", {"secret_env": "OTHER_HOOK_SECRET"}))
    env.write(
        "inline.py",
        store.render("hmac-webhook", {"secret_env": "OTHER_HOOK_SECRET", "secret": "x'\"y"}),
    )
    body = b'{"action":"opened","number":1}'

    def signed(secret: bytes, payload: bytes = body) -> dict[str, str]:
        sig = hmac.new(secret, payload, hashlib.sha256).hexdigest()
        return {
            "content-type": "application/json",
            "x-hub-signature-256": f"sha256={sig}",
            "x-github-event": "pull_request",
            "x-github-delivery": "d-1",
        }

    async def go(c):
        return (
            await c.simulate_post("/webhooks/github", body=body, headers=signed(b"s3cret")),
            await c.simulate_post("/webhooks/github", body=body, headers=signed(b"wrong")),
            await c.simulate_post(
                "/webhooks/github", body=b'{"action":"closed"}', headers=signed(b"s3cret")
            ),
            await c.simulate_post(
                "/webhooks/github", body=body, headers={"content-type": "application/json"}
            ),
            await c.simulate_post("/fallback", body=body, headers=signed(b"s3cret")),
            await c.simulate_post("/inline", body=body, headers=signed(b"x'\"y")),
        )

    ok, wrong, tampered, unsigned, unconfigured, inline = env.run(go)
    assert ok.status_code == 200
    assert ok.json == {"ok": True, "event": "pull_request", "delivery": "d-1", "action": "opened"}
    for rejected in (wrong, tampered, unsigned):
        assert rejected.status_code == 401 and rejected.json == {"error": "invalid signature"}
        assert rejected.headers["content-type"] == "application/json"
    assert unconfigured.status_code == 500 and "not configured" in unconfigured.json["error"]
    assert inline.status_code == 200 and inline.json["ok"] is True


def test_shell_command(env: ScriptEnv, store: TemplateStore) -> None:
    install(env, store, "shell-command")
    env.write("echo.py", store.render("shell-command", {"argv": ["echo", "hi"]}))
    env.write("missing.py", store.render("shell-command", {"argv": ["/nonexistent/cmd-x"]}))
    env.write("slow.py", store.render("shell-command", {"argv": ["sleep", "5"], "timeout_s": 0.2}))
    env.write("shellish.py", store.render("shell-command", {"argv": ["echo", "$HOME;", "`id`"]}))

    async def go(c):
        return [
            await c.simulate_get(p)
            for p in ("/tools/command", "/echo", "/missing", "/slow", "/shellish")
        ]

    default, echo, missing, slow, shellish = env.run(go)
    assert default.status_code == 200 and default.json["returncode"] == 0
    assert default.json["argv"] == ["uname", "-a"] and default.json["stdout"].strip()
    assert echo.json == {"argv": ["echo", "hi"], "returncode": 0, "stdout": "hi\n", "stderr": ""}
    assert missing.status_code == 500 and "cannot run" in missing.json["error"]
    assert slow.status_code == 504 and "timed out" in slow.json["error"]
    assert shellish.json["stdout"] == "$HOME; `id`\n"  # no shell: nothing expanded


def test_workflow(env: ScriptEnv, store: TemplateStore) -> None:
    install(env, store, "workflow")

    async def go(c):
        return (
            await c.simulate_post("/workflows/order", json={"customer": "ann", "amount": 42}),
            await c.simulate_post("/workflows/order", json={"customer": "bob", "amount": 5000}),
            await c.simulate_post("/workflows/order", json={"amount": "lots"}),
        )

    ok, over, bad = env.run(go)
    assert ok.status_code == 200 and ok.json["ok"] is True and ok.json["failed"] is None
    steps = ok.json["steps"]
    assert [s["step"] for s in steps] == ["validate", "check", "act"]
    assert all(s["ok"] for s in steps)
    assert steps[0]["output"] == {"customer": "ann", "amount": 42}
    assert steps[1]["output"] == {"approved": True, "limit": 1000}
    assert steps[2]["output"]["orderId"] == 1 and steps[2]["output"]["at"]

    assert over.status_code == 422 and over.json["failed"] == "check"
    assert [s["step"] for s in over.json["steps"]] == ["validate", "check"]
    assert over.json["steps"][1] == {**over.json["steps"][1], "ok": False}
    assert "over the limit" in over.json["steps"][1]["error"]
    assert over.json["skipped"] == ["act"]

    assert bad.status_code == 422 and bad.json["failed"] == "validate"
    assert bad.json["skipped"] == ["check", "act"]


def test_scheduled_job(env: ScriptEnv, store: TemplateStore) -> None:
    code = install(env, store, "scheduled-job")
    parsed, problems = magic.parse(code)
    assert problems == [] and parsed.schedule == "*/5 * * * *"
    other = store.render("scheduled-job", {"cron": "0 3 * * 1", "state_key": "jobs.nightly"})
    assert magic.parse(other)[0].schedule == "0 3 * * 1"
    with pytest.raises(TemplateInvalid) as err:
        store.render("scheduled-job", {"cron": "every day"})
    assert err.value.extra["variable"] == "cron" and err.value.status == 400
    with pytest.raises(TemplateInvalid) as err:
        store.render("scheduled-job", {"cron": "* * * * *\n# @token stolen"})
    assert err.value.extra["variable"] == "cron"

    async def go(c):
        return await c.simulate_get("/jobs/heartbeat"), await c.simulate_get("/jobs/heartbeat")

    first, second = env.run(go)
    assert first.status_code == 200 and first.json["runs"] == 1
    assert first.json["trigger"] == "http" and first.json["previousRun"] is None
    assert first.json["lastRun"].endswith("+00:00")
    assert second.json["runs"] == 2 and second.json["previousRun"] == first.json["lastRun"]


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        if self.path.startswith("/fail"):
            payload, status = b"upstream broke", 500
            ctype = "text/plain; charset=utf-8"
        else:
            status, ctype = 200, "application/json"
            payload = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "accept": self.headers.get("Accept"),
                }
            ).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream(monkeypatch) -> Iterator[str]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_call(env: ScriptEnv, store: TemplateStore, upstream: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    install(env, store, "http-call", url=f"{upstream}/echo?x=1")
    env.write("post.py", store.render("http-call", {"url": f"{upstream}/in", "method": "post"}))
    env.write("down.py", store.render("http-call", {"url": f"http://127.0.0.1:{closed}/"}))
    env.write("fail.py", store.render("http-call", {"url": f"{upstream}/fail"}))

    async def go(c):
        return (
            await c.simulate_get("/integrations/upstream"),
            await c.simulate_post("/post", json={"a": 1}),
            await c.simulate_get("/down"),
            await c.simulate_get("/fail"),
        )

    got, posted, down, fail = env.run(go)
    assert got.status_code == 200
    assert got.json == {
        "status": 200,
        "contentType": "application/json",
        "body": {"method": "GET", "path": "/echo?x=1", "body": None, "accept": "application/json"},
    }
    assert posted.json["body"]["method"] == "POST"
    assert json.loads(posted.json["body"]["body"]) == {"a": 1}
    assert down.status_code == 502 and "upstream request failed" in down.json["error"]
    assert down.headers["content-type"] == "application/json"
    assert fail.status_code == 502 and fail.json["status"] == 500
    assert fail.json["body"] == "upstream broke"


def test_sse_stream(env: ScriptEnv, store: TemplateStore) -> None:
    install(env, store, "sse-stream")
    env.write("fast.py", store.render("sse-stream", {"count": 3, "interval_ms": 5}))

    async def go(c):
        return await c.simulate_get("/streams/ticks"), await c.simulate_get("/fast")

    default, fast = env.run(go)
    for r, n in ((default, 5), (fast, 3)):
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        events = sse_events(r.text)
        assert r.text.count("data: ") == n and len(events) == n
        assert [e["event"] for e in events] == ["tick"] * n
        assert [e["id"] for e in events] == [str(i) for i in range(1, n + 1)]
        datas = [json.loads(e["data"]) for e in events]
        assert [(d["tick"], d["of"]) for d in datas] == [(i, n) for i in range(1, n + 1)]


def test_typed_crud(env: ScriptEnv, store: TemplateStore) -> None:
    install(env, store, "typed-crud")
    base = "/api/notes"

    async def go(c):
        r = {}
        r["create"] = await c.simulate_post(base, json={"title": "buy pens", "tags": ["shop"]})
        r["create2"] = await c.simulate_post(base, json={"title": "call bob"})
        r["bad_type"] = await c.simulate_post(base, json={"title": 5})
        r["missing"] = await c.simulate_post(base, json={"body": "no title"})
        r["unknown"] = await c.simulate_post(base, json={"title": "x", "color": "red"})
        r["too_long"] = await c.simulate_post(base, json={"title": "x" * 201})
        r["get"] = await c.simulate_get(f"{base}/1")
        r["get_query"] = await c.simulate_get(base, params={"id": "1"})
        r["list"] = await c.simulate_get(base)
        r["put"] = await c.simulate_put(f"{base}/1", json={"title": "buy ink", "done": True})
        r["put_bad"] = await c.simulate_put(f"{base}/1", json={"title": "y", "done": "yes"})
        r["put_missing"] = await c.simulate_put(f"{base}/99", json={"title": "z"})
        r["after_put"] = await c.simulate_get(f"{base}/1")
        r["get_missing"] = await c.simulate_get(f"{base}/99")
        r["bad_id"] = await c.simulate_get(f"{base}/abc")
        r["delete"] = await c.simulate_delete(f"{base}/1")
        r["after_delete"] = await c.simulate_get(f"{base}/1")
        r["delete_again"] = await c.simulate_delete(f"{base}/1")
        r["list2"] = await c.simulate_get(base)
        return r

    r = env.run(go)
    note1 = {"id": 1, "title": "buy pens", "body": "", "tags": ["shop"], "done": False}
    assert r["create"].status_code == 201 and r["create"].json == note1
    assert r["create2"].json["id"] == 2
    assert r["bad_type"].status_code == 400 and r["bad_type"].json["field"] == "$.title"
    assert r["missing"].status_code == 400 and "title" in r["missing"].json["error"]
    assert r["unknown"].status_code == 400 and "color" in r["unknown"].json["error"]
    assert r["too_long"].status_code == 400 and r["too_long"].json["field"] == "$.title"
    assert r["get"].json == note1 and r["get_query"].json == note1
    assert r["list"].json["count"] == 2 and [n["id"] for n in r["list"].json["items"]] == [1, 2]
    assert r["put"].status_code == 200
    assert r["put"].json == {"id": 1, "title": "buy ink", "body": "", "tags": [], "done": True}
    assert r["put_bad"].status_code == 400 and r["put_bad"].json["field"] == "$.done"
    assert r["put_missing"].status_code == 404
    assert r["after_put"].json == r["put"].json
    assert r["get_missing"].status_code == 404 and "99" in r["get_missing"].json["error"]
    assert r["bad_id"].status_code == 400 and r["bad_id"].json["field"] == "$.id"
    assert r["delete"].status_code == 200 and r["delete"].json == {"deleted": 1}
    assert r["after_delete"].status_code == 404 and r["delete_again"].status_code == 404
    assert [n["id"] for n in r["list2"].json["items"]] == [2]


# -- safe substitution -------------------------------------------------------------
def _custom(code: str, *variables: Variable) -> Template:
    return Template(name="t", code=code, variables=list(variables))


def test_string_values_stay_literals(env: ScriptEnv) -> None:
    t = _custom("VALUE = {{v}}\nreturn {'v': VALUE}\n", Variable(name="v"))
    code = render_template(t, {"v": EVIL})
    tree = ast.parse(code)
    assert len(tree.body) == 2 and isinstance(tree.body[0], ast.Assign)
    assert ast.literal_eval(tree.body[0].value) == EVIL
    assert "import os" not in [ast.unparse(s) for s in tree.body]
    env.write("evil.py", code)
    assert env.get("/evil").json == {"v": EVIL}


def test_every_type_round_trips() -> None:
    variables = [
        Variable(name="s", type="string"),
        Variable(name="i", type="integer"),
        Variable(name="n", type="number"),
        Variable(name="b", type="boolean"),
        Variable(name="l", type="list"),
        Variable(name="o", type="object"),
    ]
    t = _custom("X = ({{s}}, {{i}}, {{n}}, {{b}}, {{l}}, {{o}}, 2 ** {{i}})\n", *variables)
    values = {
        "s": 'it\'s "q"',
        "i": -3,
        "n": 1.5,
        "b": False,
        "l": [1, "a", None, [True]],
        "o": {"k": {"n": -1.25, "s": "'}"}},
    }
    namespace: dict[str, object] = {}
    exec(render_template(t, values), namespace)  # noqa: S102 - the test's own template
    assert namespace["X"] == (*values.values(), 2**-3)
    exec(render_template(t, {**values, "i": 4.0}), namespace)  # noqa: S102
    assert namespace["X"][1] == 4 and type(namespace["X"][1]) is int  # whole float → integer


@pytest.mark.parametrize(
    ("var_type", "value"),
    [
        ("integer", "abc"),
        ("integer", True),
        ("integer", 1.5),
        ("number", "1"),
        ("number", float("inf")),
        ("boolean", "true"),
        ("string", 5),
        ("list", {"a": 1}),
        ("list", [object()]),
        ("object", [1]),
        ("object", {1: "a"}),
        ("object", {"x": float("nan")}),
    ],
)
def test_wrong_types_are_400_naming_the_variable(var_type: str, value: object) -> None:
    t = _custom("X = {{count}}\n", Variable(name="count", type=var_type))  # type: ignore[arg-type]
    with pytest.raises(TemplateInvalid) as err:
        render_template(t, {"count": value})
    assert err.value.status == 400 and err.value.extra["variable"] == "count"
    assert "count" in err.value.message and isinstance(err.value, ValueError)


def test_unknown_and_missing_required_variables(store: TemplateStore) -> None:
    with pytest.raises(TemplateInvalid) as err:
        store.render("hello", {"greting": "typo"})
    assert err.value.extra["variable"] == "greting" and "greeting" in err.value.message
    t = _custom("X = {{need}}\n", Variable(name="need", required=True, default="ignored"))
    with pytest.raises(TemplateInvalid) as err:
        render_template(t, {})
    assert err.value.extra["variable"] == "need" and "required" in err.value.message
    assert render_template(t, {"need": "ok"}) == "X = 'ok'\n"
    optional = _custom("X = {{maybe}}\n", Variable(name="maybe"))
    assert render_template(optional, None) == "X = None\n"
    with pytest.raises(TemplateInvalid):
        render_template(optional, ["not", "a", "dict"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "code",
    [
        "X = '{{v}}'\n",
        'X = f"{ {{v}} }"\n',
        "{{v}} = 1\n",
        "import {{v}}\n",
        "def {{v}}():\n    pass\n",
        "x.{{v}}\n",
        "f({{v}}=1)\n",
        "X = a{{v}}\n",
        "X = {{v}}{{v}}\n",
        "X = {{v|raw}}\n",
        "X = {{v}\n",
        'X = """\n{{v}}\n"""\n',
    ],
)
def test_placeholders_outside_expressions_are_refused(code: str) -> None:
    with pytest.raises(TemplateInvalid):
        check_code(code, [Variable(name="v")])


def test_comment_placeholders_take_single_line_scalars_only() -> None:
    t = _custom(
        "# @description {{d}}\nreturn 1\n", Variable(name="d", default="a tool"), Variable(name="o")
    )
    assert magic.parse(render_template(t, {}))[0].description == "a tool"
    for bad in ("two\nlines", "x\u2028# @token t", "bell\x07", ["list"]):
        with pytest.raises(TemplateInvalid) as err:
            render_template(t, {"d": bad})
        assert err.value.extra["variable"] == "d"


def test_parse_variables() -> None:
    assert parse_variables(None) == {} and parse_variables(" ") == {}
    assert parse_variables('{"count": 3}') == {"count": 3}
    for bad in ("[1]", "{nope", "3"):
        with pytest.raises(TemplateInvalid):
            parse_variables(bad)


# -- custom templates ----------------------------------------------------------------
CUSTOM_CODE = "# @description Ping {{target}}\nTARGET = {{target}}\nreturn {'pong': TARGET}\n"
CUSTOM_META = {
    "title": "Ping",
    "description": "Answers pong",
    "category": "utility",
    "variables": [{"name": "target", "type": "string", "default": "you"}],
    "tags": ["demo"],
}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_custom_lifecycle(store: TemplateStore, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    created = store.create_custom("ping", CUSTOM_CODE, CUSTOM_META)
    assert created.name == "ping" and not created.builtin and created.filename == "ping.py"
    assert _files(folder) == ["ping.json", "ping.py"]  # no temp files left
    stored = json.loads((folder / "ping.json").read_text())
    assert "code" not in stored and stored["title"] == "Ping" and stored["builtin"] is False
    assert (folder / "ping.py").read_text() == CUSTOM_CODE

    listed = [t for t in store.list() if t["name"] == "ping"]
    assert listed == [
        {
            "name": "ping",
            "title": "Ping",
            "description": "Answers pong",
            "category": "utility",
            "variables": [
                {
                    "name": "target",
                    "description": "",
                    "type": "string",
                    "default": "you",
                    "required": False,
                }
            ],
            "filename": "ping.py",
            "builtin": False,
            "tags": ["demo"],
        }
    ]
    got = store.get("ping")
    assert got.code == CUSTOM_CODE and got.variables[0].default == "you"
    rendered = store.render("ping", {"target": "ann"})
    assert rendered == "# @description Ping ann\nTARGET = 'ann'\nreturn {'pong': TARGET}\n"

    with pytest.raises(TemplateConflict) as err:
        store.create_custom("ping", CUSTOM_CODE, CUSTOM_META)
    assert err.value.status == 409

    updated = store.update_custom("ping", code="return {'v': {{target}}}\n")
    assert updated.code == "return {'v': {{target}}}\n" and updated.title == "Ping"
    updated = store.update_custom("ping", metadata={"title": "Ping 2", "category": "demo"})
    assert updated.title == "Ping 2" and updated.category == "demo"
    assert updated.variables[0].name == "target" and updated.code.startswith("return")
    assert store.render("ping") == "return {'v': 'you'}\n"
    assert _files(folder) == ["ping.json", "ping.py"]

    assert store.delete_custom("ping") is True
    assert _files(folder) == []
    assert store.delete_custom("ping") is False
    with pytest.raises(TemplateNotFound) as err:
        store.get("ping")
    assert err.value.status == 404
    with pytest.raises(TemplateNotFound) as err:
        store.update_custom("ping", code="return 1\n")
    assert err.value.status == 404


def test_custom_errors(store: TemplateStore) -> None:
    for bad_name in ("Ping", "-x", "a_b", "../x", "", "a" * 64, "x.y"):
        with pytest.raises(TemplateInvalid) as err:
            store.create_custom(bad_name, "return 1\n", {})
        assert err.value.status == 400 and isinstance(err.value, ValueError)
    with pytest.raises(TemplateConflict):
        store.create_custom("hello", "return 1\n", {})
    with pytest.raises(TemplateInvalid) as err:
        store.create_custom("broken", "return (\n", {})
    assert err.value.status == 400 and err.value.extra["line"]
    with pytest.raises(TemplateInvalid) as err:
        store.create_custom("undeclared", "X = {{nope}}\n", {})
    assert err.value.extra["variable"] == "nope"
    with pytest.raises(TemplateInvalid):
        store.create_custom("badmagic", "# @timeout soon\nreturn 1\n", {})
    bad_metas = [
        {"variables": [{"name": "x", "type": "integer", "default": "abc"}]},
        {"variables": [{"name": "x", "type": "color"}]},
        {"variables": [{"name": "x"}, {"name": "x"}]},
        {"variables": [{"name": "not-an-identifier"}]},
        {"filename": "../escape.py"},
        {"filename": "/abs.py"},
        {"category": "Bad Category"},
        {"builtin": True},
        {"name": "other"},
        {"colour": "red"},
    ]
    for meta in bad_metas:
        with pytest.raises(TemplateInvalid):
            store.create_custom("bad", "return 1\n", meta)
    with pytest.raises(TemplateConflict):
        store.update_custom("hello", code="return 1\n")
    with pytest.raises(TemplateConflict):
        store.delete_custom("hello")
    assert store.list(include_builtin=False) == []  # nothing was stored by the failures
    # a required variable is enforced at render time
    store.create_custom(
        "needs", "X = {{v}}\nreturn X\n", {"variables": [{"name": "v", "required": True}]}
    )
    with pytest.raises(TemplateInvalid) as err:
        store.render("needs", {})
    assert err.value.extra["variable"] == "v"
    with pytest.raises(TemplateInvalid):
        store.update_custom("needs", code="X = {{other}}\n")
    assert store.get("needs").code == "X = {{v}}\nreturn X\n"  # failed update left it as it was
    assert isinstance(err.value, HoodyError) and err.value.to_dict()["variable"] == "v"


def test_writes_are_atomic(store: TemplateStore, tmp_path: Path, monkeypatch) -> None:
    store.create_custom("keep", "return 1\n", {"title": "Keep"})
    folder = tmp_path / "templates"

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store.update_custom("keep", code="return 2\n", metadata={"title": "Changed"})
    monkeypatch.undo()
    assert _files(folder) == ["keep.json", "keep.py"]  # temp file cleaned up
    kept = store.get("keep")
    assert kept.code == "return 1\n" and kept.title == "Keep"


def test_corrupt_custom_file_is_skipped_in_listing(store: TemplateStore, tmp_path: Path) -> None:
    store.create_custom("fine", "return 1\n", {})
    (tmp_path / "templates" / "broken.json").write_text("{not json")
    (tmp_path / "templates" / "broken.py").write_text("return 1\n")
    assert [t["name"] for t in store.list(include_builtin=False)] == ["fine"]
    with pytest.raises(HoodyError) as err:
        store.get("broken")
    assert err.value.status == 500


def test_listing_filters(store: TemplateStore) -> None:
    store.create_custom("mine", CUSTOM_CODE, {**CUSTOM_META, "category": "api"})
    everything = store.list()
    names = [t["name"] for t in everything]
    assert names[: len(BUILTINS)] == list(BUILTINS) and names[-1] == "mine"
    assert all("code" not in t and "variables" in t for t in everything)
    assert {t["name"] for t in store.list(category="api")} == {"json-api", "typed-crud", "mine"}
    assert [t["name"] for t in store.list(category="api", include_builtin=False)] == ["mine"]
    assert "mine" not in {t["name"] for t in store.list(include_custom=False)}
    assert [t["name"] for t in store.list(include_builtin=False)] == ["mine"]
    assert store.list(include_builtin=False, include_custom=False) == []
    assert store.list(category="nope") == []
    assert {t["category"] for t in store.list(include_custom=False)} >= {
        "api",
        "webhook",
        "utility",
        "workflow",
        "scheduled",
        "integration",
        "streaming",
    }


# -- the endpoints -------------------------------------------------------------
def test_templates_endpoints(api):
    r = api.simulate_get(T + "list")
    names = {t["name"] for t in r.json["templates"]}
    assert {
        "json-api",
        "hmac-webhook",
        "shell-command",
        "workflow",
        "scheduled-job",
        "http-call",
        "sse-stream",
        "typed-crud",
    } <= names and r.json["count"] >= 8
    assert all("code" not in t for t in r.json["templates"])
    assert {
        t["category"]
        for t in api.simulate_get(T + "list", params={"category": "api"}).json["templates"]
    } == {"api"}
    assert api.simulate_get(T + "list", params={"includeBuiltin": "false"}).json["count"] == 0
    r = api.simulate_get(
        T + "preview", params={"name": "hello", "variables": '{"greeting": "Hey"}'}
    )
    assert r.status_code == 200 and "'Hey'" in r.json["code"]
    assert api.simulate_get(T + "preview", params={"name": "nope"}).status_code == 404
    assert (
        api.simulate_get(T + "preview", params={"name": "hello", "variables": "{bad"}).status_code
        == 400
    )
    assert (
        api.simulate_get(
            T + "preview", params={"name": "sse-stream", "variables": '{"count": "x"}'}
        ).status_code
        == 400
    )
    r = api.simulate_post(T + "generate", json={"name": "hello", "variables": {"greeting": "Yo"}})
    assert r.status_code == 200 and r.json["saved"] is False
    r = api.simulate_post(
        T + "generate", json={"name": "hello", "saveFile": True, "outputPath": "gen/hi.py"}
    )
    assert r.status_code == 201 and r.json["path"] == "gen/hi.py" and r.json["route"] == "/gen/hi"
    assert os.path.exists(os.path.join(api.home.instance_dir(), "gen", "hi.py"))
    r = api.simulate_post(
        T + "generate", json={"name": "hello", "saveFile": True, "outputPath": "../x.py"}
    )
    assert r.status_code == 403
    # custom templates live in the instance's _hoody/templates/
    code = "# @description mine\nreturn {'n': {{n}}}\n"
    r = api.simulate_post(
        T + "create-custom",
        json={
            "name": "mine",
            "code": code,
            "metadata": {
                "description": "mine",
                "category": "custom",
                "variables": [{"name": "n", "type": "integer", "default": 1}],
            },
        },
    )
    assert r.status_code == 201, r.json
    assert os.path.exists(os.path.join(api.home.instance_dir(), "_hoody", "templates", "mine.py"))
    assert (
        api.simulate_post(
            T + "create-custom", json={"name": "mine", "code": "return 1\n"}
        ).status_code
        == 409
    )
    assert (
        api.simulate_post(T + "create-custom", json={"name": "Bad Name", "code": code}).status_code
        == 400
    )
    r = api.simulate_post(T + "generate", json={"name": "mine", "variables": {"n": 5}})
    assert "return {'n': 5}" in r.json["code"]
    r = api.simulate_put(T + "update-custom/mine", json={"code": "return {{n}} * 2\n"})
    assert r.status_code == 200
    assert (
        "return 5 * 2"
        in api.simulate_post(T + "generate", json={"name": "mine", "variables": {"n": 5}}).json[
            "code"
        ]
    )
    assert (
        api.simulate_put(T + "update-custom/none", json={"code": "return 1\n"}).status_code == 404
    )
    assert (
        api.simulate_put(T + "update-custom/hello", json={"code": "return 1\n"}).status_code == 409
    )
    assert api.simulate_delete(T + "delete-custom/mine").status_code == 200
    assert api.simulate_get(T + "preview", params={"name": "mine"}).status_code == 404


def test_template_comment_placeholders_use_the_same_check(api):
    code = "# @description {{d}}\nreturn 1\n"
    r = api.simulate_post(
        T + "create-custom",
        json={"name": "c", "code": code, "metadata": {"variables": [{"name": "d"}]}},
    )
    assert r.status_code == 201, r.json
    for ch in ["\x85", "\u2028", "\x0c", "\x1b"]:
        r = api.simulate_post(T + "generate", json={"name": "c", "variables": {"d": f"a{ch}b"}})
        assert r.status_code == 400 and r.json["variable"] == "d", r.json


def test_deeply_nested_template_variables_are_400(api):
    r = api.simulate_get(T + "preview", params={"name": "hello", "variables": "[" * 100_000})
    assert r.status_code == 400, r.json
