"""cache/clear, system/restart, restart-status and drain against live kits."""

from __future__ import annotations

import concurrent.futures
import time

from ..kit import Kit

E = "/api/v1/exec/"
# Module state: a global counter per worker process, and the worker's pid.
COUNTER = (
    "import os\n"
    "hits = 0\n"
    "def GET():\n"
    "    global hits\n"
    "    hits += 1\n"
    "    return {'pid': os.getpid(), 'hits': hits}\n"
)
SLOW = "import time\ntime.sleep(1.5)\nreturn {'slept': True}\n"


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def hits_per_worker(kit: Kit, workers: int = 2, tries: int = 200) -> dict[int, list[int]]:
    """Call /counter on new connections until every worker answered at least twice."""
    seen: dict[int, list[int]] = {}
    for _ in range(tries):
        out = kit.get("/counter").json()
        seen.setdefault(out["pid"], []).append(out["hits"])
        if len(seen) >= workers and all(len(v) >= 2 for v in seen.values()):
            break
    assert len(seen) == workers, seen
    return seen


def status(kit: Kit) -> dict:
    r = kit.get(E + "system/restart-status")
    assert r.status == 200, r.body
    return r.json()


def wait_for(predicate, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_cache_clear_resets_module_state_in_every_worker(kit):
    write(kit, "counter.py", COUNTER)
    before = hits_per_worker(kit)
    assert all(v == list(range(1, len(v) + 1)) for v in before.values()), before
    r = kit.request("POST", E + "cache/clear", {"hostname": "localhost"})
    assert r.status == 200, r.body
    out = r.json()
    assert out["success"] and out["instance"] == "default/1" and out["clearedVm"] is True
    assert sorted(w["pid"] for w in out["workers"]) == sorted(before)
    assert all(w["instances"] == 1 and w["scripts"] >= 1 for w in out["workers"]), out
    after = hits_per_worker(kit)
    assert set(after) == set(before)  # same processes: no restart
    assert all(v[0] == 1 for v in after.values()), after  # module globals started fresh
    # Another instance's hostname leaves this one alone.
    other = kit.request("POST", E + "cache/clear", {"hostname": "exec-9.example.com"}).json()
    assert other["instance"] == "default/9", other
    assert all(w["scripts"] == 0 for w in other["workers"]), other
    again = hits_per_worker(kit)
    assert all(v[0] > 1 for v in again.values()), again


def test_cache_clear_state_and_all_and_the_deprecated_script_path(kit):
    r = kit.request(
        "POST", E + "shared-state/set", {"hostname": "localhost", "path": "k", "value": 7}
    )
    assert r.status == 200, r.body
    kept = kit.request("POST", E + "cache/clear", {"clearAll": True}).json()
    assert kept["instance"] == "*" and kept["clearedState"] is False
    assert (
        kit.request("POST", E + "shared-state/get", {"hostname": "localhost", "path": "k"}).json()[
            "value"
        ]
        == 7
    )
    cleared = kit.request("POST", E + "cache/clear", {"clearState": True}).json()
    assert cleared["clearedState"] is True and cleared["stateDocuments"] == 1, cleared
    assert (
        kit.request("POST", E + "shared-state/get", {"hostname": "localhost", "path": "k"}).json()[
            "value"
        ]
        is None
    )
    r = kit.request("POST", E + "cache/clear", {"scriptPath": "hello.py"})
    assert r.status == 400 and "hostname or clearAll" in r.json()["error"]
    r = kit.request("POST", E + "cache/clear", {"clearVm": "yes"})
    assert r.status == 400 and "clearVm" in r.body.decode()
    nothing = kit.request("POST", E + "cache/clear", {"clearVm": False}).json()
    assert nothing["workers"] == [] and nothing["clearedVm"] is False


def test_restart_drains_an_in_flight_request_and_reports_it(kit):
    write(kit, "slow.py", SLOW)
    before = kit.wait_healthy()
    assert status(kit)["state"] == "idle"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow")
        time.sleep(0.3)  # in flight
        r = kit.request(
            "POST", E + "system/restart", {"reason": "deploy 42", "drainTimeoutMs": 5000}
        )
        assert r.status == 202, r.body
        accepted = r.json()
        assert accepted["reason"] == "deploy 42" and accepted["graceful"] is True
        # A second restart while this one runs is refused.
        again = kit.request("POST", E + "system/restart", {"reason": "twice"})
        assert again.status == 409 and "restart" in again.json()["error"], again.body
        assert status(kit)["state"] in ("restarting", "draining")
        answer = slow.result(timeout=10)
    assert answer.status == 200 and answer.json() == {"slept": True}
    done = wait_for(
        lambda: (s := status(kit))["state"] == "idle" and s["lastRestart"] and s,
        what="restart-status idle",
    )
    last = done["lastRestart"]
    assert last["reason"] == "deploy 42" and last["source"] == "api"
    assert last["drained"] == 2 and last["killed"] == 0, last
    assert sorted(last["oldWorkers"]) == sorted(before["workers"])
    assert not set(last["newWorkers"]) & set(before["workers"])
    assert last["durationMs"] > 0 and last["completedAt"] >= last["requestedAt"]
    after = kit.wait_healthy()
    assert not set(after["workers"]) & set(before["workers"])
    assert after["control"] != before["control"]  # the control worker is replaced too
    assert kit.get("/slow").status == 200


def test_a_forced_restart_kills_in_flight_work(kit):
    write(kit, "slow.py", SLOW.replace("1.5", "20"))
    before = kit.wait_healthy()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow", timeout=30)
        time.sleep(0.3)
        r = kit.request("POST", E + "system/restart", {"graceful": False, "reason": "now"})
        assert r.status == 202 and r.json()["effectiveDrainTimeoutMs"] == 0, r.body
        started = time.monotonic()
        try:
            cut = slow.result(timeout=15).status
        except OSError:  # the connection died with its worker
            cut = 0
    assert cut != 200 and time.monotonic() - started < 10
    last = wait_for(lambda: (s := status(kit))["state"] == "idle" and s["lastRestart"], what="idle")
    assert last["reason"] == "now" and last["graceful"] is False
    assert last["killed"] >= 1 and last["drained"] + last["killed"] == 2, last
    after = kit.wait_healthy()
    assert not set(after["workers"]) & set(before["workers"])


def test_a_sighup_is_recorded_as_a_restart(kit):
    import signal

    before = kit.wait_healthy()
    kit.signal(signal.SIGHUP)
    last = wait_for(lambda: (s := status(kit))["state"] == "idle" and s["lastRestart"], what="idle")
    assert last["reason"] == "SIGHUP" and last["source"] == "signal"
    assert sorted(last["oldWorkers"]) == sorted(before["workers"])


def test_drain_takes_the_node_out_of_rotation_and_undrain_puts_it_back(kit):
    write(kit, "slow.py", SLOW)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow")
        time.sleep(0.3)
        r = kit.request("POST", E + "system/drain", {"wait": True, "timeoutMs": 10000})
        assert r.status == 200, r.body
        drained = r.json()
        # It answered once nothing was in flight: the slow request had finished.
        assert drained["draining"] is True and drained["idle"] is True, drained
        assert drained["waitedMs"] >= 500, drained
        assert slow.result(timeout=2).status == 200
    health = kit.get(E + "health")
    assert health.status == 503 and health.json()["status"] == "draining"
    assert kit.get("/hello").status == 200  # still served
    assert status(kit)["draining"] is True
    r = kit.request("POST", E + "system/undrain")
    assert r.status == 200 and r.json()["wasDraining"] is True
    assert kit.get(E + "health").status == 200


def test_new_workers_that_fail_to_boot_leave_the_old_ones_serving(kit):
    before = kit.wait_healthy()
    db = kit.home / "hoodyexec.db"
    db.rename(kit.home / "held.db")
    db.mkdir()  # a new worker cannot open its state database: it fails to boot
    try:
        r = kit.request("POST", E + "system/restart", {"reason": "bad deploy"})
        assert r.status == 202, r.body
        last = wait_for(
            lambda: (s := status(kit))["state"] == "idle" and s["lastRestart"], what="idle"
        )
        assert last["reason"] == "bad deploy" and last["ok"] is False, last
        assert "failed to boot" in last["failed"] or "before it booted" in last["failed"]
        assert last["drained"] == 0 and last["killed"] == 0
        now = kit.wait_healthy()
        assert sorted(now["workers"]) == sorted(before["workers"])  # the old ones serve
        assert now["control"] == before["control"]
        assert kit.get("/hello").status == 200
        assert kit.proc.poll() is None
    finally:
        db.rmdir()
        (kit.home / "held.db").rename(db)
    r = kit.request("POST", E + "system/restart", {"reason": "fixed"})
    assert r.status == 202, r.body
    last = wait_for(
        lambda: (
            (s := status(kit))["lastRestart"]["reason"] == "fixed"
            and s["state"] == "idle"
            and s["lastRestart"]
        ),
        what="the second restart",
    )
    assert last["ok"] is True and last["drained"] == 2
    assert not set(kit.wait_healthy()["workers"]) & set(before["workers"])
