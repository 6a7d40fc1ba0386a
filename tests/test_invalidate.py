"""Management writes announce what changed (``Invalidate``), so workers are fresh
where inotify cannot see: inotify turned off, a change through a hard link.

In-process: the real request-worker app linked to a real ``ControlServer``
(lifespan starts its link), and the management app broadcasting through it.
Live: the real kit with two workers.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from hoodyexec.workers.request import load_app

from hoodyexec.engine import catalog as catalog_module
from hoodyexec.engine.catalog import Catalog
from hoodyexec.http.router import table_for
from hoodyexec.ipc import hub
from hoodyexec.ipc.protocol import ClearCache, Invalidate, Status, Topic, WorkerStatus

from .scriptenv import ScriptEnv, management_app

S = "/api/v1/exec/scripts/"
M = "/api/v1/exec/magic-comments/"
T = "/api/v1/exec/templates/"


# -- what each write announces ----------------------------------------------------
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


# -- the catalog's side ------------------------------------------------------------
def _catalog(tmp_path: Path, **kw: Any) -> tuple[Catalog, Path, Any]:
    inst_dir = tmp_path / "scripts" / "default" / "1"
    inst_dir.mkdir(parents=True)
    catalog = Catalog(str(tmp_path / "scripts"), table_for, **kw)
    return catalog, inst_dir, catalog.instance("default", "1")


def _load(catalog: Catalog, inst: Any, url: str) -> Any:
    catalog.refresh()
    found = inst.router.find(url)
    assert found is not None, url
    return catalog.load(inst, found[0])


def test_invalidate_rechecks_what_inotify_could_not_see_and_keeps_the_rest(tmp_path):
    catalog, inst_dir, inst = _catalog(tmp_path)
    for name in ("a", "b", "c"):
        (inst_dir / f"{name}.py").write_text(f"return '{name}1'\n")
    a, b, c = (_load(catalog, inst, f"/{n}") for n in "abc")
    # b changed through a hard link outside the tree: no inotify event, the
    # cached version keeps being served
    outside = tmp_path / "outside.py"
    os.link(inst_dir / "b.py", outside)
    outside.write_text("return 'b2, longer'\n")
    assert _load(catalog, inst, "/b") is b
    # an API write of a: a is dropped, b and c are checked against their file
    catalog.invalidate("default", "1", "a.py")
    assert _load(catalog, inst, "/a") is not a
    assert "b2" in _load(catalog, inst, "/b").source
    assert _load(catalog, inst, "/c") is c  # unchanged: same module, same state
    # checked once, then inotify vouches again
    outside.write_text("return 'b3, longer still'\n")
    assert "b2" in _load(catalog, inst, "/b").source
    # another instance's notice changes nothing here
    catalog.invalidate("other", "1", "x.py")
    assert "b2" in _load(catalog, inst, "/b").source
    catalog.invalidate("default", "1")  # the whole instance: everything dropped
    assert "b3" in _load(catalog, inst, "/b").source and _load(catalog, inst, "/c") is not c


def test_a_folder_notice_drops_importers_of_private_modules_there(tmp_path):
    catalog, inst_dir, inst = _catalog(tmp_path, watch=False)
    (inst_dir / "lib").mkdir()
    (inst_dir / "lib" / "_util.py").write_text("X = 1\n")
    (inst_dir / "lib" / "use.py").write_text(
        "import _util\n\n\ndef handler():\n    return _util.X\n"
    )
    (inst_dir / "top.py").write_text("return 0\n")
    use = _load(catalog, inst, "/lib/use")
    top = _load(catalog, inst, "/top")
    # a folder where no private module was looked up: scripts are only rechecked
    catalog.invalidate("default", "1", "other")
    assert _load(catalog, inst, "/lib/use") is use and _load(catalog, inst, "/top") is top
    # the folder whose scripts import one: they reload it
    catalog.invalidate("default", "1", "lib")
    assert _load(catalog, inst, "/lib/use") is not use
    # a private module itself: every script of the instance
    top = _load(catalog, inst, "/top")
    catalog.invalidate("default", "1", "lib/_util.py")
    assert _load(catalog, inst, "/top") is not top


def test_without_inotify_a_folder_is_rescanned_at_most_once_a_second(tmp_path, monkeypatch):
    catalog, inst_dir, inst = _catalog(tmp_path, watch=False)
    (inst_dir / "a.py").write_text("return 1\n")
    _load(catalog, inst, "/a")
    (inst_dir / "new.py").write_text("return 2\n")
    assert inst.router.find("/new") is None  # trusted for RESCAN seconds
    now = time.monotonic()
    monkeypatch.setattr(catalog_module.time, "monotonic", lambda: now + catalog_module.RESCAN + 1)
    assert inst.router.find("/new") is not None


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
