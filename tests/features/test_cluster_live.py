"""Several live kits sharing one state backend (``--state-url``): shared state
exact across nodes, the node list in health, a node killed mid-load, the
backend down at start and while running, and (slow, real time) a schedule
that fires once per tick in a cluster of three."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..kit import Kit

E = "/api/v1/exec/"
COUNTER = "n = shared.incr('n')\nreturn {'n': n}\n"

pytestmark = pytest.mark.timeout(180)


def cluster(make_kit, url: str, size: int = 2, workers: int = 2) -> list[Kit]:
    kits = [make_kit(workers=workers, args=["--state-url", url]) for _ in range(size)]
    for kit in kits:
        kit.start()
    for kit in kits:
        write(kit, "count.py", COUNTER)
    return kits


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def incr(kit: Kit) -> int:
    r = kit.request("POST", "/count", timeout=20)
    assert r.status == 200, r
    return int(r.json()["n"])


def test_two_nodes_share_state_exactly_and_list_each_other(make_kit, shared_url):
    a, b = cluster(make_kit, shared_url)
    with ThreadPoolExecutor(16) as pool:
        values = list(pool.map(lambda i: incr(a if i % 2 else b), range(200)))
    assert sorted(values) == list(range(1, 201))  # 200 concurrent incr, two nodes
    r = a.request(
        "POST", E + "shared-state/get", {"hostname": "127.0.0.1", "path": "n"}, timeout=10
    )
    assert r.status == 200 and r.json()["value"] == 200, r.body
    binds = {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}
    for kit in (a, b):
        health = kit.wait_healthy(predicate=lambda h: len(h.get("nodes") or []) == 2)
        assert {n["bind"] for n in health["nodes"]} == binds
        assert {n["pid"] for n in health["nodes"]} == {a.pid, b.pid}
        assert all(n["lastSeen"] >= n["started"] for n in health["nodes"])
    b.stop()  # a clean stop leaves the registry at once
    health = a.wait_healthy(predicate=lambda h: len(h.get("nodes") or []) == 1)
    assert health["nodes"][0]["bind"] == f"127.0.0.1:{a.port}"


def test_the_default_sqlite_kit_lists_no_nodes(kit):
    assert "nodes" not in kit.wait_healthy()


def test_a_node_killed_mid_load_loses_no_acknowledged_write(make_kit, pg_url):
    a, b = cluster(make_kit, pg_url)
    acked: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(kit: Kit) -> None:
        while not stop.is_set():
            try:
                r = kit.request("POST", "/count", timeout=10)
            except OSError as exc:  # the killed node's connections
                errors.append(repr(exc))
                if kit is a:
                    return
                continue
            if r.status == 200:
                with lock:
                    acked.append(int(r.json()["n"]))

    threads = [threading.Thread(target=load, args=(k,)) for k in (a, a, a, b, b, b)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    a.signal(signal.SIGKILL)  # the master; then its workers, mid-request
    a.stop()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 150
    assert len(acked) == len(set(acked))  # no value given twice
    final = incr(b) - 1
    # Every acknowledged increment is in the counter; at most the ones in flight
    # on the killed node (6 threads) were done without an answer.
    assert max(acked) <= final <= len(acked) + 6
    assert final >= len(acked)


def test_a_backend_down_at_start_is_refused_with_a_clear_message(make_kit):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kit = make_kit(args=["--state-url", f"postgresql://kit:pw@127.0.0.1:{port}/db"])
    kit.start(wait=False)
    assert kit.wait(20) == 2
    log = kit.log()
    assert "state backend postgresql://kit:***@127.0.0.1" in log and "is unusable" in log, log
    assert "pw@" not in log


def test_a_backend_down_while_running_is_a_503_for_state_only(make_kit, postgres_server, pg_url):
    (kit,) = cluster(make_kit, pg_url, size=1, workers=1)
    assert incr(kit) == 1
    postgres_server.stop()
    try:
        r = kit.request("POST", "/count", timeout=20)
        assert r.status == 503, r
        body = r.json()
        assert body["error"] == "state backend unavailable" and "PostgreSQL" in body["detail"]
        assert r.headers.get("retry-after") == "1"
        hello = kit.get("/hello?name=ann")
        assert hello.status == 200 and hello.json() == {"hi": "ann"}  # what needs no state
        health = kit.get(E + "health", timeout=15)
        assert health.status == 200, health
        assert health.json()["nodes"] is None and "unavailable" in health.json()["nodesError"]
        state = kit.request("POST", E + "shared-state/get", {"hostname": "127.0.0.1"}, timeout=15)
        assert state.status == 503 and state.json()["error"] == "state backend unavailable"
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 20
    while True:  # the kit reconnects on its own
        r = kit.request("POST", "/count", timeout=20)
        if r.status == 200:
            break
        assert r.status == 503 and time.monotonic() < deadline, r
        time.sleep(0.2)
    assert r.json()["n"] == 2
    assert kit.wait_healthy(predicate=lambda h: len(h.get("nodes") or []) == 1)


TICK = "# @schedule * * * * *\nn = shared.incr('fires')\nreturn {'n': n}\n"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_schedule_fires_once_per_tick_in_a_cluster_of_three(make_kit, pg_url):
    kits = cluster(make_kit, pg_url, size=3, workers=1)
    for kit in kits:
        write(kit, "tick.py", TICK)
    # Wait for a tick to have fired (a real minute at most): three schedulers
    # compete for it.
    deadline = time.monotonic() + 90
    entries: list[dict] = []
    while time.monotonic() < deadline:
        r = kits[0].get(E + "schedules/history?limit=50")
        entries = [e for e in r.json()["entries"] if e["trigger"] == "schedule"]
        if entries:
            break
        time.sleep(0.5)
    assert entries, entries
    time.sleep(3)  # a late duplicate would show up now
    views = [k.get(E + "schedules/history?limit=50").json()["entries"] for k in kits]
    assert all(v == views[0] for v in views)  # one history for the whole cluster
    fired = [e for e in views[0] if e["trigger"] == "schedule"]
    ticks = [e["tick"] for e in fired]
    assert len(ticks) == len(set(ticks)), json.dumps(fired, indent=1)
    assert all(e["status"] == "ok" for e in fired)
    r = kits[1].request("POST", E + "shared-state/get", {"hostname": "127.0.0.1", "path": "fires"})
    assert r.json()["value"] == len(fired)
