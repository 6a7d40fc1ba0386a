"""The real kit in a subprocess: health, supervision, signals and faults."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import psutil
import pytest

from .kit import HOODYEXEC, Kit, raw_request_start, read_http_response

pytestmark = pytest.mark.slow


def test_health_shape_and_boot_under_two_seconds(make_kit):
    kit = make_kit(workers=2)
    t0 = time.monotonic()
    kit.start(wait=False)
    health = kit.wait_healthy(timeout=10)
    boot = time.monotonic() - t0
    assert boot < 2.0, f"boot to healthy took {boot:.2f}s"

    assert health["status"] == "ok"
    assert isinstance(health["version"], str) and health["version"]
    assert isinstance(health["uptime"], (int, float)) and health["uptime"] >= 0
    assert health["master"] == kit.pid
    master = psutil.Process(kit.pid)
    children = {c.pid for c in master.children()}
    assert len(health["workers"]) == 2
    assert set(health["workers"]) <= children
    assert health["control"] in children
    assert health["control"] not in health["workers"]
    # live pids, and the control worker is a process of its own
    for pid in [*health["workers"], health["control"]]:
        assert psutil.pid_exists(pid)


def test_home_layout_permissions_and_reuse(make_kit):
    kit = make_kit().start()
    home = kit.home
    for sub in ["", "scripts", "logs", "run", "run/metrics", "scripts/default/1"]:
        mode = stat.S_IMODE(os.stat(home / sub).st_mode)
        assert mode == 0o700, (sub, oct(mode))
    for f in ["hoodyexec.db", "run/control.sock"]:
        assert stat.S_IMODE(os.stat(home / f).st_mode) & 0o077 == 0, f
    assert int((home / "run/hoodyexec.pid").read_text()) == kit.pid
    hello = home / "scripts/default/1/hello.py"
    assert hello.exists() and "return" in hello.read_text()

    # A second start reuses the home and never re-seeds over the user's changes.
    kit.stop()
    hello.write_text("return 'mine'\n")
    (home / "scripts/default/1/echo.py").unlink()
    kit2 = Kit(home, workers=1).start()
    try:
        assert hello.read_text() == "return 'mine'\n"
        assert not (home / "scripts/default/1/echo.py").exists()
    finally:
        kit2.stop()


def test_sigkill_request_worker_is_replaced_others_keep_serving(kit):
    before = kit.wait_healthy()
    victim = before["workers"][0]
    os.kill(victim, signal.SIGKILL)
    # the other worker keeps answering while the master replaces the dead one
    for _ in range(20):
        assert kit.get("/api/v1/exec/health").status == 200
    after = kit.wait_healthy(predicate=lambda h: victim not in h["workers"])
    assert len(after["workers"]) == 2
    assert after["control"] == before["control"]
    assert kit.proc.poll() is None


def test_sigkill_control_worker_is_replaced_within_two_seconds(kit):
    before = kit.wait_healthy()
    old = before["control"]
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    # script routes never wait on the control worker
    r = kit.get("/no-such-script", timeout=1)
    assert r.status == 404 and time.monotonic() - t0 < 0.5
    after = kit.wait_healthy(timeout=5, predicate=lambda h: h["control"] != old)
    took = time.monotonic() - t0
    assert took < 2.0, f"management API back after {took:.2f}s"
    assert psutil.Process(after["control"]).ppid() == kit.pid
    # the master reaped the dead control worker by pid: no zombie left behind
    deadline = time.monotonic() + 2
    while psutil.pid_exists(old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(old)


def test_sighup_reloads_gracefully(kit):
    before = kit.wait_healthy()
    body = b'{"in": "flight"}'
    s = raw_request_start(kit.port, "/api/v1/exec/health", len(body))
    s.sendall(body[:5])
    time.sleep(0.3)
    kit.signal(signal.SIGHUP)
    time.sleep(0.5)
    s.sendall(body[5:])
    status, resp = read_http_response(s)
    # the in-flight request finished on its old worker (POST on health → 405 JSON)
    assert status == 405, (status, resp)
    assert b'"error"' in resp
    after = kit.wait_healthy(
        timeout=10,
        predicate=lambda h: (
            not set(h["workers"]) & set(before["workers"]) and h["control"] != before["control"]
        ),
    )
    assert after["master"] == before["master"]
    assert kit.proc.poll() is None


def test_sigterm_drains_in_flight_then_exits_zero(kit):
    health = kit.wait_healthy()
    body = b'{"a": 1}'
    s = raw_request_start(kit.port, "/api/v1/exec/health", len(body))
    s.sendall(body[:3])
    time.sleep(0.3)
    kit.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert kit.proc.poll() is None, "master exited with a request in flight"
    s.sendall(body[3:])
    status, resp = read_http_response(s)
    assert status == 405 and b'"error"' in resp
    assert kit.wait(15) == 0
    for pid in [*health["workers"], health["control"]]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_worker_that_cannot_boot_stops_the_master(make_kit):
    kit = make_kit(workers=2)
    kit.home.mkdir(parents=True)
    (kit.home / "hoodyexec.db").write_bytes(b"this is not a database" * 100)
    kit.start(wait=False)
    code = kit.wait(20)
    assert code != 0
    log = kit.log()
    assert "failed to boot" in log.lower()
    assert "file is not a database" in log
    # no fork loop: at most one attempt per worker slot
    assert log.count("Booting worker with pid") <= 2
    assert log.count("Booting control worker") <= 1


def test_refuses_public_bind_without_token(tmp_path):
    r = subprocess.run(
        [HOODYEXEC, "serve", "--home", str(tmp_path / "h"), "--bind", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "beyond loopback" in r.stderr and "--token" in r.stderr
    assert not (tmp_path / "h").exists()


def test_bad_setting_fails_at_start_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("workers: two\n")
    r = subprocess.run(
        [HOODYEXEC, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "workers" in r.stderr
    cfg.write_text("wrokers: 2\n")
    r = subprocess.run(
        [HOODYEXEC, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "wrokers" in r.stderr


def test_management_token(make_kit):
    kit = make_kit(workers=1, args=["--token", "s3cret"]).start()
    assert kit.get("/api/v1/exec/health").status == 200
    r = kit.get("/api/v1/exec/list")
    assert r.status == 401 and "error" in r.json()
    r = kit.get("/api/v1/exec/list", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    r = kit.get("/api/v1/exec/list", headers={"Authorization": "Bearer s3cret"})
    assert r.status == 200 and r.json()["execIds"]
    for path in ["/api/v1/exec/scripts/list", "/api/v1/exec/monitor/stats"]:
        assert kit.get(path).status == 401, path
    assert kit.get("/openapi.json").status == 200  # the API description is public
    r = kit.get("/api/v1/exec/monitor/stats", headers={"Authorization": "Bearer s3cret"})
    assert r.status == 200 and r.json()["workers"]
    r = kit.get("/api/v1/exec/system/restart-status", headers={"Authorization": "Bearer s3cret"})
    assert r.status == 200 and r.json()["state"] == "idle"
    assert kit.request("POST", "/api/v1/exec/system/restart").status == 401
    # scripts themselves are not behind the management token
    assert kit.get("/hello").status == 200


def test_unknown_paths_answer_json(kit):
    r = kit.get("/api/v1/exec/nope")
    assert r.status == 404 and r.headers["content-type"].startswith("application/json")
    assert "error" in r.json()
    r = kit.request("PUT", "/api/v1/exec/health")
    assert r.status == 405 and "error" in r.json()
    r = kit.get("/whatever")
    assert r.status == 404 and r.json()["error"]


def test_sighup_rereads_the_settings_file(make_kit, tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("workers: 1\n")
    kit = make_kit(workers=None, args=["--config", str(cfg)])
    kit.start(wait=False)
    kit.wait_healthy(workers=1)
    cfg.write_text("workers: 2\n")
    kit.signal(signal.SIGHUP)
    kit.wait_healthy(workers=2, timeout=10)
    # a broken edit is logged and the running settings are kept
    cfg.write_text("workers: lots\n")
    kit.signal(signal.SIGHUP)
    time.sleep(1.5)
    assert kit.proc.poll() is None
    kit.wait_healthy(workers=2, timeout=10)
    assert "keeping the current settings" in kit.log()
