"""Scripts over real HTTP against the real kit (2 request workers)."""

from __future__ import annotations

import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def put(kit, rel: str, text: str) -> Path:
    path = kit.home / "scripts" / "default" / "1" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def test_seeded_examples_answer(kit):
    assert kit.get("/hello?name=ann").json() == {"hi": "ann"}
    echo = kit.request("POST", "/echo?x=1", body={"a": 1}).json()
    assert echo == {"method": "POST", "path": "/echo", "query": {"x": "1"}, "body": {"a": 1}}
    first = kit.get("/counter").json()["visits"]
    assert kit.get("/counter").json()["visits"] == first + 1
    assert kit.get("/items").json() == {"items": []}
    r = kit.request("POST", "/items", body={"name": "pen", "qty": 2})
    assert r.status == 201 and r.json()["count"] == 1
    assert kit.request("POST", "/items", body={"name": "pen", "qty": "x"}).status == 400
    clock = kit.get("/clock", headers={"Accept": "text/event-stream"})
    assert clock.headers["content-type"] == "text/event-stream" and clock.body.count(b"data: ") == 5


def test_two_hundred_concurrent_incr_are_distinct(kit):
    put(kit, "inc.py", "return shared.incr('hits')\n")
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda _: kit.get("/inc", timeout=30), range(200)))
    assert all(r.status == 200 for r in results)
    values = sorted(r.json() for r in results)
    assert values == list(range(1, 201))
    state = kit.request(
        "POST", "/api/v1/exec/shared-state/get", body={"hostname": "127.0.0.1", "path": "hits"}
    )
    assert state.json()["value"] == 200


def test_ten_parallel_sleepers_finish_fast_on_two_workers(kit):
    put(kit, "sleepy.py", "import time\ntime.sleep(0.5)\nreturn 'ok'\n")
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: kit.get("/sleepy", timeout=30), range(10)))
    took = time.monotonic() - t0
    assert all(r.status == 200 and r.body == b"ok" for r in results)
    assert took < 2.0, f"10 × 0.5 s sleeps took {took:.2f}s"


def test_spinning_script_times_out_repeatedly_while_others_answer(kit):
    put(kit, "spin.py", "# @timeout 300\nwhile True:\n    pass\n")
    put(kit, "fast.py", "return 'fast'\n")
    for _ in range(4):
        t0 = time.monotonic()
        r = kit.get("/spin", timeout=10)
        assert r.status == 504 and r.json()["error"] and r.json()["executionId"]
        assert time.monotonic() - t0 < 3.0
        t1 = time.monotonic()
        assert kit.get("/fast").body == b"fast"
        assert time.monotonic() - t1 < 0.5
    with ThreadPoolExecutor(max_workers=6) as pool:
        spins = [pool.submit(kit.get, "/spin", timeout=10) for _ in range(4)]
        time.sleep(0.05)
        t1 = time.monotonic()
        fasts = [kit.get("/fast") for _ in range(5)]
        fast_took = time.monotonic() - t1
        assert all(s.result().status == 504 for s in spins)
    assert all(f.body == b"fast" for f in fasts) and fast_took < 2.0


def test_stuck_thread_does_not_eat_capacity(make_kit):
    kit = make_kit(workers=1, args=["--threads", "2"]).start()
    put(kit, "stuck.py", "# @timeout 300\n# @mode thread\nimport time\ntime.sleep(30)\n")
    put(kit, "work.py", "# @mode thread\nreturn 'done'\n")
    for _ in range(3):
        assert kit.get("/stuck", timeout=10).status == 504
    time.sleep(2.5)  # past the grace period: stuck threads are replaced
    t0 = time.monotonic()
    assert kit.get("/work", timeout=10).body == b"done"
    assert time.monotonic() - t0 < 1.0


def test_rewritten_file_is_served_new_by_every_worker(kit):
    health = kit.wait_healthy()
    workers = set(health["workers"])

    def until_every_worker_answered(version: int) -> None:
        # Which worker accepts a connection is the kernel's choice: keep asking
        # until both have answered, and every answer must be the new version.
        seen: set[int] = set()
        for _ in range(600):
            r = kit.get("/ver").json()
            assert r["v"] == version  # never stale, on any worker, from the very next request
            seen.add(r["pid"])
            if seen == workers:
                return
        raise AssertionError(f"only {seen} of {workers} answered")

    put(kit, "ver.py", "import os\nreturn {'v': 1, 'pid': os.getpid()}\n")
    until_every_worker_answered(1)  # both workers have compiled version 1
    for version in (2, 3):
        put(kit, "ver.py", f"import os\nreturn {{'v': {version}, 'pid': os.getpid()}}\n")
        until_every_worker_answered(version)
    # a new file answers at once, a deleted one is gone at once
    put(kit, "fresh.py", "return 'new'\n")
    assert kit.get("/fresh").body == b"new"
    (kit.home / "scripts/default/1/fresh.py").unlink()
    assert kit.get("/fresh").status == 404


