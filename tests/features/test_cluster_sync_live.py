"""Scripts across live nodes sharing PostgreSQL or Redis: a write, a delete and
a move answered by node A are served by node B on its next request; a node
started late is in sync before health says ok; a file dropped into one node's
folder stays there; the propagation time, measured."""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest

from ..kit import Kit
from ..wheels import hermetic_env, make_wheel

E = "/api/v1/exec/"

pytestmark = pytest.mark.timeout(120)


def nodes(make_kit, url: str, size: int = 2) -> list[Kit]:
    kits = [make_kit(workers=1, args=["--state-url", url]) for _ in range(size)]
    for kit in kits:
        kit.start(wait=False)
    for kit in kits:
        kit.wait_healthy(predicate=lambda h: h.get("scripts", {}).get("synced"))
    return kits


def write(kit: Kit, path: str, content: str, **more) -> dict:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content, **more})
    assert r.status in (200, 201), r.body
    return r.json()


def served(kit: Kit, route: str):
    r = kit.get(route)
    return r.json() if r.status == 200 else r.status


def test_write_delete_move_on_a_served_by_b(make_kit, shared_url):
    a, b = nodes(make_kit, shared_url)
    write(a, "greet.py", "return {'v': 1}\n")
    assert served(b, "/greet") == {"v": 1}  # the very next request, no waiting
    assert (b.home / "scripts/default/1/greet.py").read_text() == "return {'v': 1}\n"
    write(b, "greet.py", "return {'v': 2}\n")  # either node writes; last write wins
    assert served(a, "/greet") == {"v": 2}
    # a folder of scripts, moved through A, deleted through B
    write(a, "lib/one.py", "return {'one': 1}\n")
    write(a, "lib/two.py", "return {'two': 2}\n")
    assert served(b, "/lib/two") == {"two": 2}
    r = a.request("POST", E + "scripts/move", {"from": "lib", "to": "pkg"})
    assert r.status == 200, r.body
    assert served(b, "/pkg/one") == {"one": 1} and served(b, "/lib/one") == 404
    assert not (b.home / "scripts/default/1/lib").exists()
    r = b.request("DELETE", E + "scripts/delete?path=pkg/two.py&confirm=true")
    assert r.status == 200, r.body
    assert served(a, "/pkg/two") == 404 and served(a, "/pkg/one") == {"one": 1}
    # another instance, and the read API on B sees A's write
    write(a, "x.py", "return {'x': 1}\n", subdomain="team", execId="7")
    r = b.get(E + "scripts/read?path=x.py&subdomain=team&execId=7")
    assert r.status == 200 and r.json()["content"] == "return {'x': 1}\n"
    # a file dropped straight into A's folder stays on A
    (a.home / "scripts/default/1/local.py").write_text("return {'local': True}\n")
    assert served(a, "/local") == {"local": True}
    write(a, "after.py", "return 1\n")
    assert served(b, "/after") == 1 and served(b, "/local") == 404
    # health: in sync, and each node's progress in the registry
    health = a.wait_healthy(predicate=lambda h: len(h.get("nodes") or []) == 2)
    assert health["scripts"]["synced"] is True
    applied = health["scripts"]["applied"]
    for node in health["nodes"]:
        assert node["scripts"] == applied, health


def test_a_node_started_late_catches_up_before_it_is_ready(make_kit, pg_url):
    (a,) = nodes(make_kit, pg_url, 1)
    for i in range(30):
        write(a, f"many/s{i}.py", f"return {{'i': {i}}}\n")
    write(a, "gone.py", "return 1\n")
    assert a.request("DELETE", E + "scripts/delete?path=gone.py&confirm=true").status == 200
    late = make_kit(workers=1, args=["--state-url", pg_url])
    (late.home / "scripts/default/1").mkdir(parents=True)
    (late.home / "scripts/default/1/gone.py").write_text("return 'stale'\n")
    late.start(wait=False)
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            r = late.get(E + "health", timeout=1)
        except OSError:
            time.sleep(0.02)
            continue
        seen.append(r.status)
        if r.status == 200:
            break
        assert r.json()["status"] == "starting"
        time.sleep(0.01)
    assert seen[-1] == 200
    # ok means every script is there already, and the deletion was applied
    assert served(late, "/many/s29") == {"i": 29} and served(late, "/many/s0") == {"i": 0}
    assert served(late, "/gone") == 404
    assert late.health()["scripts"]["synced"] is True


def test_the_default_sqlite_kit_publishes_nothing(kit):
    health = kit.wait_healthy()
    assert "scripts" not in health and "lock" not in health


