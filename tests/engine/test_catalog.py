"""The catalog (engine/catalog.py): compiled scripts kept fresh without inotify
(stat per request, folders rescanned at most once a second) and by ``Invalidate``
notices where inotify cannot see (a change through a hard link); dot-files are
never routed, also when inotify reports them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from hoodyexec.engine import catalog as catalog_module
from hoodyexec.engine.catalog import Catalog
from hoodyexec.http.router import table_for

from ..scriptenv import ScriptEnv, _outside


def test_catalog_without_inotify_falls_back_to_stat(tmp_path):
    import os as _os
    import time as _time

    from hoodyexec.engine.catalog import Catalog

    root = tmp_path / "scripts"
    inst_dir = root / "default" / "1"
    inst_dir.mkdir(parents=True)
    (inst_dir / "v.py").write_text("return 1\n")
    from hoodyexec.http.router import table_for

    catalog = Catalog(str(root), table_for, watch=False)
    inst = catalog.instance("default", "1")
    route, _ = inst.router.find("/v")
    first = catalog.load(inst, route)
    assert catalog.load(inst, route) is first  # unchanged: the cached version
    _time.sleep(0.01)
    (inst_dir / "v.py").write_text("return 22\n")
    second = catalog.load(inst, route)
    assert second is not first and "22" in second.source
    _os.unlink(inst_dir / "v.py")
    with pytest.raises(FileNotFoundError):
        catalog.load(inst, route)


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


def test_dot_files_added_after_the_first_request_are_not_routed(tmp_path):
    env = ScriptEnv(tmp_path)
    env.write("visible.py", "return 'v'\n")
    inst = env.home.instance_dir()

    async def scenario(c):
        seen = []

        async def get(path):
            seen.append((path, (await c.simulate_get(path)).status_code))

        await get("/visible")  # the route table is built: from now on, inotify updates it
        env.write(".hidden.py", "return 'h'\n")
        await get("/.hidden")
        os.makedirs(os.path.join(inst, ".folder"))
        os.makedirs(os.path.join(inst, "sub", ".dot"))
        await get("/visible")  # folders appeared: the table is rebuilt by a scan
        env.write(".folder/x.py", "return 'x'\n")
        env.write("sub/.dot/y.py", "return 'y'\n")
        env.write("sub/.z.py", "return 'z'\n")
        env.write("late.py", "return 'l'\n")
        for path in ("/.folder/x", "/sub/.dot/y", "/sub/.z", "/late"):
            await get(path)
        return seen

    assert env.run(scenario) == [
        ("/visible", 200),
        ("/.hidden", 404),
        ("/visible", 200),
        ("/.folder/x", 404),
        ("/sub/.dot/y", 404),
        ("/sub/.z", 404),
        ("/late", 200),
    ]


def test_symlink_outside_instance_is_not_routed_when_added_live(env, tmp_path):
    secret = _outside(tmp_path)
    env.write("ok.py", "return 1\n")
    root = env.home.instance_dir()

    # env.poll(): the I/O step in which a worker's loop applies inotify events
    # (in process the app is called in the step that changed the files).
    async def go(c):
        assert (await c.simulate_get("/ok")).status_code == 200  # the table is live now
        os.symlink(secret, os.path.join(root, "evil.py"))
        env.poll()
        first = (await c.simulate_get("/evil")).status_code
        # a link renamed over a routed, already compiled file takes its route away
        os.symlink(secret, os.path.join(root, ".swap"))
        os.replace(os.path.join(root, ".swap"), os.path.join(root, "ok.py"))
        env.poll()
        second = (await c.simulate_get("/ok")).status_code
        # and a real file renamed over the link is a route again
        with open(os.path.join(root, ".real"), "w") as fh:
            fh.write("return 2\n")
        os.replace(os.path.join(root, ".real"), os.path.join(root, "ok.py"))
        env.poll()
        third = await c.simulate_get("/ok")
        return first, second, third.status_code, third.json

    assert env.run(go) == (404, 404, 200, 2)


def test_catalog_refuses_a_link_leading_outside_without_inotify(tmp_path):
    from hoodyexec.engine.catalog import Catalog
    from hoodyexec.engine.routes import route_for
    from hoodyexec.http.router import table_for

    root = tmp_path / "scripts"
    (root / "default" / "1").mkdir(parents=True)
    os.symlink(_outside(tmp_path), root / "default" / "1" / "evil.py")
    catalog = Catalog(str(root), table_for, watch=False)
    inst = catalog.instance("default", "1")
    with pytest.raises(FileNotFoundError):
        catalog.load(inst, route_for("evil.py"))


def test_the_event_loop_applies_inotify_events_once_watching(tmp_path):
    """watch_from: the sink's per-request poll is off (``check`` None) and the
    loop drops a changed script in its next I/O step; close() unregisters."""
    import asyncio

    catalog, inst_dir, inst = _catalog(tmp_path)
    (inst_dir / "v.py").write_text("return 1\n")
    first = _load(catalog, inst, "/v")
    assert catalog.check is not None  # not watched by a loop yet: polled per request

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        catalog.watch_from(loop)
        assert catalog.check is None
        (inst_dir / "v.py").write_text("return 2\n")
        (inst_dir / "new.py").write_text("return 3\n")
        await asyncio.sleep(0.05)  # a few loop steps: the reader ran
        dropped = "v.py" not in inst.scripts
        routed = inst.router.find("/new") is not None
        catalog.close()
        return dropped, routed

    dropped, routed = asyncio.run(main())
    assert dropped and routed
    assert catalog.watcher is None and catalog.check is None
    assert first.source.strip() == "return 1"
