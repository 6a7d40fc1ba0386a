"""The operator's commands against real kits: ``hoodyexec status|reload|restart|
drain|undrain|stop|logs tail``."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
from pathlib import Path

from ..kit import HOODYEXEC, Kit

E = "/api/v1/exec/"
SLOW = "import time\ntime.sleep(1.5)\nreturn {'slept': True}\n"


def cli(kit_or_home: Kit | Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    home = kit_or_home.home if isinstance(kit_or_home, Kit) else kit_or_home
    env = kit_or_home.env if isinstance(kit_or_home, Kit) else None
    return subprocess.run(
        [HOODYEXEC, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def test_status_shapes_and_exit_codes(make_kit, tmp_path):
    empty = cli(tmp_path / "nothing-here", "status")
    assert empty.returncode == 2 and empty.stdout == ""
    assert "no kit is running" in empty.stderr and "Traceback" not in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    kit = make_kit(args=["--token", "s3cret"]).start()  # no token needed locally
    health = kit.wait_healthy()
    r = cli(kit, "status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["state"] == "ok" and st["healthy"] is True
    assert st["master"] == health["master"] and st["control"] == health["control"]
    assert sorted(w["pid"] for w in st["workers"]) == sorted(health["workers"])
    assert all(w["rssMb"] > 1 and w["inflight"] == 0 for w in st["workers"])
    assert st["bind"] == f"127.0.0.1:{kit.port}" and st["version"]
    assert st["restart"]["state"] == "idle" and "schedules" in st
    human = cli(kit, "status")
    assert human.returncode == 0 and "ok" in human.stdout and str(health["master"]) in human.stdout
    # draining: exit 1
    assert cli(kit, "drain", "--timeout", "2s").returncode == 0
    drained = cli(kit, "status", "--json")
    assert drained.returncode == 1 and json.loads(drained.stdout)["state"] == "draining"
    assert cli(kit, "undrain").returncode == 0
    assert cli(kit, "status").returncode == 0
    # a bad flag: argparse's usage error, no traceback
    bad = cli(kit, "restart", "--drain-timeout", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr and "Traceback" not in bad.stderr


def test_reload_replaces_every_worker_while_a_request_completes(kit):
    write(kit, "slow.py", SLOW)
    before = kit.wait_healthy()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow")
        time.sleep(0.3)
        r = cli(kit, "reload")
        assert r.returncode == 0, r.stderr
        assert slow.result(timeout=5).status == 200
    old = " ".join(str(p) for p in sorted(before["workers"]))
    assert f"workers {old} ->" in r.stdout, r.stdout
    after = kit.wait_healthy()
    assert not set(after["workers"]) & set(before["workers"])
    last = kit.get(E + "system/restart-status").json()["lastRestart"]
    assert last["reason"] == "hoodyexec reload" and last["drained"] == 2
    assert f"-> {' '.join(str(p) for p in sorted(after['workers']))}" in r.stdout


def test_restart_with_drain_reports_through_restart_status(kit):
    write(kit, "slow.py", SLOW)
    before = kit.wait_healthy()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow")
        time.sleep(0.3)
        r = cli(kit, "restart", "--drain-timeout", "5s", "--reason", "ops test", "--json")
        assert r.returncode == 0, r.stderr
        assert slow.result(timeout=5).status == 200
    out = json.loads(r.stdout)
    assert out["reason"] == "ops test" and out["drained"] == 2 and out["killed"] == 0
    assert out["drainTimeoutMs"] == 5000
    status = kit.get(E + "system/restart-status").json()
    assert status["lastRestart"]["reason"] == "ops test" and status["state"] == "idle"
    assert not set(kit.wait_healthy()["workers"]) & set(before["workers"])


def test_drain_waits_for_in_flight_work_and_keeps_serving(kit):
    write(kit, "slow.py", SLOW)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow")
        time.sleep(0.3)
        started = time.monotonic()
        r = cli(kit, "drain", "--timeout", "10s", "--json")
        waited = time.monotonic() - started
        assert r.returncode == 0, r.stderr
        assert slow.result(timeout=2).status == 200
    assert json.loads(r.stdout)["idle"] is True and waited >= 0.8
    health = kit.get(E + "health")
    assert health.status == 503 and health.json()["status"] == "draining"
    assert kit.get("/hello").status == 200  # new requests still served
    # a drain that times out says how many remain
    write(kit, "slower.py", SLOW.replace("1.5", "4"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slower = pool.submit(kit.get, "/slower")
        time.sleep(0.3)
        r = cli(kit, "drain", "--timeout", "500ms")
        assert r.returncode == 1 and "1 request(s) still in flight" in r.stdout, r.stdout
        assert slower.result(timeout=10).status == 200
    assert cli(kit, "undrain").returncode == 0
    assert kit.get(E + "health").status == 200


def test_stop_completes_the_in_flight_request_and_exits(kit):
    write(kit, "slow.py", SLOW)
    master = kit.wait_healthy()["master"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(kit.get, "/slow")
        time.sleep(0.3)
        r = cli(kit, "stop", "--drain-timeout", "10s")
        assert r.returncode == 0, r.stderr
        assert slow.result(timeout=2).status == 200
    assert f"stopped (master {master})" in r.stdout
    assert kit.wait(5) == 0
    again = cli(kit, "status")
    assert again.returncode == 2 and "no kit is running" in again.stderr


def test_logs_tail_follows_a_script_and_one_execution(kit):
    write(kit, "talk.py", "print('said', req.query.get('n'))\nreturn 1\n")
    first = kit.get("/talk?n=1")
    kit.get("/talk?n=2")
    eid = first.headers["x-execution-id"]
    r = cli(kit, "logs", "tail", "talk.py", "--no-follow")
    assert r.returncode == 0, r.stderr
    assert "said 1" in r.stdout and "said 2" in r.stdout
    only = cli(kit, "logs", "tail", "talk.py", "--no-follow", "--execution-id", eid)
    assert "said 1" in only.stdout and "said 2" not in only.stdout
    with subprocess.Popen(
        [HOODYEXEC, "logs", "tail", "talk.py", "--home", str(kit.home), "--lines", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=kit.env,
    ) as follow:
        try:
            time.sleep(0.5)
            kit.get("/talk?n=live")
            assert follow.stdout is not None
            line = follow.stdout.readline()
            assert "said live" in line, line
        finally:
            follow.terminate()
    missing = cli(kit, "logs", "tail", "nope.py", "--no-follow")
    assert missing.returncode == 1 and "404" in missing.stderr
    kitlog = cli(kit, "logs", "tail", "--no-follow", "--lines", "200")
    assert kitlog.returncode == 0 and "control worker" in kitlog.stdout


def test_reload_whose_new_workers_cannot_boot_exits_1_and_the_old_ones_serve(kit):
    before = kit.wait_healthy()
    db = kit.home / "hoodyexec.db"
    db.rename(kit.home / "held.db")
    db.mkdir()  # new workers cannot open the state database
    try:
        r = cli(kit, "reload")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "failed to boot" in r.stderr and "Traceback" not in r.stderr
        assert "keep serving" in r.stdout
        assert sorted(kit.wait_healthy()["workers"]) == sorted(before["workers"])
        assert kit.get("/hello").status == 200
    finally:
        db.rmdir()
        (kit.home / "held.db").rename(db)