def test_propagation_latency(make_kit, shared_url, request):
    """Write on A, poll B until the new version answers: the time from sending
    the write to B serving it (p50, p99), over 100 writes."""
    a, b = nodes(make_kit, shared_url)
    write(a, "p.py", "return {'v': -1}\n")
    assert served(b, "/p") == {"v": -1}
    took = []
    for i in range(100):
        start = time.perf_counter()
        write(a, "p.py", f"return {{'v': {i}}}\n")
        while served(b, "/p") != {"v": i}:
            pass
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    p50, p99 = statistics.median(took), took[98]
    backend = request.node.callspec.params["shared_url"]
    print(f"\npropagation {backend}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {took[-1]:.1f} ms")
    assert p99 < 250, took  # the goal is 50 ms; a loaded test machine gets slack


def test_monitor_gathers_every_live_node_and_marks_the_unreachable(make_kit, pg_url):
    a, b, c = nodes(make_kit, pg_url, 3)
    write(a, "m.py", "return 1\n")
    for _ in range(3):
        assert served(b, "/m") == 1
    for kit in (a, b, c):
        kit.wait_healthy(predicate=lambda h: len(h.get("nodes") or []) == 3)
    os.killpg(c.pid, signal.SIGKILL)  # gone without leaving: listed until its TTL
    c.wait(5)
    r = a.get(E + "monitor/stats?cluster=true", timeout=15)
    assert r.status == 200, r.body
    got = r.json()
    by_bind = {n["bind"]: n for n in got["nodes"]}
    assert set(by_bind) == {f"127.0.0.1:{k.port}" for k in (a, b, c)}
    assert got["count"] == 3 and got["reachable"] == 2 and got["cluster"] is True
    me, other, dead = (by_bind[f"127.0.0.1:{k.port}"] for k in (a, b, c))
    assert me["self"] is True and me["reachable"] is True
    assert other["reachable"] is True and other["data"]["requests"]["total"] >= 3
    assert dead["reachable"] is False and dead["error"]
    scripts = a.get(E + "monitor/scripts?cluster=true&limit=5").json()
    row = next(n for n in scripts["nodes"] if n["bind"] == f"127.0.0.1:{b.port}")
    assert row["data"]["limit"] == 5 and row["data"]["scripts"][0]["script"].endswith("m.py")
    perf = b.request("POST", E + "monitor/script-performance?cluster=true", {}).json()
    assert perf["reachable"] == 2 and perf["node"] != got["node"]
    # without the flag: this node only, as before
    assert "nodes" not in a.get(E + "monitor/stats").json()


def test_monitor_cluster_needs_a_shared_backend(kit):
    r = kit.get(E + "monitor/stats?cluster=true")
    assert r.status == 400 and "shared state backend" in r.json()["error"], r.body


@pytest.mark.slow
def test_packages_installed_on_one_node_converge_on_every_node(make_kit, pg_url, tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinypkg", "1.0.0", {"tinypkg/__init__.py": "VALUE = 1\n"})
    make_wheel(wheels, "tinypkg", "1.1.0", {"tinypkg/__init__.py": "VALUE = 11\n"})
    env = hermetic_env(wheels, tmp_path / "uv-cache")
    a, b = (make_kit(workers=1, env=env, args=["--state-url", pg_url]) for _ in range(2))
    for kit in (a, b):
        kit.start(wait=False)
    for kit in (a, b):
        kit.wait_healthy(predicate=lambda h: h.get("packages", {}).get("synced"))
    assert a.health()["lock"] == "" == b.health()["lock"]
    write(a, "usetiny.py", "import tinypkg\nreturn {'v': tinypkg.VALUE}\n", validate=False)
    r = a.request("POST", E + "package/install", {"packages": ["tinypkg==1.0.0"]}, timeout=60)
    assert r.status == 200 and r.json()["success"], r.body
    assert served(a, "/usetiny") == {"v": 1}
    lock = a.health()["lock"]
    assert lock and "tinypkg==1.0.0" in (a.home / "requirements.lock").read_text()
    health = b.wait_healthy(timeout=60, predicate=lambda h: h["lock"] == lock)
    assert served(b, "/usetiny") == {"v": 1}  # installed on B from the lock
    assert "tinypkg" in (b.home / "pyproject.toml").read_text()
    assert "tinypkg==1.0.0" in (b.home / "requirements.lock").read_text()
    health = a.wait_healthy(
        predicate=lambda h: [n["lock"] for n in h.get("nodes") or []] == [lock, lock]
    )
    # an upgrade through B reaches A the same way
    r = b.request("POST", E + "package/install", {"packages": ["tinypkg==1.1.0"]}, timeout=60)
    assert r.status == 200 and r.json()["success"], r.body
    lock2 = b.health()["lock"]
    assert lock2 != lock
    a.wait_healthy(timeout=60, predicate=lambda h: h["lock"] == lock2)
    # (a module already imported stays until a restart, as on one node)
    assert [p.name for p in (a.home / "packages/site").glob("tinypkg-*")] == [
        "tinypkg-1.1.0.dist-info"
    ]
    # a node started late installs the lock before it is ready
    c = make_kit(workers=1, env=env, args=["--state-url", pg_url]).start()
    assert c.health()["lock"] == lock2 and served(c, "/usetiny") == {"v": 11}
    assert health["status"] == "ok"
