"""Compiling scripts (engine/compiler.py): shape detection, line numbers, load errors."""

from __future__ import annotations

import ast

import pytest

from hoodyexec.engine import compiler
from hoodyexec.engine.compiler import ScriptLoadError


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
