"""What features share (http/context.py): every management write announces what
changed (``Invalidate``) through ``Context.invalidated``, and a failed
announcement never fails the write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon.testing

from hoodyexec.ipc.protocol import Invalidate, Topic

from ..features.helpers import M, S, T
from ..scriptenv import ScriptEnv, management_app


def test_every_management_write_announces_what_changed(tmp_path):
    env = ScriptEnv(tmp_path)
    sent: list[Topic] = []

    async def record(topic: Topic) -> list[int]:
        sent.append(topic)
        return [3]

    api = falcon.testing.TestClient(management_app(env.home, broadcast=record))

    def after(method: str, path: str, **kw: Any) -> list[Topic]:
        sent.clear()
        r = api.simulate_request(method, path, **kw)
        assert r.status_code < 300, r.text
        return list(sent)

    def notice(path: str | None, instance: tuple[str, str] = ("default", "1")) -> Invalidate:
        return Invalidate(*instance, path)

    code = "return 1\n"
    assert after("POST", S + "write", json={"path": "a/x.py", "content": code}) == [
        notice("a/x.py")
    ]
    # an instance named in the body is the one announced
    w = {"path": "x.py", "content": code, "subdomain": "api", "execId": "7"}
    assert after("POST", S + "write", json=w) == [notice("x.py", ("api", "7"))]
    # a move: one notice for the folder holding both ends
    assert after("POST", S + "move", json={"from": "a/x.py", "to": "a/y.py"}) == [notice("a")]
    assert after("POST", S + "move", json={"from": "a/y.py", "to": "b/y.py"}) == [notice("")]
    assert after("DELETE", S + "delete", params={"path": "b", "confirm": "true"}) == [notice("b")]
    env.write("m.py", code)
    upd = {"path": "m.py", "comments": {"description": "d"}}
    assert after("PUT", M + "update", json=upd) == [notice("m.py")]
    assert after("PUT", M + "update", json=upd) == []  # unchanged: nothing written
    assert after("PUT", M + "update", json={**upd, "comments": {}, "dry_run": True}) == []
    env.write("a/p.py", code)
    env.write("a/q.py", code)
    bulk = {"directory": "a", "comments": {"label": "z"}}
    assert after("POST", M + "bulk-update", json=bulk) == [notice("a")]
    gen = {"name": "hello", "saveFile": True, "outputPath": "gen/hi.py"}
    assert after("POST", T + "generate", json=gen) == [notice("gen/hi.py")]
    assert after("POST", T + "generate", json={"name": "hello"}) == []  # not saved
    # refused writes announce nothing
    sent.clear()
    bad = api.simulate_post(S + "write", json={"path": "../x.py", "content": code})
    assert bad.status_code == 403 and sent == []


def test_a_failed_announcement_never_fails_the_write(tmp_path):
    env = ScriptEnv(tmp_path)

    async def broken(topic: Topic) -> list[int]:
        raise ConnectionResetError("control socket gone")

    api = falcon.testing.TestClient(management_app(env.home, broadcast=broken))
    r = api.simulate_post(S + "write", json={"path": "w.py", "content": "return 1\n"})
    assert r.status_code == 201 and (Path(env.home.scripts) / "default/1/w.py").exists()