def test_a_change_on_disk_is_seen_by_the_next_request_on_a_busy_loop(kit):
    """The workers apply inotify events from their event loop (no poll per
    request): a file changed on disk must still be served new by the very
    next request, on a kept-alive connection and on new ones, while other
    clients keep the loops busy (so the event and the request are read in
    the same loop step)."""
    import http.client
    import threading

    kit.wait_healthy()
    put(kit, "hot.py", "return {'v': 0}\n")
    stop = threading.Event()

    def load() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
        while not stop.is_set():
            conn.request("GET", "/other")
            conn.getresponse().read()

    put(kit, "other.py", "return 1\n")
    loaders = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in loaders:
        t.start()
    keep = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    path = kit.home / "scripts" / "default" / "1" / "hot.py"
    try:
        for version in range(1, 151):
            if version % 3:
                put(kit, "hot.py", f"return {{'v': {version}}}\n")  # atomic rename
            else:
                with open(path, "w") as fh:  # in place: same inode
                    fh.write(f"return {{'v': {version}}}\n")
            if version % 2:
                keep.request("GET", "/hot")
                got = keep.getresponse()
                assert got.status == 200 and json.loads(got.read())["v"] == version
            else:
                assert kit.get("/hot").json()["v"] == version
        # a new file answers at once and a removed one is gone at once
        for n in range(20):
            put(kit, f"new{n}.py", f"return {n}\n")
            keep.request("GET", f"/new{n}")
            got = keep.getresponse()
            assert got.status == 200 and got.read() == str(n).encode()
            (path.parent / f"new{n}.py").unlink()
            keep.request("GET", f"/new{n}")
            got = keep.getresponse()
            got.read()
            assert got.status == 404
    finally:
        stop.set()
        for t in loaders:
            t.join(timeout=10)
        keep.close()


def test_stream_first_bytes_arrive_before_the_generator_ends(kit):
    put(
        kit,
        "slowgen.py",
        "import time\nfor i in range(3):\n    yield f'chunk {i}\\n'\n    time.sleep(0.6)\n",
    )
    s = socket.create_connection(("127.0.0.1", kit.port), timeout=10)
    t0 = time.monotonic()
    s.sendall(b"GET /slowgen HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = b""
    while b"chunk 0" not in data:
        data += s.recv(4096)
    first = time.monotonic() - t0
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    total = time.monotonic() - t0
    s.close()
    assert first < 0.5 < 1.5 < total, (first, total)
    assert b"chunk 2" in data and b"transfer-encoding: chunked" in data.lower()


def test_script_errors_over_http(kit):
    put(kit, "boom.py", "raise RuntimeError('kaput')\n")
    r = kit.get("/boom")
    assert r.status == 500 and r.json()["error"] == "kaput" and r.json()["type"] == "RuntimeError"
    log = (kit.home / "logs/default/1/boom.log").read_text()
    assert r.json()["executionId"] in log and "Traceback" in log
    assert kit.get("/hello").status == 200
    r = kit.request("POST", "/echo", body=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["error"] == "Invalid JSON"


def test_api_write_move_delete_are_served_at_once_by_every_worker(kit):
    health = kit.wait_healthy()
    w = "/api/v1/exec/scripts/"
    for version in (1, 2, 3):
        r = kit.request(
            "POST",
            w + "write",
            body={
                "path": "live/v.py",
                "content": f"import os\nreturn {{'v': {version}, 'pid': os.getpid()}}\n",
            },
        )
        assert r.status in (200, 201) and r.json()["validated"] is True, r.body
        seen = set()
        for _ in range(600):  # until both workers answered; every answer is the new version
            got = kit.get("/live/v").json()
            assert got["v"] == version
            seen.add(got["pid"])
            if seen == set(health["workers"]):
                break
        assert seen == set(health["workers"])
    r = kit.request("POST", w + "move", body={"from": "live/v.py", "to": "live/w.py"})
    assert r.status == 200
    for _ in range(10):
        assert kit.get("/live/v").status == 404 and kit.get("/live/w").json()["v"] == 3
    r = kit.request("DELETE", w + "delete?path=live/w.py&confirm=true")
    assert r.status == 200
    for _ in range(10):
        assert kit.get("/live/w").status == 404
    r = kit.request("POST", w + "write", body={"path": "bad.py", "content": "def f(:\n"})
    assert (
        r.status == 400
        and r.json()["error"] == "Script validation failed"
        and "validation" in r.json()
    )


def test_readme_workflows_one_and_five(kit):
    """The README's curl workflows, over real HTTP."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "scripts/write" in readme and "validate/script" in readme
    content = 'def handler(req, body):\n    return {"ok": True, "body": body}\n'
    r = kit.request(
        "POST", "/api/v1/exec/scripts/write", body={"path": "echo2.py", "content": content}
    )
    assert r.status == 201 and r.json()["validated"] is True and r.json()["route"] == "/echo2"
    r = kit.get("/api/v1/exec/scripts/read?path=echo2.py")
    assert r.json()["content"] == content and r.json()["shape"] == "handler"
    r = kit.request("POST", "/echo2", body={"hello": "world"})
    assert r.json() == {"ok": True, "body": {"hello": "world"}}
    assert "echo2.py" in {s["path"] for s in kit.get("/api/v1/exec/scripts/list").json()["scripts"]}
    assert (
        kit.request("DELETE", "/api/v1/exec/scripts/delete?path=echo2.py&confirm=true").status
        == 200
    )
    code = re.search(r"CODE='(.*?)'\n", readme, re.S).group(1)
    r = kit.request("POST", "/api/v1/exec/validate/script", body={"code": code})
    assert r.status == 200 and r.json()["valid"] is True, r.body
    r = kit.request("POST", "/api/v1/exec/validate/magic-comments", body={"code": code})
    assert r.json()["comments"] == {
        "cors": ["*"],
        "timeout": 5000,
        "description": "Greeting handler",
    }
    doc = kit.get("/openapi.json").json()
    assert "requestBody" in doc["paths"]["/api/v1/exec/scripts/write"]["post"]
