"""Schedules against live kits over real HTTP, in real time (marked slow)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

from ..kit import Kit

pytestmark = pytest.mark.slow

E = "/api/v1/exec/"
TICK = (
    "# @schedule * * * * *\n"
    "# @description every minute\n"
    "n = shared.incr('fires')\n"
    "print('[tick] fired', metadata.trigger, n)\n"
    "return {'ok': True, 'trigger': metadata.trigger, 'n': n}\n"
)


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def fires(kit: Kit) -> list[dict]:
    path = kit.home / "logs" / "schedules" / "fires.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def claims(kit: Kit) -> list[tuple]:
    with sqlite3.connect(kit.home / "hoodyexec.db") as db:
        return db.execute(
            "SELECT script, tick, status FROM schedule_fires ORDER BY tick"
        ).fetchall()


def test_list_trigger_history_over_http_with_the_scripts_log(kit):
    write(kit, "tick.py", TICK)
    write(kit, "locked.py", "# @schedule 0 0 * * *\n# @token env:SOME_TOKEN\nreturn 1\n")
    body = kit.get(E + "schedules/list").json()
    by = {s["scriptRel"]: s for s in body["schedules"]}
    assert set(by) >= {"tick.py", "locked.py"}
    assert by["tick.py"]["expression"] == "* * * * *"
    assert by["tick.py"]["scriptPath"] == str(kit.home / "scripts/default/1/tick.py")
    r = kit.request("POST", E + "schedules/trigger", {"scriptPath": "tick.py"})
    assert r.status == 200, r.body
    out = r.json()
    assert out["triggered"] and out["status"] == "ok" and out["result"]["trigger"] == "manual"
    log = (kit.home / "logs/default/1/tick.log").read_text()
    assert "[tick] fired manual" in log and out["executionId"] in log
    assert kit.request("POST", E + "schedules/trigger", {"scriptPath": "locked.py"}).status == 403
    forced = kit.request(
        "POST", E + "schedules/trigger", {"scriptPath": "locked.py", "force": True}
    )
    assert forced.status == 200 and forced.json()["status"] == "ok"
    entries = kit.get(E + "schedules/history?scriptPath=default/1/tick.py").json()["entries"]
    assert [e["runId"] for e in entries] == [out["runId"]]
    r = kit.request("POST", E + "schedules/reload", {"dry_run": True})
    assert "default/1/tick.py" in r.json()["kept"] and r.json()["dryRun"] is True
    # An edit on disk (not through the API) is seen by the watcher.
    (kit.home / "scripts/default/1/tick.py").write_text("return 1\n")
    deadline = time.monotonic() + 5
    while "tick.py" in {s["scriptRel"] for s in kit.get(E + "schedules/list").json()["schedules"]}:
        assert time.monotonic() < deadline, "the removed schedule is still listed"
        time.sleep(0.1)


def _next_boundary(lead: float) -> float:
    """The next minute boundary at least ``lead`` seconds away."""
    now = time.time()
    boundary = (int(now) // 60 + 1) * 60
    return boundary if boundary - now >= lead else boundary + 60


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


def test_exactly_one_fire_across_a_reload_and_a_killed_control_worker(make_kit):
    """Three kits, one minute boundary: one left alone, one reloaded (SIGHUP to
    the master 2 s before the boundary), one whose control worker is SIGKILLed
    half a second before it. Each fires the tick exactly once."""
    plain, reloaded, killed = (make_kit().start() for _ in range(3))
    # The script must exist before the boundary and not before any earlier
    # one: when the next boundary is near, let it pass first, then write.
    boundary = _next_boundary(lead=0)
    if boundary - time.time() < 10:
        _sleep_until(boundary + 0.5)
        boundary += 60
    for kit in (plain, reloaded, killed):
        write(kit, "tick.py", TICK)
    assert boundary - time.time() >= 6, "the writes took the lead time"
    _sleep_until(boundary - 2)
    reloaded.signal(signal.SIGHUP)
    _sleep_until(boundary - 0.5)
    os.kill(killed.health()["control"], signal.SIGKILL)
    _sleep_until(boundary + 8)
    for name, kit in (("plain", plain), ("reloaded", reloaded), ("killed", killed)):
        mine = [f for f in fires(kit) if f["trigger"] == "schedule"]
        ticks = [f["tick"] for f in mine]
        assert len(mine) == 1, (name, mine, kit.log()[-2000:])
        assert ticks[0].startswith(time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(boundary)))
        assert mine[0]["status"] == "ok", (name, mine)
        assert [c[1] for c in claims(kit)] == [boundary], (name, claims(kit))
        log = (kit.home / "logs/default/1/tick.log").read_text()
        assert log.count("[tick] fired schedule") == 1, (name, log)
        assert mine[0]["executionId"] in log
        state = kit.request("POST", E + "shared-state/get", {"hostname": "localhost"}).json()
        assert state["value"]["fires"] == 1, (name, state)
        listed = {s["scriptRel"]: s for s in kit.get(E + "schedules/list").json()["schedules"]}
        assert listed["tick.py"]["lastStatus"] == "ok"
