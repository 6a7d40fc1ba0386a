"""Compiling scripts (engine/compiler.py): shape detection, line numbers, load errors."""

from __future__ import annotations

import ast

import pytest

from hoodyexec.engine import compiler
from hoodyexec.engine.compiler import ScriptLoadError

from ..features.helpers import B


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
