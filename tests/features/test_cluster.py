"""The scripts applier of a node, in-process over a real shared backend: it
catches up on changes stored while it was not listening, is ready only once
caught up while listening, becomes not ready again when the notices
reconnect, keeps files dropped by hand, and answers a publication once the
live nodes acknowledged it (or names those that did not)."""

from __future__ import annotations

import asyncio

import pytest

from hoodyexec.engine.store import Scope
from hoodyexec.features.cluster.service import ScriptSync
from hoodyexec.home import Home
from hoodyexec.storage.backends import open_backend
from hoodyexec.storage.sync import Publication, Upsert, digest

pytestmark = pytest.mark.timeout(60)


class Bus:
    """What ScriptSync needs of ClusterBus, driven by the test."""

    def __init__(self) -> None:
        self.connected = False
        self.handlers: list = []
        self.on_connect: list = []

    def subscribe(self, handler, on_connect=None) -> None:
        self.handlers.append(handler)
        self.on_connect.append(on_connect)

    def connect(self) -> None:
        self.connected = True
        for callback in self.on_connect:
            callback()


def up(path: str, text: str) -> Upsert:
    return Upsert(path, text.encode(), digest(text.encode()))


def test_catch_up_reconnect_and_acknowledgements(shared_url, tmp_path):
    home = Home(str(tmp_path / "home"))
    home.prepare()
    replica = open_backend(shared_url, home.root).replica()
    assert replica is not None
    told: list[tuple[str, tuple[str, ...]]] = []

    async def tell(scope: Scope, paths: tuple[str, ...]) -> None:
        told.append((scope.subdomain, paths))

    async def scenario() -> None:
        bus = Bus()
        sync = ScriptSync(home, replica, bus, "n1", tell, lambda: ["n1", "n2"])
        await sync.start()
        root = tmp_path / "home/scripts/default/1"
        (root / "mine.py").write_text("return 'by hand'\n")
        # stored by another node while this one was not listening
        replica.publish("n2", Publication("default", "1", [up("lib/a.py", "A")], ["lib/a.py"]))
        replica.publish("n2", Publication("team", "2", [up("b.py", "B")], ["b.py"]))
        await sync.catch_up()
        assert (root / "lib/a.py").read_text() == "A"
        assert (tmp_path / "home/scripts/team/2/b.py").read_text() == "B"
        assert sorted(told) == [("default", ("lib/a.py",)), ("team", ("b.py",))]
        assert sync.applied == 2 and not sync.ready  # not listening: maybe missed some
        assert sync.status()[1]["scripts"]["listening"] is False
        bus.connect()
        assert not sync.ready
        await sync.catch_up()
        assert sync.ready and sync.acks["n1"] == 2
        assert replica.progress()["n1"].scripts == 2
        # a folder deleted elsewhere: its files go, and the folder left empty
        replica.publish("n2", Publication("default", "1", [], ["lib"]))
        told.clear()
        await sync.catch_up()
        assert not (root / "lib").exists() and (root / "mine.py").exists()
        assert told == [("default", ("lib/a.py",))]
        # a change already on disk is not written again, nor told
        (root / "same.py").write_text("S")
        replica.publish("n2", Publication("default", "1", [up("same.py", "S")], ["same.py"]))
        told.clear()
        await sync.catch_up()
        assert told == [] and sync.applied == 4
        # publishing: answered once every live node applied it; n2 never does
        (root / "new.py").write_text("N")
        publish = sync.snapshot(Scope(home, "default", "1"), ("new.py",))
        bus.connected = True
        sync._ack("n2", 10**9 - 1)  # noqa: SLF001 - n2 acknowledges everything
        await publish()
        assert sync.acks["n1"] == 5
        sync.acks["n2"] = 0
        late = await sync.wait_applied(5, timeout=0.2)
        assert late == ["n2"]
        await sync.stop()

    asyncio.run(scenario())
