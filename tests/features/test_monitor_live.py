"""Monitoring over real HTTP against a live two-worker kit."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest

from ..kit import Kit

pytestmark = pytest.mark.slow

E = "/api/v1/exec/monitor/"
PID = "import os\nreturn {'pid': os.getpid()}\n"


def spread(kit: Kit, path: str, n: int) -> set[int]:
    """n requests on fresh connections: the kernel spreads them over the workers."""
    pids = set()
    for _ in range(n):
        r = kit.get(path)
        assert r.status == 200, r.body
        pids.add(r.json()["pid"])
    return pids


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None and shutil.which("apt-get"):  # Debian's prometheus package ships it
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
        for step in (install, ["apt-get", "update", "-qq"], install):
            done = subprocess.run(step, capture_output=True, timeout=600, env=env)
            if step is install and done.returncode == 0:
                break
        path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed and cannot be installed here")
    return path


def test_figures_sum_over_both_workers_and_into_prometheus(kit, promtool):
    (kit.home / "scripts/default/1/pid.py").write_text(PID)
    pids = spread(kit, "/pid", 30)
    assert len(pids) == 2, "the requests did not reach both workers"
    perf = kit.request("POST", E + "script-performance", {"script": "pid.py"}).json()
    (row,) = perf["scripts"]
    assert row["count"] == 30 and row["errors"] == 0 and row["p50"] is not None
    assert row["p50"] <= row["p95"] <= row["p99"]
    stats = kit.get(E + "stats").json()
    assert sorted(w["pid"] for w in stats["workers"]) == sorted(pids)
    assert sum(w["requests"] for w in stats["workers"]) >= 30
    assert stats["requests"]["total"] >= 30 and stats["uptime"] > 0
    assert all(w["rss"] > 0 for w in stats["workers"])
    time.sleep(1.3)  # workers copy their counts into the metrics once a second
    r = kit.get(E + "metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    assert metric(text, "hoodyexec_requests_total", script="pid.py", status="200") == 30
    assert metric(text, "hoodyexec_request_duration_seconds_count", script="pid.py") == 30
    assert "hoodyexec_process_resident_memory_bytes" in text
    check = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_counters_survive_a_workers_replacement(kit):
    (kit.home / "scripts/default/1/pid.py").write_text(PID)
    (kit.home / "scripts/default/1/die.py").write_text("import os\nos._exit(1)\n")
    spread(kit, "/pid", 10)
    time.sleep(1.3)
    with pytest.raises(ConnectionError):  # that worker is gone; gunicorn starts another
        kit.get("/die")
    deadline = time.monotonic() + 10
    while len((kit.health() or {}).get("workers", [])) != 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    text = kit.get(E + "metrics").body.decode()
    assert metric(text, "hoodyexec_requests_total", script="pid.py") == 10
    assert metric(text, "hoodyexec_worker_recycles_total", role="request") == 1


def test_an_in_flight_request_is_listed_with_its_worker(kit):
    (kit.home / "scripts/default/1/wait.py").write_text(
        "import asyncio\nimport os\n\n\nasync def handler():\n"
        "    await asyncio.sleep(2)\n    return {'pid': os.getpid()}\n"
    )
    answer: dict = {}
    t = threading.Thread(target=lambda: answer.update(kit.get("/wait").json()))
    t.start()
    time.sleep(0.5)
    body = kit.get(E + "active-requests?stacks=true").json()
    (item,) = [a for a in body["requests"] if a["path"] == "/wait"]
    assert item["script"] == "default/1/wait.py" and item["method"] == "GET"
    assert 300 < item["elapsedMs"] < 2000 and item["mode"] == "async"
    assert "asyncio.sleep" in item["stack"] or "handler" in item["stack"]
    t.join()
    assert item["workerPid"] == answer["pid"]
    assert not [
        a for a in kit.get(E + "active-requests").json()["requests"] if a["path"] == "/wait"
    ]


def test_scripts_listing_sorts_and_clamps(kit):
    for name in ("a", "b"):
        (kit.home / f"scripts/default/1/{name}.py").write_text("return 1\n")
    for _ in range(3):
        kit.get("/a")
    kit.get("/b")
    body = kit.get(E + "scripts?sort=requests&limit=0").json()
    assert body["limit"] == 1 and body["scripts"][0]["script"] == "a.py"
    assert kit.get(E + "scripts?limit=9999").json()["limit"] == 500
    recent = kit.get(E + "scripts").json()["scripts"]
    assert recent[0]["script"] == "b.py"  # lastActivity, newest first
    assert kit.get(E + "scripts?sort=nonsense").status == 400


def test_execution_ids_and_access_logs(make_kit):
    kit = make_kit(args=["--slow-request-ms", "300"]).start()
    root = kit.home / "scripts/default/1"
    (root / "plain.py").write_text("print('hi')\nreturn {'ok': 1}\n")
    (root / "logged.py").write_text("# @log-level info\nreturn {'ok': 1}\n")
    (root / "boom.py").write_text("raise ValueError('no')\n")
    (root / "stream.py").write_text("def handler():\n    yield 'a'\n    yield 'b'\n")
    (root / "slow.py").write_text(
        "import time\n\n\ndef dawdle():\n    time.sleep(0.8)\n\n\ndawdle()\nreturn {'ok': 1}\n"
    )
    ok = kit.get("/plain")
    eid = ok.headers["x-execution-id"]
    assert eid in (kit.home / "logs/default/1/plain.log").read_text()
    err = kit.get("/boom")
    assert err.status == 500 and err.headers["x-execution-id"] == err.json()["executionId"]
    assert kit.get("/stream").headers["x-execution-id"]
    assert kit.get("/nosuch").headers["x-execution-id"]
    logged = kit.get("/logged")
    kit.get("/stream")
    lines = [json.loads(x) for x in (kit.home / "logs/default-1.log").read_text().splitlines()]
    assert [x["path"] for x in lines] == ["/logged"]  # only scripts that opt in
    (line,) = lines
    assert line["executionId"] == logged.headers["x-execution-id"]
    assert line["status"] == 200 and line["method"] == "GET" and line["script"] == "logged.py"
    assert line["bytes"] == len(logged.body) and line["durationMs"] >= 0
    slow = kit.get("/slow")
    deadline = time.monotonic() + 3
    while not (kit.home / "logs/slow.log").exists():
        assert time.monotonic() < deadline, "nothing in slow.log"
        time.sleep(0.1)
    (entry,) = [json.loads(x) for x in (kit.home / "logs/slow.log").read_text().splitlines()]
    assert entry["executionId"] == slow.headers["x-execution-id"]
    assert entry["script"] == "default/1/slow.py" and "dawdle" in entry["stack"]
