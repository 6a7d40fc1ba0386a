"""Management writes reach every worker as ``Invalidate`` notices over the control
socket, so workers are fresh where inotify cannot see: inotify turned off, a
change through a hard link; ``ClearCache`` and ``Status`` take the same path.

In-process: the real request-worker app linked to a real ``ControlServer``
(lifespan starts its link), and the management app broadcasting through it.
Live: the real kit with two workers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import falcon.testing
import pytest
from hoodyexec.workers.request import load_app

from hoodyexec.engine import catalog as catalog_module
from hoodyexec.ipc import hub
from hoodyexec.ipc.protocol import ClearCache, Status, Topic, WorkerStatus

from ..features.helpers import M, S
from ..scriptenv import ScriptEnv, management_app


# -- a real worker linked to a real hub ------------------------------------------------
class Linked:
    """One request worker (the real app, linked) and the management app whose
    writes broadcast through the hub, as in the kit."""

    def __init__(self, env: ScriptEnv) -> None:
        self.env = env
        self.server = hub.ControlServer(env.home.control_socket)
        self.worker = load_app(env.settings, env.home, link=True)

        async def broadcast(topic: Topic) -> list[int]:
            return await self.server.broadcast(topic, wait=2.0)

        self.api_app = management_app(env.home, broadcast=broadcast)

    async def run(self, scenario: Any) -> Any:
        os.makedirs(os.path.dirname(self.env.home.control_socket), exist_ok=True)
        await self.server.start()
        try:
            async with (
                falcon.testing.ASGIConductor(self.worker) as w,
                falcon.testing.ASGIConductor(self.api_app) as api,
            ):
                while not self.server.links:
                    await asyncio.sleep(0.01)
                return await scenario(w, api)
        finally:
            await self.server.close()

    def go(self, scenario: Any) -> Any:
        return asyncio.run(asyncio.wait_for(self.run(scenario), 30))


def test_with_inotify_off_an_api_write_is_served_at_once(tmp_path, monkeypatch):
    # Only notices refresh a route table here: no rescan during the test.
    monkeypatch.setattr(catalog_module, "RESCAN", 3600.0)
    env = ScriptEnv(tmp_path, "--no-inotify")
    env.write("old.py", "return 'old'\n")
    linked = Linked(env)

    async def scenario(w: Any, api: Any) -> None:
        assert (await w.simulate_get("/old")).text == "old"  # the route table is built
        env.write("side.py", "return 'side'\n")  # behind the API's back: not seen
        assert (await w.simulate_get("/side")).status_code == 404
        r = await api.simulate_post(S + "write", json={"path": "new.py", "content": "return 1\n"})
        assert r.status_code == 201
        assert (await w.simulate_get("/new")).json == 1
        r = await api.simulate_post(S + "write", json={"path": "new.py", "content": "return 2\n"})
        assert (await w.simulate_get("/new")).json == 2
        r = await api.simulate_post(S + "move", json={"from": "new.py", "to": "moved.py"})
        assert r.status_code == 200
        assert (await w.simulate_get("/new")).status_code == 404
        assert (await w.simulate_get("/moved")).json == 2
        upd = {"path": "moved.py", "comments": {"enabled": False}}
        assert (await api.simulate_put(M + "update", json=upd)).status_code == 200
        assert (await w.simulate_get("/moved")).status_code == 404
        r = await api.simulate_delete(S + "delete", params={"path": "old.py", "confirm": "true"})
        assert r.status_code == 200
        assert (await w.simulate_get("/old")).status_code == 404
        # the worker answers Status with its facts
        (reply,) = await linked.server.gather(Status(), timeout=2)
        assert isinstance(reply.answer, WorkerStatus)
        assert reply.answer.pid == os.getpid() and reply.answer.instances == 1

    linked.go(scenario)


def test_a_hard_link_change_shows_after_an_api_write_or_a_cache_clear(tmp_path):
    env = ScriptEnv(tmp_path)  # inotify on: it cannot see writes through the outside link
    path = env.write("x.py", "return 'v1'\n")
    outside = tmp_path / "outside.py"
    os.link(path, outside)
    linked = Linked(env)

    async def scenario(w: Any, api: Any) -> None:
        assert (await w.simulate_get("/x")).text == "v1"
        outside.write_text("return 'v2'\n")
        assert (await w.simulate_get("/x")).text == "v1"  # stale: nothing told the worker
        r = await api.simulate_post(S + "write", json={"path": "y.py", "content": "return 0\n"})
        assert r.status_code == 201
        assert (await w.simulate_get("/x")).text == "v2"
        outside.write_text("return 'v3'\n")
        assert (await w.simulate_get("/x")).text == "v2"
        # a cache clear for another instance leaves this one alone ...
        await linked.server.broadcast(ClearCache(hostname="exec-9.localhost"), wait=2)
        assert (await w.simulate_get("/x")).text == "v2"
        # ... one for this instance's host, or for all, drops its compiled code
        await linked.server.broadcast(ClearCache(hostname="localhost"), wait=2)
        assert (await w.simulate_get("/x")).text == "v3"
        outside.write_text("return 'v4'\n")
        await linked.server.broadcast(ClearCache(), wait=2)
        assert (await w.simulate_get("/x")).text == "v4"

    linked.go(scenario)


# -- the real kit, two workers -----------------------------------------------------------
def _by_worker(kit: Any, url: str, workers: int = 2, tries: int = 400) -> dict[int, Any]:
    """What each worker answers for ``url`` (the script returns [pid, value])."""
    seen: dict[int, Any] = {}
    for _ in range(tries):
        r = kit.get(url)
        assert r.status == 200, r
        pid, value = r.json()
        seen.setdefault(pid, set()).add(value)
        if len(seen) == workers:
            break
    assert len(seen) == workers, seen
    return seen


WHO = "import os\nreturn [os.getpid(), {!r}]\n"


@pytest.mark.slow
def test_live_inotify_off_every_worker_serves_an_api_write_at_once(make_kit):
    kit = make_kit(args=["--no-inotify"]).start()
    write = "/api/v1/exec/scripts/write"
    assert kit.request("POST", write, body={"path": "a.py", "content": WHO.format("a")}).status
    _by_worker(kit, "/a")  # both workers hold the instance's route table now
    r = kit.request("POST", write, body={"path": "b.py", "content": WHO.format("b1")})
    assert r.status == 201
    assert all(v == {"b1"} for v in _by_worker(kit, "/b").values())
    r = kit.request("POST", write, body={"path": "b.py", "content": WHO.format("b2")})
    assert all(v == {"b2"} for v in _by_worker(kit, "/b").values())
    r = kit.request("DELETE", "/api/v1/exec/scripts/delete?path=b.py&confirm=true")
    assert r.status == 200
    assert {kit.get("/b").status for _ in range(20)} == {404}


@pytest.mark.slow
def test_live_a_hard_link_change_shows_on_every_worker_after_an_api_write(make_kit, tmp_path):
    kit = make_kit().start()
    write = "/api/v1/exec/scripts/write"
    assert kit.request("POST", write, body={"path": "x.py", "content": WHO.format("v1")}).status
    outside = tmp_path / "outside.py"
    os.link(kit.home / "scripts" / "default" / "1" / "x.py", outside)
    _by_worker(kit, "/x")  # compiled in both workers
    outside.write_text(WHO.format("v2"))
    assert all(v == {"v1"} for v in _by_worker(kit, "/x").values())  # inotify saw nothing
    r = kit.request("POST", write, body={"path": "y.py", "content": "return 0\n"})
    assert r.status == 201
    assert all(v == {"v2"} for v in _by_worker(kit, "/x").values())
