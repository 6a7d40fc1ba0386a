"""System feature: health."""

from __future__ import annotations

import falcon.testing
import pytest

from hoodyexec import __version__
from hoodyexec.features.system import restart
from hoodyexec.home import Home

from ..scriptenv import management_app
from .helpers import management


def test_health_shape():
    r = falcon.testing.TestClient(management()).simulate_get("/api/v1/exec/health")
    assert r.status_code == 200
    body = r.json
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["master"] == 1 and body["control"] == 2 and body["workers"] == [11, 12]
    assert body["uptime"] > 0


def _files(tmp_path):
    home = Home(str(tmp_path / "home"))
    home.prepare()
    return restart.RestartFiles(home)


def test_restart_requests_are_one_at_a_time_and_a_dead_masters_record_is_ignored(tmp_path):
    files = _files(tmp_path)
    files.reset(100)
    assert files.status(100)["state"] == "idle"
    files.ask(restart.Request(reason="one", requested_at=1.0), 100)
    assert files.status(100)["state"] == "restarting"  # filed, not taken yet
    with pytest.raises(restart.Conflict, match="already requested"):
        files.ask(restart.Request(reason="two", requested_at=2.0), 100)
    # The master takes it: running first, then the request file goes.
    run = restart.Run(
        reason="one",
        source="api",
        graceful=True,
        drain_timeout_ms=5000,
        requested_at=1.0,
        started_at=1.5,
        old_workers=[2**22 + 1],  # no such process: nothing left draining
    )
    files.save(restart.Record(master=100, current=run))
    with pytest.raises(restart.Conflict, match="running"):
        files.ask(restart.Request(reason="two", requested_at=2.0), 100)
    files.withdraw()
    with pytest.raises(restart.Conflict, match="running"):
        files.ask(restart.Request(reason="two", requested_at=2.0), 100)
    assert files.pending() is None  # the refused request left nothing behind
    assert files.status(100)["state"] == "restarting"  # old gone, new not booted
    assert files.status(100)["current"]["reason"] == "one"
    # A record written by another master (it died mid-restart) holds nothing up.
    assert files.status(101)["state"] == "idle"
    files.ask(restart.Request(reason="three", requested_at=3.0), 101)
    run.completed_at = 2.5
    files.save(restart.Record(master=100, last=run, restarts=1))
    files.reset(102)  # a new master: no request, no drain; the account is kept
    status = files.status(102)
    assert status["state"] == "idle" and files.pending() is None
    assert (
        status["lastRestart"]["reason"] == "one" and status["lastRestart"]["durationMs"] == 1500.0
    )


def test_drain_files_and_health_while_draining(tmp_path):
    files = _files(tmp_path)
    assert files.drained_since() is None and files.undrain() is False
    since = files.drain("maintenance")
    assert files.drain("again") == since  # kept
    assert files.drained_since() == since
    health = falcon.testing.TestClient(management()).simulate_get("/api/v1/exec/health")
    assert health.status_code == 200  # no home: never draining
    client = falcon.testing.TestClient(management_app(Home(str(tmp_path / "home"))))
    r = client.simulate_get("/api/v1/exec/health")
    assert r.status_code == 503 and r.json["status"] == "draining" and r.json["drainingSince"]
    assert client.simulate_post("/api/v1/exec/system/undrain").json["wasDraining"] is True
    assert client.simulate_get("/api/v1/exec/health").status_code == 200
    # Without a master to signal (pid 1 is never signalled): 503, nothing filed.
    r = client.simulate_post("/api/v1/exec/system/restart", json={"reason": "x"})
    assert r.status_code == 503 and files.pending() is None
    r = client.simulate_post("/api/v1/exec/system/restart", json={"drainTimeoutMs": -1})
    assert r.status_code == 400 and "drainTimeoutMs" in r.text
