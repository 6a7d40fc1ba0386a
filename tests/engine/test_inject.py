"""Injection plans compiled to getters once per script version (engine/inject.py)."""

from __future__ import annotations

import msgspec
import pytest

from hoodyexec.engine.compiler import Entry, Param, plan
from hoodyexec.engine.inject import CALL_FIELDS, INST, REQ, STORE, compile_plan


class Item(msgspec.Struct):
    name: str


def test_plan_compiles_to_one_getter_per_passed_parameter_in_order():
    def handler(id: int, body, item: Item, limit=10, res=None): ...

    params = plan(handler, ("id",), {"Item": Item})
    assert [(p.name, p.source) for p in params] == [
        ("id", "route"),
        ("body", "body"),
        ("item", "typed"),
        ("limit", "default"),
        ("res", "res"),
    ]
    entry = Entry(handler, "handler", params)
    # a parameter that keeps its default gets no getter (so it is not passed)
    assert [name for name, _ in entry.inject] == ["id", "body", "item", "res"]
    assert all(callable(get) for _, get in entry.inject)


def test_only_getters_that_read_the_request_make_the_sink_build_one():
    def reads_body(body, params, console): ...

    def reads_query(query): ...

    def defaults_only(x=1): ...

    assert not Entry(reads_body, "h", plan(reads_body, (), {})).needs_req
    assert Entry(reads_query, "h", plan(reads_query, (), {})).needs_req
    entry = Entry(defaults_only, "h", plan(defaults_only, (), {}))
    assert entry.inject == () and not entry.needs_req and not entry.needs_res


def test_body_mode_keeps_positional_arguments_and_no_getters():
    def body(req, res, metadata, shared, console, ai): ...

    entry = Entry(body, "body", [Param("res", "res")], positional=True)
    assert entry.inject == () and entry.needs_res and not entry.needs_req


def test_call_positions_name_the_fields_the_sink_fills_in_order():
    assert CALL_FIELDS[REQ] == "req" and CALL_FIELDS[INST] == "inst"
    assert STORE == len(CALL_FIELDS) - 3 and CALL_FIELDS[STORE] == "store"
    # the HTTP sink's tuple ends with ai; only WebSocket calls add ws
    assert CALL_FIELDS[-2:] == ("ai", "ws")


def test_unknown_source_is_a_bug_found_at_compile_time():
    with pytest.raises(ValueError, match="nowhere"):
        compile_plan([Param("x", "nowhere")])


def test_defaults_ai_and_body_without_a_request_object(env):
    env.write(
        "mix.py",
        """\
        def handler(body, ai, params, limit=10):
            return {"body": body, "ai": repr(ai), "params": params, "limit": limit}
        """,
    )
    env.write(
        "defaults.py",
        """\
        def handler(limit=10, tag="x"):
            return {"limit": limit, "tag": tag}
        """,
    )

    async def go(c):
        return (
            await c.simulate_post("/mix", json={"a": 1}),
            await c.simulate_get("/defaults"),
        )

    mix, defaults = env.run(go)
    assert mix.json == {
        "body": {"a": 1},
        "ai": "<ai for mix.py>",
        "params": {},
        "limit": 10,
    }
    assert defaults.json == {"limit": 10, "tag": "x"}


def test_getter_errors_are_400_with_the_execution_id(env):
    env.write(
        "t/[n].py",
        """\
        import msgspec

        class Item(msgspec.Struct):
            name: str

        def POST(n: int, item: Item):
            return {"n": n, "name": item.name}
        """,
    )

    async def go(c):
        return (
            await c.simulate_post("/t/3", json={"name": "x"}),
            await c.simulate_post("/t/x", json={"name": "x"}),
            await c.simulate_post("/t/3", json={"name": 5}),
            await c.simulate_post(
                "/t/3", body="{oops", headers={"content-type": "application/octet-stream"}
            ),
        )

    ok, bad_route, bad_body, bad_json = env.run(go)
    assert ok.json == {"n": 3, "name": "x"}
    assert bad_route.status_code == 400 and bad_route.json["field"] == "$.n"
    assert bad_body.status_code == 400 and bad_body.json["field"] == "$.name"
    assert bad_json.status_code == 400 and bad_json.json["error"] == "Invalid JSON"
    for r in (bad_route, bad_body, bad_json):
        assert r.json["executionId"]
