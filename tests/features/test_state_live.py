"""Shared state against live kits over real HTTP (marked slow): acknowledged
writes survive a worker killed mid-write and the whole kit killed; a state
database written by version 2 is migrated at start and served."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

import pytest

from ..kit import Kit
from ..storage.reference import create_v2_database

pytestmark = pytest.mark.slow

E = "/api/v1/exec/"
INCR = 'return {"n": shared.incr("n")}\n'


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def stored(kit: Kit, path: str) -> object:
    r = kit.request("POST", E + "shared-state/get", {"hostname": "localhost", "path": path})
    assert r.status == 200, r.body
    return r.json()["value"]


def kill_everything(kit: Kit) -> None:
    """SIGKILL to the master and every process of the kit: nothing shuts down cleanly."""
    os.killpg(kit.pid, signal.SIGKILL)
    kit.wait(10)


class Hammer:
    """Client threads incrementing as fast as they can; what was acknowledged."""

    def __init__(self, kit: Kit, threads: int = 6) -> None:
        self.kit = kit
        self.acked: list[int] = []
        self.failed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.kit.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/incr")
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    self.acked.append(int(body.split(b":")[1].strip(b"}")))
                else:
                    self.failed += 1
            except (OSError, http.client.HTTPException, ValueError):
                self.failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.kit.port, timeout=10)
        conn.close()

    def until(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= count, (len(self.acked), self.failed)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def test_acknowledged_increments_survive_kill_9(make_kit):
    kit = make_kit().start()
    write(kit, "incr.py", INCR)
    for i in range(1, 51):  # N sequential increments, then the whole kit killed
        assert kit.get("/incr").json() == {"n": i}
    kill_everything(kit)
    kit.start()
    assert stored(kit, "n") == 50

    # A worker killed while writes are in flight: every acknowledged write stays.
    hammer = Hammer(kit)
    try:
        hammer.until(300)
        victim = kit.health()["workers"][0]
        os.kill(victim, signal.SIGKILL)
        hammer.until(len(hammer.acked) + 300)  # the other worker and the replacement go on
    finally:
        hammer.join()
    acked = sorted(hammer.acked)
    assert len(set(acked)) == len(acked)  # no value given twice
    kill_everything(kit)
    kit.start()
    final = stored(kit, "n")
    assert isinstance(final, int)
    assert final >= acked[-1]  # every acknowledged increment is there ...
    assert final - 50 <= len(acked) + hammer.failed  # ... and nothing counted twice
    assert kit.get("/incr").json() == {"n": final + 1}


def test_a_version_2_database_is_migrated_at_start(make_kit):
    kit = make_kit()
    kit.home.mkdir(parents=True)
    docs = {
        "default/1": {"n": 7, "users": {"1": {"name": "Zoë", "tags": ["a"]}}, "ratio": 2.0},
        "default/2": {"empty": {}, "list": [1, {"x": None}]},
    }
    create_v2_database(str(kit.home / "hoodyexec.db"), docs)
    kit.start()
    write(kit, "incr.py", INCR)
    assert kit.get("/incr").json() == {"n": 8}
    assert stored(kit, "users.1.name") == "Zoë"
    assert stored(kit, "ratio") == 2.0
    r = kit.request("POST", E + "shared-state/get", {"hostname": "exec-2.localhost"})
    assert r.json()["exists"] is False  # no folder for default/2 yet: no document served
    os.makedirs(kit.home / "scripts" / "default" / "2")
    r = kit.request("POST", E + "shared-state/get", {"hostname": "exec-2.localhost"})
    assert r.json()["value"] == docs["default/2"] and r.json()["exists"] is True
