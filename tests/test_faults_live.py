"""Fault injection against the real kit: a script that exits, interrupts, forks
or spins never stops the service; only the offending request fails."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from .kit import Kit

pytestmark = pytest.mark.slow

SLOW_OK = (
    "import asyncio\nasync def handler():\n    await asyncio.sleep(0.4)\n    return {'ok': True}\n"
)


def put(kit: Kit, rel: str, text: str) -> None:
    path = kit.home / "scripts" / "default" / "1" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def with_twenty_in_flight(kit: Kit, bad_path: str):
    """Fire 20 unrelated slow requests, then the bad one while they are in flight."""
    with ThreadPoolExecutor(21) as pool:
        good = [pool.submit(kit.get, "/slow_ok") for _ in range(20)]
        time.sleep(0.15)
        bad = pool.submit(kit.get, bad_path)
        return [f.result() for f in good], bad


EXITS = {
    "sys_exit_0": "import sys\n    sys.exit(0)",
    "sys_exit_1": "import sys\n    sys.exit(1)",
    "sys_exit_2": "import sys\n    sys.exit(2)",
    "sys_exit_3": "import sys\n    sys.exit(3)",
    "sys_exit_4": "import sys\n    sys.exit(4)",
    "keyboard_interrupt": "raise KeyboardInterrupt()",
    "base_exception": "raise BaseException('bare')",
}


@pytest.fixture(scope="module")
def faultkit(tmp_path_factory):
    kit = Kit(tmp_path_factory.mktemp("faults") / "home", workers=2).start()
    put(kit, "slow_ok.py", SLOW_OK)
    for name, code in EXITS.items():
        for mode in ("inline", "thread"):
            put(kit, f"{name}_{mode}.py", f"# @mode {mode}\ndef handler():\n    {code}\n")
        put(kit, f"{name}_async.py", f"async def handler():\n    {code}\n")
    yield kit
    kit.stop()


@pytest.mark.parametrize("mode", ["inline", "thread", "async"])
@pytest.mark.parametrize("kind", EXITS)
def test_exit_family_fails_only_the_offending_request(faultkit, kind, mode):
    before = faultkit.wait_healthy()
    good, bad = with_twenty_in_flight(faultkit, f"/{kind}_{mode}")
    assert [r.status for r in good] == [200] * 20
    r = bad.result()
    assert r.status == 500 and r.json()["executionId"], r
    after = faultkit.wait_healthy()
    assert after["master"] == before["master"] and set(after["workers"]) == set(before["workers"])


def test_route_test_of_an_exiting_script_keeps_the_kit_up(faultkit):
    before = faultkit.wait_healthy()
    for kind in ("sys_exit_3", "keyboard_interrupt", "base_exception"):
        r = faultkit.request("POST", "/api/v1/exec/route/test", body={"path": f"/{kind}_inline"})
        assert r.status == 200 and r.json()["status"] == 500, r
    after = faultkit.wait_healthy()
    assert after["control"] == before["control"] and after["master"] == before["master"]
    # os._exit(3) through route/test: the worker running it dies and is replaced
    put(faultkit, "die3.py", "import os\nos._exit(3)\n")
    r = faultkit.request("POST", "/api/v1/exec/route/test", body={"path": "/die3"})
    assert r.status == 502 and "exited" in r.json()["error"], r
    after = faultkit.wait_healthy(
        timeout=10, predicate=lambda h: set(h["workers"]) != set(before["workers"])
    )
    assert after["control"] == before["control"] and after["master"] == before["master"]
    assert faultkit.proc.poll() is None


@pytest.mark.parametrize("code", [3, 4, 1])
def test_os_exit_kills_only_its_worker_which_is_replaced(make_kit, code):
    kit = make_kit().start()
    put(kit, "slow_ok.py", SLOW_PID)
    put(kit, "die.py", f"import os\nos._exit({code})\n")
    before = kit.wait_healthy()
    with ThreadPoolExecutor(21) as pool:
        good = [pool.submit(_get_or_none, kit, "/slow_ok") for _ in range(20)]
        time.sleep(0.15)
        bad = _get_or_none(kit, "/die")
        answers = [f.result() for f in good]
    assert bad is None or bad.status >= 500  # the worker died with its connection
    served = [r for r in answers if r is not None]
    # only the dying worker's own requests may go unanswered; every answer is right
    assert served and all(r.status == 200 for r in served)
    assert {r.json()["pid"] for r in served} <= set(before["workers"])
    after = kit.wait_healthy(
        timeout=10, predicate=lambda h: set(h["workers"]) != set(before["workers"])
    )
    assert kit.proc.poll() is None, kit.log()[-2000:]
    assert after["master"] == before["master"]
    assert len(set(after["workers"]) & set(before["workers"])) == 1  # the other one served on
    assert [kit.get("/slow_ok").status for _ in range(4)] == [200] * 4


def _get_or_none(kit: Kit, path: str):
    try:
        return kit.get(path, timeout=10)
    except OSError:
        return None


SLOW_PID = (
    "import asyncio, os\nasync def handler():\n    await asyncio.sleep(0.4)\n"
    "    return {'pid': os.getpid()}\n"
)


FORKS = {
    "inline": "# @mode inline\nimport os\ndef handler():\n    pid = os.fork()\n    return {'child': pid}\n",
    "thread": "# @mode thread\nimport os\ndef handler():\n    pid = os.fork()\n    return {'child': pid}\n",
    "async": "import os, asyncio\nasync def handler():\n    pid = os.fork()\n    await asyncio.sleep(0)\n    return {'child': pid}\n",
}


@pytest.mark.parametrize("mode", FORKS)
def test_a_forking_script_leaves_its_worker_serving(make_kit, mode):
    kit = make_kit(workers=1).start()
    put(kit, "fork.py", FORKS[mode])
    put(kit, "ok.py", "return {'ok': True}\n")
    put(kit, "slow_ok.py", SLOW_OK)
    before = kit.wait_healthy()
    good, bad = with_twenty_in_flight(kit, "/fork")  # all on the one worker that forks
    assert [g.status for g in good] == [200] * 20
    r = bad.result()
    assert r.status == 200 and r.json()["child"] > 0
    child = r.json()["child"]
    # the child never answers and is gone at once (a zombie until reaped at most)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the forked child is still running")
    # the worker keeps accepting: many fresh connections, all answered
    assert [kit.get("/ok").status for _ in range(40)] == [200] * 40
    after = kit.wait_healthy()
    assert after["workers"] == before["workers"]


def test_subprocess_and_multiprocessing_still_work(kit):
    put(
        kit,
        "procs.py",
        "import multiprocessing, subprocess, sys\n"
        "def _square(q, n):\n    q.put(n * n)\n"
        "def handler():\n"
        "    out = subprocess.run([sys.executable, '-c', 'print(6*7)'], capture_output=True, text=True)\n"
        "    ctx = multiprocessing.get_context('fork')\n"
        "    q = ctx.Queue()\n"
        "    p = ctx.Process(target=_square, args=(q, 9))\n"
        "    p.start(); value = q.get(timeout=5); p.join(5)\n"
        "    return {'sub': out.stdout.strip(), 'mp': value, 'exit': p.exitcode}\n",
    )
    r = kit.get("/procs")
    assert r.json() == {"sub": "42", "mp": 81, "exit": 0}, r
    assert kit.get("/hello").status == 200


def test_a_frozen_request_worker_is_replaced(make_kit):
    kit = make_kit(args=["--timeout", "2"]).start()
    before = kit.wait_healthy()
    frozen = before["workers"][0]
    os.kill(frozen, signal.SIGSTOP)
    try:
        after = kit.wait_healthy(timeout=15, predicate=lambda h: frozen not in h["workers"])
    finally:
        try:
            os.kill(frozen, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert after["master"] == before["master"] and kit.proc.poll() is None


def test_a_loop_that_swallows_its_timeout_ends_only_its_worker(make_kit):
    kit = make_kit().start()
    put(
        kit,
        "hog.py",
        "# @timeout 200\n# @mode inline\nimport time\ndef handler():\n"
        "    while True:\n        try:\n            time.sleep(0.01)\n"
        "        except BaseException:\n            pass\n",
    )
    before = kit.wait_healthy()
    t0 = time.monotonic()
    try:
        kit.get("/hog", timeout=15)
    except OSError:
        pass
    # the worker gives up ~3 s past the deadline instead of the 30 s heartbeat timeout
    kit.wait_healthy(timeout=15, predicate=lambda h: set(h["workers"]) != set(before["workers"]))
    assert time.monotonic() - t0 < 10
    assert kit.proc.poll() is None
    assert kit.get("/hello").status == 200
    # the interrupts it swallowed flood nothing: one line says why the worker ended
    assert "Traceback" not in kit.log() and kit.log().count("holds the event loop") == 1


def test_threads_that_ignore_their_timeout_recycle_the_worker(make_kit):
    kit = make_kit(workers=1).start()
    put(
        kit,
        "spin.py",
        "# @timeout 100\n# @mode thread\ndef handler():\n"
        "    while True:\n        try:\n            sum(range(1000))\n"
        "        except BaseException:\n            pass\n",
    )
    before = kit.wait_healthy()
    statuses = [kit.get("/spin", timeout=10).status for _ in range(3)]
    assert statuses == [504] * 3
    # three abandoned spinning threads: the worker is recycled gracefully
    after = kit.wait_healthy(
        timeout=20, predicate=lambda h: set(h["workers"]) != set(before["workers"])
    )
    assert after["master"] == before["master"]
    assert kit.get("/hello").status == 200
    assert "stuck" in kit.log()


def test_sighup_drops_no_management_call(make_kit):
    kit = make_kit().start()
    stop = threading.Event()
    results: list[int] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                results.append(kit.get("/api/v1/exec/scripts/list", timeout=10).status)
            except OSError:
                results.append(-1)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            time.sleep(0.6)
            before = kit.wait_healthy()
            kit.signal(signal.SIGHUP)
            kit.wait_healthy(timeout=15, predicate=lambda h, b=before: h["control"] != b["control"])
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(results) > 100
    assert set(results) == {200}, {s: results.count(s) for s in set(results)}


# -- route/test runs in a request worker, bounded ----------------------------------
def _control_rss(kit: Kit) -> int:
    return psutil.Process(kit.health()["control"]).memory_info().rss


def test_route_test_of_an_endless_stream_is_capped_and_timed(make_kit):
    kit = make_kit().start()
    put(
        kit,
        "flood.py",
        "# @timeout 5000\ndef handler():\n    while True:\n        yield 'x' * 65536\n",
    )
    put(
        kit,
        "drip.py",
        "# @timeout 800\nimport asyncio\nasync def handler():\n    while True:\n"
        "        yield 'tick\\n'\n        await asyncio.sleep(0.05)\n",
    )
    rss = _control_rss(kit)
    t0 = time.monotonic()
    out = kit.request("POST", "/api/v1/exec/route/test", body={"path": "/flood"}).json()
    assert out["status"] == 200 and out["truncated"] is True
    assert len(out["body"]) == 1024 * 1024
    assert time.monotonic() - t0 < 5
    t0 = time.monotonic()
    out = kit.request("POST", "/api/v1/exec/route/test", body={"path": "/drip"}).json()
    took = time.monotonic() - t0
    assert out["timedOut"] is True and out["body"].startswith("tick\n") and 0.7 < took < 4
    assert _control_rss(kit) - rss < 20 * 1024 * 1024  # the control worker never held the flood


def test_route_test_stops_when_its_client_leaves(make_kit):
    kit = make_kit().start()
    put(
        kit,
        "count.py",
        "# @timeout 20000\nimport asyncio\nasync def handler(shared):\n    i = 0\n    while True:\n"
        "        i += 1\n        shared.set('i', i)\n        yield str(i)\n        await asyncio.sleep(0.05)\n",
    )
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=5)
    conn.request(
        "POST",
        "/api/v1/exec/route/test",
        body=json.dumps({"path": "/count"}),
        headers={"Content-Type": "application/json"},
    )
    time.sleep(0.6)
    conn.close()  # the client leaves
    time.sleep(0.5)

    def value() -> int:
        r = kit.request(
            "POST", "/api/v1/exec/shared-state/get", body={"hostname": "localhost", "path": "i"}
        )
        return r.json()["value"]

    first = value()
    time.sleep(0.6)
    assert first > 0 and value() == first  # the run stopped with its client


def test_route_test_of_a_script_that_holds_its_worker_leaves_the_api_free(make_kit):
    kit = make_kit().start()
    put(
        kit,
        "hog.py",
        "# @timeout 300\n# @mode inline\nimport time\ndef handler():\n    while True:\n"
        "        try:\n            time.sleep(0.01)\n        except BaseException:\n            pass\n",
    )
    before = kit.wait_healthy()
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(
            kit.request, "POST", "/api/v1/exec/route/test", {"path": "/hog"}, None, 20
        )
        time.sleep(0.5)
        t0 = time.monotonic()
        for _ in range(5):  # the management API answers while the script spins
            assert kit.get("/api/v1/exec/scripts/list").status == 200
        assert time.monotonic() - t0 < 2
        r = fut.result()
    assert r.status in (502, 503, 200), r  # the worker running it was ended
    after = kit.wait_healthy(
        timeout=15, predicate=lambda h: set(h["workers"]) != set(before["workers"])
    )
    assert after["control"] == before["control"] and kit.proc.poll() is None


def test_a_frozen_control_worker_is_replaced(make_kit):
    kit = make_kit(args=["--timeout", "2"]).start()
    before = kit.wait_healthy()
    os.kill(before["control"], signal.SIGSTOP)
    try:
        after = kit.wait_healthy(timeout=15, predicate=lambda h: h["control"] != before["control"])
    finally:
        try:
            os.kill(before["control"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert after["master"] == before["master"]
    assert "CONTROL WORKER TIMEOUT" in kit.log()


def test_health_never_reports_ok_without_workers(make_kit):
    kit = make_kit()
    kit.start(wait=False)
    seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            r = kit.get("/api/v1/exec/health", timeout=2)
        except OSError:
            time.sleep(0.01)
            continue
        seen.append((r.status, r.json()))
        if r.status == 200:
            break
    assert seen and seen[-1][0] == 200
    for status, body in seen:
        assert (status, body["status"]) in ((503, "starting"), (200, "ok"))
        if status == 200:
            assert len(body["workers"]) == 2
