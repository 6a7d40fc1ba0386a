"""The ai helper in-process: schemas, system prompts, settings, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import typing

import msgspec
import pytest

from hoodyexec.features.ai.helper import (
    AIError,
    AIHelper,
    AISettings,
    _inline,
    _schema_of,
    _system_prompt,
)

from ..fakeai import FakeAI


class Person(msgspec.Struct):
    name: str
    age: int


@dataclasses.dataclass
class Pet:
    kind: str


class Place(typing.TypedDict):
    city: str


def test_schemas_from_structs_dataclasses_typeddicts_and_dicts():
    schema, target = _schema_of(Person)
    assert target is Person and _inline(schema)["properties"]["age"] == {"type": "integer"}
    assert _inline(_schema_of(Pet)[0])["required"] == ["kind"]
    assert _inline(_schema_of(Place)[0])["properties"]["city"] == {"type": "string"}
    raw = {"type": "object", "properties": {"x": {"type": "number"}}}
    assert _schema_of(raw) == (raw, None)
    with pytest.raises(TypeError):
        _schema_of(int)


def test_system_prompt_sibling_then_nearest_folder_file(tmp_path):
    root = tmp_path / "default" / "1"
    (root / "a" / "b").mkdir(parents=True)
    script = root / "a" / "b" / "s.py"
    assert _system_prompt(str(script), str(root)) is None
    (root / "_system.md").write_text("root prompt")
    assert _system_prompt(str(script), str(root)) == "root prompt"
    (root / "a" / "_system.md").write_text("folder prompt")
    assert _system_prompt(str(script), str(root)) == "folder prompt"
    (root / "a" / "b" / "s.system.md").write_text("own prompt\n")
    assert _system_prompt(str(script), str(root)) == "own prompt"


def test_settings_fall_back_to_the_openai_environment_then_a_tag(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    s = AISettings(home="/some/home")
    assert s.resolved_key().startswith("container-") and s.resolved_key() == s.resolved_key()
    assert AISettings(home="/other").resolved_key() != s.resolved_key()
    assert s.resolved_base_url() == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm.invalid/v1")
    assert s.resolved_key() == "sk-env" and s.resolved_base_url() == "http://llm.invalid/v1"
    assert AISettings(api_key="mine").resolved_key() == "mine"
    helper = AIHelper(AISettings(api_key="mine"), "/x/s.py", {"ai-key": "usage-tag"}, "/x")
    assert helper.key == "usage-tag" and helper.provider == "llm.invalid"


def test_no_model_anywhere_is_a_clear_error():
    helper = AIHelper(AISettings(base_url="http://127.0.0.1:9/v1"), "/x/s.py", {}, "/x")
    with pytest.raises(AIError, match="ai-model"):
        asyncio.run(helper.generate("hi"))


def test_a_provider_that_hangs_fails_within_the_timeout(tmp_path):
    import http.server
    import threading
    import time

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's API
            time.sleep(5)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = AISettings(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
            model="m",
            timeout_ms=500,
            max_retries=0,
        )
        helper = AIHelper(settings, str(tmp_path / "s.py"), {}, str(tmp_path))
        t0 = time.monotonic()
        with pytest.raises(AIError, match="within 500 ms") as err:
            asyncio.run(helper.generate("hi"))
        assert time.monotonic() - t0 < 3 and err.value.status == 502
    finally:
        server.shutdown()


def test_chat_and_a_plain_json_schema_object(tmp_path):
    fake = FakeAI()
    try:
        helper = AIHelper(
            AISettings(base_url=fake.url, model="m"), str(tmp_path / "s.py"), {}, str(tmp_path)
        )
        fake.replies = ["first", '{"x": 1}']

        async def go():
            answer = await helper.chat(
                [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                ]
            )
            value = await helper.object(schema={"type": "object"}, prompt="give x")
            return answer, value

        answer, value = asyncio.run(go())
        assert answer.text == "first" and str(answer) == "first"
        assert len(fake.requests[0]["messages"]) == 3
        assert value == {"x": 1}
    finally:
        fake.close()


def test_a_worker_does_not_import_openai_until_a_script_uses_ai(tmp_path):
    import subprocess
    import sys

    code = f"""
import sys
from hoodyexec.config import Settings
from hoodyexec.home import Home
from hoodyexec.workers.request import load_app
home = Home({str(tmp_path / "home")!r})
home.prepare()
load_app(Settings(home=home.root), home, link=False)
print("openai" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ai_client_is_the_openai_client_and_validation_knows_ai(tmp_path):
    import openai

    from hoodyexec.features.validate.service import validate_script

    helper = AIHelper(AISettings(base_url="http://127.0.0.1:9/v1", model="m"), "/x/s.py", {}, "/x")
    assert isinstance(helper.client, openai.AsyncOpenAI)
    assert str(helper.client.base_url).startswith("http://127.0.0.1:9/v1")
    assert helper.client is helper.client  # one client, reused
    report = validate_script("r = await ai.generate('hi')\nreturn {'t': r.text}\n")
    assert report["valid"] is True, report
