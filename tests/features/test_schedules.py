"""The scheduler with an injected clock (no waiting for real minutes), its claim
table and history; the endpoints in-process. Real-time tests against a live
kit are in ``test_schedules_live.py``."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import subprocess
import sys

import pytest

from hoodyexec.features.schedules import registry
from hoodyexec.features.schedules.ledger import Claims, History
from hoodyexec.features.schedules.service import Scheduler, next_tick, prev_tick
from hoodyexec.home import Home
from hoodyexec.ipc.protocol import Invoke, InvokeResult

E = "/api/v1/exec/schedules/"


def aio(fn):
    """Run an async test on a fresh event loop (no plugin needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()  # on a minute boundary


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Runs:
    """A fake request worker: records calls, answers 200 JSON (or as told)."""

    def __init__(self, status: int = 200, timed_out: bool = False, hold: float = 0.0) -> None:
        self.calls: list[Invoke] = []
        self.status = status
        self.timed_out = timed_out
        self.hold = hold

    async def __call__(self, call: Invoke) -> InvokeResult:
        self.calls.append(call)
        if self.hold:
            await asyncio.sleep(self.hold)
        body = b'{"ok": true}' if self.status < 400 else b'{"error": "boom"}'
        return InvokeResult(
            status=self.status,
            headers=[("content-type", "application/json")],
            body=body,
            timed_out=self.timed_out,
            execution_id="abc0000001",
        )


@pytest.fixture
def home(tmp_path) -> Home:
    h = Home(str(tmp_path / "home"))
    h.prepare()
    return h


def write(home: Home, rel: str, text: str, instance: str = "default/1") -> str:
    path = os.path.join(home.scripts, instance, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def make(home: Home, clock: Clock, runs: Runs, **kw) -> Scheduler:
    return Scheduler(
        home.scripts,
        Claims(home.db),
        History(os.path.join(home.logs, "schedules")),
        runs,
        kit_started=kw.pop("kit_started", T0 - 3600),
        clock=clock,
        **kw,
    )


def history(home: Home) -> list[dict]:
    return History(os.path.join(home.logs, "schedules")).read(limit=1000)


def test_cron_times_are_utc_minutes():
    assert next_tick("*/5 * * * *", T0) == T0 + 300
    assert next_tick("*/5 * * * *", T0 + 1) == T0 + 300
    assert prev_tick("*/5 * * * *", T0) == T0  # at or before
    assert prev_tick("*/5 * * * *", T0 + 299) == T0
    assert next_tick("0 12 * * *", T0) == T0 + 86400


def test_registry_reads_schedules_from_disk(home):
    write(home, "a.py", "# @schedule */5 * * * *\nreturn 1\n")
    write(home, "b.py", "# @schedule * * * * *\n# @enabled false\nreturn 1\n")
    write(home, "c.py", "# @schedule 99 * * * *\nreturn 1\n")  # invalid: never registered
    write(home, "users/[id].py", "# @schedule * * * * *\nreturn 1\n")
    write(home, "d.py", "return 1\n")
    write(home, "x.py", "# @schedule 0 * * * *\n# @schedule-overlap allow\nreturn 1\n", "team/7")
    found = registry.scan(home.scripts)
    assert set(found) == {
        "default/1/a.py",
        "default/1/b.py",
        "default/1/users/[id].py",
        "team/7/x.py",
    }
    assert found["default/1/a.py"].fires and found["default/1/a.py"].route == "/a"
    assert not found["default/1/b.py"].fires
    assert "parameters" in found["default/1/users/[id].py"].error
    assert found["team/7/x.py"].overlap == "allow"


@aio
async def test_a_due_tick_fires_once_as_a_schedule_run(home):
    write(home, "tick.py", "# @schedule * * * * *\n# @timeout 5000\nreturn 1\n")
    clock, runs = Clock(T0 + 10), Runs()
    s = make(home, clock, runs)
    s.rescan()
    assert s.due(clock.now) == []
    clock.now = T0 + 60
    ((slot, tick),) = s.due(clock.now)
    assert tick == T0 + 60 and slot.next_due == T0 + 120
    assert s.due(clock.now) == []  # the timer moved on
    outcome = await s.fire(slot, tick)
    assert outcome["status"] == "ok" and outcome["result"] == {"ok": True}
    (call,) = runs.calls
    assert (call.subdomain, call.exec_id, call.path, call.trigger) == (
        "default",
        "1",
        "/tick",
        "schedule",
    )
    assert await s.fire(slot, tick) is None  # claimed already: never twice
    assert len(runs.calls) == 1
    (entry,) = history(home)
    assert entry["status"] == "ok" and entry["trigger"] == "schedule"
    assert entry["executionId"] == "abc0000001" and entry["tick"].startswith("2026-03-01T12:01:00")


@aio
async def test_a_loop_held_past_several_ticks_fires_the_latest_once(home):
    write(home, "tick.py", "# @schedule * * * * *\nreturn 1\n")
    clock = Clock(T0 + 10)
    s = make(home, clock, Runs())
    s.rescan()
    clock.now = T0 + 60 * 5 + 30
    ((_, tick),) = s.due(clock.now)
    assert tick == T0 + 300


@aio
async def test_two_schedulers_on_one_database_fire_a_tick_once(home):
    write(home, "tick.py", "# @schedule * * * * *\nreturn 1\n")
    clock = Clock(T0 + 10)
    a, b = make(home, clock, Runs()), make(home, clock, Runs())
    a.rescan()
    b.rescan()
    clock.now = T0 + 60
    (sa, ta), (sb, tb) = a.due(clock.now)[0], b.due(clock.now)[0]
    results = await asyncio.gather(a.fire(sa, ta), b.fire(sb, tb))
    assert sorted(r is None for r in results) == [False, True]
    assert len(a.run_script.calls) + len(b.run_script.calls) == 1


@aio
async def test_a_replacement_fires_the_tick_missed_while_it_was_down_once(home):
    write(home, "tick.py", "# @schedule */5 * * * *\nreturn 1\n")
    clock = Clock(T0 + 10)
    first = make(home, clock, Runs(), kit_started=T0)
    first.rescan()  # registered at T0+10
    clock.now = T0 + 300 + 20  # the first scheduler died before T0+300
    runs = Runs()
    second = make(home, clock, runs, kit_started=T0)
    second.rescan()
    ((slot, tick),) = second.missed(clock.now)
    assert tick == T0 + 300
    await second.fire(slot, tick)
    third = make(home, clock, Runs(), kit_started=T0)  # and another restart
    third.rescan()
    assert third.missed(clock.now) == []
    assert len(runs.calls) == 1


@aio
async def test_ticks_missed_while_the_whole_kit_was_down_wait_for_catch_up(home):
    write(home, "tick.py", "# @schedule */5 * * * *\nreturn 1\n")
    clock = Clock(T0 + 10)
    make(home, clock, Runs()).rescan()  # registered, then the kit stops
    clock.now = T0 + 3600 + 20  # the kit starts again an hour later
    quiet = make(home, clock, Runs(), kit_started=clock.now - 1)
    quiet.rescan()
    assert quiet.missed(clock.now) == []  # not replayed by default
    eager = make(home, clock, Runs(), kit_started=clock.now - 1, catch_up=True)
    eager.rescan()
    ((_, tick),) = eager.missed(clock.now)
    assert tick == T0 + 3600  # only the last one


@aio
async def test_a_new_or_changed_schedule_does_not_fire_past_ticks(home):
    path = write(home, "tick.py", "# @schedule */5 * * * *\nreturn 1\n")
    clock = Clock(T0 + 10)
    s = make(home, clock, Runs(), kit_started=T0 - 3600)
    s.rescan()
    assert s.missed(clock.now) == []
    clock.now = T0 + 600 + 5
    with open(path, "w") as fh:
        fh.write("# @schedule */10 * * * *\nreturn 1\n")
    s.rescan()
    assert s.missed(clock.now) == []  # re-registered now


@aio
async def test_overlap_skips_by_default_and_runs_when_allowed(home):
    write(home, "slow.py", "# @schedule * * * * *\nreturn 1\n")
    write(home, "many.py", "# @schedule * * * * *\n# @schedule-overlap allow\nreturn 1\n")
    clock, runs = Clock(T0 + 10), Runs(hold=0.3)
    s = make(home, clock, runs)
    s.rescan()
    clock.now = T0 + 60
    due = dict((slot.entry.rel, (slot, tick)) for slot, tick in s.due(clock.now))
    first = [asyncio.ensure_future(s.fire(*due[name])) for name in ("slow.py", "many.py")]
    await asyncio.sleep(0.05)
    clock.now = T0 + 120
    due2 = dict((slot.entry.rel, (slot, tick)) for slot, tick in s.due(clock.now))
    assert await s.fire(*due2["slow.py"]) is None
    second = await s.fire(*due2["many.py"])
    await asyncio.gather(*first)
    assert second["status"] == "ok"
    statuses = {(e["scriptRel"], e["tick"][11:16], e["status"]) for e in history(home)}
    assert ("slow.py", "12:02", "skipped") in statuses
    assert ("many.py", "12:02", "ok") in statuses
    assert ("slow.py", "12:01", "ok") in statuses


@aio
async def test_run_outcomes_map_to_statuses(home):
    write(home, "t.py", "# @schedule * * * * *\nreturn 1\n")
    for runs, status in (
        (Runs(status=500), "error"),
        (Runs(timed_out=True, status=504), "timeout"),
    ):
        s = make(home, Clock(T0 + 10), runs)
        s.rescan()
        slot = s.slots["default/1/t.py"]
        tick = int(T0) + 60 * (10 if status == "error" else 11)
        outcome = await s.fire(slot, tick)
        assert outcome["status"] == status, outcome
    assert history(home)[1]["error"] == "boom"

    async def no_worker(call):
        raise RuntimeError("no request worker is linked to run this")

    s = make(home, Clock(T0 + 10), no_worker)
    s.rescan()
    outcome = await s.fire(s.slots["default/1/t.py"], int(T0) + 60 * 12)
    assert outcome["status"] == "error" and "no request worker" in outcome["error"]


def test_claims_of_a_dead_owner_become_lost(home):
    claims = Claims(home.db)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    assert claims.claim("default/1/t.py", int(T0), "r1")
    with claims._db() as db:
        db.execute("UPDATE schedule_fires SET owner = ?", (pid,))
    (lost,) = claims.orphans()
    assert lost.script == "default/1/t.py" and lost.tick == int(T0)
    assert claims.last()["default/1/t.py"].status == "lost"
    assert claims.orphans() == []
    assert not claims.claim("default/1/t.py", int(T0), "r2")  # lost is not fired again


@aio
async def test_start_reports_lost_runs_in_history(home):
    write(home, "t.py", "# @schedule * * * * *\nreturn 1\n")
    claims = Claims(home.db)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    claims.claim("default/1/t.py", int(T0), "r1")
    with claims._db() as db:
        db.execute("UPDATE schedule_fires SET owner = ?", (int(dead.stdout),))
    s = make(home, Clock(T0 + 30), Runs(), kit_started=T0 + 20)
    await s.start()
    await s.stop()
    (entry,) = history(home)
    assert entry["status"] == "lost" and entry["runId"] == "r1"


def test_history_rotates_by_size_and_reads_newest_first(tmp_path):
    h = History(str(tmp_path / "schedules"), max_bytes=400, backups=2)
    for n in range(30):
        h.append({"time": T0 + n, "script": f"default/1/{'a' if n % 2 else 'b'}.py", "n": n})
    names = sorted(os.listdir(tmp_path / "schedules"))
    assert names == ["fires.log", "fires.log.1", "fires.log.2"]
    assert sum(os.path.getsize(tmp_path / "schedules" / n) for n in names) < 3 * 400
    newest = h.read(limit=3, rotated=True)
    assert [e["n"] for e in newest] == [29, 28, 27]
    live_only = h.read(limit=1000)
    everything = h.read(limit=1000, rotated=True)
    assert len(everything) > len(live_only)
    assert [e["n"] for e in h.read(script="default/1/a.py", limit=2, rotated=True)] == [29, 27]
    assert all(e["time"] >= T0 + 25 for e in h.read(since=T0 + 25, limit=1000, rotated=True))
    with open(h.path, "ab") as fh:
        fh.write(b'{"torn')  # a crash mid-line
    assert h.read(limit=1)[0]["n"] == 29


# -- the endpoints, in-process ----------------------------------------------------------


@pytest.fixture
def sched_api(api):
    write(
        api.home,
        "tick.py",
        "# @schedule */5 * * * *\n# @description beat\nreturn {'ok': True, 'trigger': metadata.trigger}\n",
    )
    write(api.home, "locked.py", "# @schedule * * * * *\n# @token s3cret\nreturn {'ok': True}\n")
    api.simulate_post(E + "reload", json={})
    return api


def test_list_shows_registered_schedules(sched_api):
    body = sched_api.simulate_get(E + "list").json
    by = {s["scriptRel"]: s for s in body["schedules"]}
    tick = by["tick.py"]
    assert tick["expression"] == "*/5 * * * *" and tick["enabled"] is True
    assert tick["scriptPath"] == os.path.join(sched_api.home.scripts, "default/1/tick.py")
    assert tick["nextRun"].endswith("Z") and tick["registeredAt"]
    assert tick["lastRun"] is None and tick["lastStatus"] is None


def test_reload_dry_run_reports_and_changes_nothing(sched_api):
    os.remove(os.path.join(sched_api.home.scripts, "default/1/tick.py"))
    write(sched_api.home, "new.py", "# @schedule 0 * * * *\nreturn 1\n")
    r = sched_api.simulate_post(E + "reload", json={"dry_run": True})
    assert r.json["added"] == ["default/1/new.py"] and r.json["removed"] == ["default/1/tick.py"]
    assert r.json["kept"] == ["default/1/locked.py"]
    listed = {s["scriptRel"] for s in sched_api.simulate_get(E + "list").json["schedules"]}
    assert "tick.py" in listed and "new.py" not in listed
    r = sched_api.simulate_post(E + "reload", json={})
    assert r.json["added"] == ["default/1/new.py"]
    listed = {s["scriptRel"] for s in sched_api.simulate_get(E + "list").json["schedules"]}
    assert listed == {"locked.py", "new.py"}


def test_removing_the_schedule_line_and_reloading_leaves_nothing_stale(sched_api):
    write(sched_api.home, "tick.py", "return 1\n")
    sched_api.simulate_post(E + "reload", json={})
    listed = {s["scriptRel"] for s in sched_api.simulate_get(E + "list").json["schedules"]}
    assert listed == {"locked.py"}


def test_writes_through_the_api_register_at_once(sched_api):
    r = sched_api.simulate_post(
        "/api/v1/exec/scripts/write",
        json={"path": "viaapi.py", "content": "# @schedule 30 2 * * *\nreturn 1\n"},
    )
    assert r.status_code == 201
    listed = {s["scriptRel"] for s in sched_api.simulate_get(E + "list").json["schedules"]}
    assert "viaapi.py" in listed
    sched_api.simulate_delete(
        "/api/v1/exec/scripts/delete", params={"path": "viaapi.py", "confirm": "true"}
    )
    listed = {s["scriptRel"] for s in sched_api.simulate_get(E + "list").json["schedules"]}
    assert "viaapi.py" not in listed


@pytest.mark.parametrize("how", ["tick.py", "default/1/tick.py", "absolute"])
def test_trigger_runs_now_by_any_spelling_of_the_path(sched_api, how):
    path = os.path.join(sched_api.home.scripts, "default/1/tick.py") if how == "absolute" else how
    r = sched_api.simulate_post(E + "trigger", json={"scriptPath": path})
    assert r.status_code == 200, r.text
    body = r.json
    assert body["triggered"] is True and body["status"] == "ok"
    assert body["result"] == {"ok": True, "trigger": "manual"}
    assert body["runId"] and body["executionId"] and body["durationMs"] >= 0
    (entry,) = sched_api.simulate_get(E + "history").json["entries"]
    assert entry["runId"] == body["runId"] and entry["trigger"] == "manual"


def test_trigger_refuses_token_scripts_unless_forced(sched_api):
    r = sched_api.simulate_post(E + "trigger", json={"scriptPath": "locked.py"})
    assert r.status_code == 403 and "@token" in r.json["error"]
    assert "s3cret" not in r.text
    r = sched_api.simulate_post(E + "trigger", json={"scriptPath": "locked.py", "force": True})
    assert r.status_code == 200 and r.json["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "status"),
    [("nosuch.py", 404), ("../../etc/passwd", 403), ("/etc/passwd", 403), ("hello.py", 404)],
)
def test_trigger_refuses_what_is_not_a_scheduled_script(sched_api, path, status):
    r = sched_api.simulate_post(E + "trigger", json={"scriptPath": path})
    assert r.status_code == status, r.text
    assert sched_api.simulate_post(E + "trigger", json={}).status_code == 400


def test_history_filters(sched_api):
    for path in ("tick.py", "tick.py", "locked.py"):
        sched_api.simulate_post(E + "trigger", json={"scriptPath": path, "force": True})
    body = sched_api.simulate_get(E + "history", params={"scriptPath": "tick.py"}).json
    assert body["count"] == 2 and {e["scriptRel"] for e in body["entries"]} == {"tick.py"}
    assert sched_api.simulate_get(E + "history", params={"limit": "1"}).json["count"] == 1
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert sched_api.simulate_get(E + "history", params={"since": future}).json["count"] == 0
    past = "2020-01-01T00:00:00Z"
    assert sched_api.simulate_get(E + "history", params={"since": past}).json["count"] == 3
    for bad in ({"since": "yesterday"}, {"limit": "0"}, {"limit": "1001"}):
        assert sched_api.simulate_get(E + "history", params=bad).status_code == 400
    line = open(os.path.join(sched_api.home.logs, "schedules", "fires.log")).readline()
    assert json.loads(line)["trigger"] == "manual"
