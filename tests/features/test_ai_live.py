"""The ai helper against a local OpenAI-compatible server, through a live kit."""

from __future__ import annotations

import socket
import time

import pytest

from ..fakeai import FakeAI
from ..kit import Kit

pytestmark = pytest.mark.slow


@pytest.fixture
def fake():
    server = FakeAI()
    yield server
    server.close()


@pytest.fixture
def aikit(make_kit, fake) -> Kit:
    args = ["--ai-base-url", fake.url, "--ai-model", "test-model", "--ai-timeout-ms", "3000"]
    return make_kit(workers=1, args=[*args, "--ai-max-retries", "0"]).start()


def put(kit: Kit, rel: str, text: str) -> None:
    path = kit.home / "scripts/default/1" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_generate_with_the_kits_model_and_no_key(aikit, fake):
    put(
        aikit,
        "gen.py",
        "r = await ai.generate('hello there')\nreturn {'text': r.text, 'model': r.model, 'usage': r.usage}\n",
    )
    r = aikit.get("/gen")
    assert r.status == 200, r.body
    assert r.json()["text"] == "echo: hello there" and r.json()["model"] == "test-model"
    assert r.json()["usage"]["total_tokens"] == 5
    (sent,) = fake.requests
    assert sent["model"] == "test-model"
    assert sent["messages"] == [{"role": "user", "content": "hello there"}]


def test_magic_comments_and_system_prompts(aikit, fake):
    put(
        aikit,
        "tuned.py",
        "# @ai-model other-model\n# @ai-temperature 0.2\n# @ai-max-tokens 50\n"
        "return {'text': (await ai.generate('x')).text}\n",
    )
    put(aikit, "tuned.system.md", "You are terse.\n")
    put(aikit, "team/_system.md", "You speak for the team.\n")
    put(
        aikit,
        "team/sub/deep.py",
        "async def handler(ai):\n    return {'t': (await ai.generate('y')).text}\n",
    )
    assert aikit.get("/tuned").status == 200
    assert aikit.get("/team/sub/deep").status == 200
    tuned, deep = fake.requests
    assert tuned["model"] == "other-model" and tuned["temperature"] == 0.2
    assert tuned["max_tokens"] == 50
    assert tuned["messages"][0] == {"role": "system", "content": "You are terse."}
    assert deep["model"] == "test-model" and "temperature" not in deep
    assert deep["messages"][0] == {"role": "system", "content": "You speak for the team."}
    (aikit.home / "scripts/default/1/tuned.system.md").write_text("Changed.\n")
    aikit.get("/tuned")
    assert fake.requests[-1]["messages"][0]["content"] == "Changed."  # re-read when it changes


def test_stream_reaches_the_client_chunk_by_chunk(aikit, fake):
    fake.replies = ["one two three four"]
    fake.chunk_delay = 0.3
    put(aikit, "talk.py", "return ai.stream('count')\n")
    with socket.create_connection(("127.0.0.1", aikit.port)) as s:
        s.sendall(b"GET /talk HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        t0 = time.monotonic()
        first = s.recv(65536)
        first_at = time.monotonic() - t0
        data = first
        s.settimeout(5)
        while not data.endswith(b"0\r\n\r\n"):
            more = s.recv(65536)
            if not more:
                break
            data += more
        total = time.monotonic() - t0
    assert b"text/event-stream" in first
    assert first_at < total - 0.5, (first_at, total)  # first bytes long before the end
    text = data.decode()
    for word in ("one", "two", "three", "four"):
        assert f"data: {word}" in text
    assert fake.requests[0]["stream"] is True


def test_object_returns_the_struct_and_retries_a_wrong_shape(aikit, fake):
    put(
        aikit,
        "extract.py",
        "import msgspec\n\n\nclass Person(msgspec.Struct):\n    name: str\n    age: int\n\n\n"
        "p = await ai.object(schema=Person, prompt='Ann is 30')\n"
        "return {'type': type(p).__name__, 'name': p.name, 'age': p.age}\n",
    )
    fake.replies = ['{"name": "Ann", "age": 30}']
    r = aikit.get("/extract")
    assert r.status == 200, r.body
    assert r.json() == {"type": "Person", "name": "Ann", "age": 30}
    fmt = fake.requests[-1]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["age"] == {"type": "integer"}
    fake.replies = ['{"name": "Ann", "age": "thirty"}', '{"name": "Ann", "age": 30}']
    assert aikit.get("/extract").json()["age"] == 30
    assert "does not fit" in fake.requests[-1]["messages"][-1]["content"]
    fake.replies = ['{"name": "Ann"}', '{"age": "x"}']
    r = aikit.get("/extract")
    assert r.status == 502 and "Person" in r.json()["error"] and r.json()["executionId"]


def test_provider_down_is_a_fast_502_and_429_a_503(make_kit, fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    kit = make_kit(
        workers=1,
        args=[
            "--ai-base-url",
            f"http://127.0.0.1:{dead}/v1",
            "--ai-model",
            "m",
            "--ai-max-retries",
            "0",
        ],
    ).start()
    put(kit, "gen.py", "return {'t': (await ai.generate('x')).text}\n")
    t0 = time.monotonic()
    r = kit.get("/gen")
    assert r.status == 502 and time.monotonic() - t0 < 3
    assert r.json()["provider"] == "127.0.0.1" and "unreachable" in r.json()["error"]
    assert kit.health()["status"] == "ok"
    other = make_kit(
        workers=1, args=["--ai-base-url", fake.url, "--ai-model", "m", "--ai-max-retries", "0"]
    ).start()
    put(other, "gen.py", "return {'t': (await ai.generate('x')).text}\n")
    fake.fail = (429, {"Retry-After": "7"})
    r = other.get("/gen")
    assert r.status == 503 and r.headers["retry-after"] == "7"
    fake.fail = (500, {})
    assert other.get("/gen").status == 502


def test_magic_schema_shows_the_kits_ai_defaults(aikit):
    schema = aikit.get("/api/v1/exec/magic-comments/schema").json()["schema"]
    by = {s["name"]: s for s in schema}
    assert by["ai-model"]["default"] == "test-model"


def test_the_ai_templates_run(aikit, fake):
    from hoodyexec.features.templates.service import BUILTINS, render_template

    for name in ("ai-summarize", "ai-extract"):
        put(aikit, BUILTINS[name].filename, render_template(BUILTINS[name], None))
    fake.replies = ["A short summary."]
    r = aikit.request("POST", "/ai/summarize", {"text": "A long text about many things."})
    assert r.status == 200 and r.json()["summary"] == "A short summary.", r.body
    assert fake.requests[-1]["temperature"] == 0.2
    assert aikit.request("POST", "/ai/summarize", {}).status == 400
    fake.replies = ['{"name": "Ann Lee", "email": "ann@example.org", "company": null}']
    r = aikit.request("POST", "/ai/extract", {"text": "Mail Ann Lee at ann@example.org"})
    assert r.status == 200, r.body
    assert r.json() == {"name": "Ann Lee", "email": "ann@example.org", "company": None}
