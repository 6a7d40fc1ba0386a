"""Script faults in-process: every way a script can end is a JSON answer, never the worker's end."""

from __future__ import annotations

import pytest

from .scriptenv import ScriptEnv


@pytest.fixture
def env(tmp_path):
    return ScriptEnv(tmp_path)


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
        first = await c.simulate_get("/gen")
        return first, await c.simulate_get("/ok")

    first, ok = env.run(go)
    assert first.status_code == 200 and first.text.startswith("a")
    assert ok.status_code == 200
    assert kind.split("_")[0].lower() in env.log("gen.py").lower().replace("systemexit", "sys")
