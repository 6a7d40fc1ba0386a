"""Logs feature in-process: list, read, search, clear, stream over a prepared home
(falcon's test client), following driven directly, the kit log handler. Real
kits over HTTP: ``test_logs_live.py``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import pytest

from hoodyexec.engine import capture, kitlog
from hoodyexec.features.logs import scan, service
from hoodyexec.features.logs.files import LogFiles, classify
from hoodyexec.features.logs.service import LogsService

E = "/api/v1/exec/logs/"
EXCLUDED = "Path is excluded from access"


def put(root: str, name: str, text: str, age: float = 0.0) -> str:
    path = os.path.join(root, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def script_line(eid: str, message: str, level: str = "INFO") -> str:
    return f"2026-11-28T12:00:00.123456Z {level:<5} [{eid}] {message}\n"


def events(body: bytes | str) -> list[tuple[str, object]]:
    """SSE blocks as (event, data); comments as (":", text)."""
    raw = body.decode() if isinstance(body, bytes) else body
    out: list[tuple[str, object]] = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            out.append((":", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["event"], json.loads(fields["data"])))
    return out


@pytest.fixture
def logs(api):
    """A home with one log of every type (rotated ones too), of known ages."""
    root = api.home.logs
    put(root, "default/1/hello.log", script_line("e1", "hi") + script_line("e2", "ho"), age=50)
    put(root, "default/1/api/users/[id].log", script_line("e3", "user"), age=40)
    put(root, "default-1.log", '{"executionId": "e1", "status": 200}\n', age=30)
    put(root, "kit.log", "2026-11-28T12:00:00.123Z [1] INFO hoodyexec.master: up\n", age=10)
    put(root, "kit.log.1", "older kit line\n", age=3600)
    put(root, "slow.log", "slow e1 stack\n", age=20)
    put(root, "schedules/fires.log", '{"executionId": "e9", "status": "ok"}\n', age=5)
    # not logs the API serves
    put(root, "notes.txt", "x")
    put(root, ".hidden.log", "x")
    put(root, "random.log", "x")
    put(root, "schedules/other.log", "x")
    put(root, "default/1/.secret.log", "x")
    outside = put(os.path.dirname(root), "outside/secret.log", "secret\n")
    os.symlink(outside, os.path.join(root, "default/1/link.log"))
    os.symlink(os.path.dirname(outside), os.path.join(root, "default/linked"))
    api.root_logs = root
    return api


# -- names ------------------------------------------------------------------------------


def test_names_and_types():
    assert classify("default/1/hello.log") == ("script", False)
    assert classify("default/1/api/users/[id].log.3") == ("script", True)
    assert classify("default-1.log") == ("access", False)
    assert classify("my-sub-exec_2.log.1") == ("access", True)
    assert classify("kit.log") == ("kit", False)
    assert classify("slow.log.2") == ("kit", True)
    assert classify("schedules/fires.log.5") == ("schedule", True)
    for bad in (
        "",
        "/etc/passwd",
        "../x.log",
        "default/1/../../kit.log",
        "default/./1/x.log",
        "default//1/x.log",
        "random.log",
        "kit.txt",
        "kit.log.0",
        "kit.log.x",
        ".hidden.log",
        "default/1/.secret.log",
        "schedules/other.log",
        "default/1/x.py",
        "default\\1\\x.log",
        "kit.log\x00",
    ):
        assert classify(bad) is None, bad


def test_list_every_type_newest_first_with_rotated_files(logs):
    r = logs.simulate_get(E + "list")
    assert r.status_code == 200, r.text
    body = r.json
    names = [item["file"] for item in body["logs"]]
    assert names == [
        "schedules/fires.log",
        "kit.log",
        "slow.log",
        "default-1.log",
        "default/1/api/users/[id].log",
        "default/1/hello.log",
        "kit.log.1",
    ]
    assert body["count"] == body["total"] == 7
    by = {item["file"]: item for item in body["logs"]}
    assert by["kit.log.1"]["rotated"] is True and by["kit.log"]["rotated"] is False
    assert by["kit.log.1"]["type"] == "kit" and by["default-1.log"]["type"] == "access"
    hello = by["default/1/hello.log"]
    assert hello["type"] == "script" and hello["subdomain"] == "default" and hello["execId"] == "1"
    assert hello["size"] == os.path.getsize(os.path.join(logs.root_logs, "default/1/hello.log"))
    assert hello["modified"].endswith("Z")
    scripts = logs.simulate_get(E + "list", params={"type": "script"}).json["logs"]
    assert {i["file"] for i in scripts} == {"default/1/hello.log", "default/1/api/users/[id].log"}
    kit = logs.simulate_get(E + "list", params={"type": "kit", "limit": "1"}).json
    assert [i["file"] for i in kit["logs"]] == ["kit.log"] and kit["total"] == 3
    assert logs.simulate_get(E + "list", params={"type": "nope"}).status_code == 400
    assert logs.simulate_get(E + "list", params={"limit": "0"}).status_code == 400


def test_names_logs_list_would_not_return_are_403_and_missing_ones_404(logs):
    refused = [
        "../hoodyexec.db",
        "/etc/passwd",
        os.path.join(logs.root_logs, "kit.log"),
        "default/1/../../kit.log",
        "notes.txt",
        ".hidden.log",
        "random.log",
        "default/1/.secret.log",
        "default/1/link.log",  # a symlink leading out
        "default/linked/secret.log",  # through a symlinked folder
    ]
    for name in refused:
        r = logs.simulate_post(E + "read", json={"file": name})
        assert r.status_code == 403 and r.json["error"] == EXCLUDED, (name, r.text)
        r = logs.simulate_get(E + "stream", params={"file": name})
        assert r.status_code == 403 and r.json["error"] == EXCLUDED, (name, r.text)
        r = logs.simulate_delete(E + "clear", params={"file": name, "confirm": "true"})
        assert r.status_code == 403 and r.json["error"] == EXCLUDED, (name, r.text)
        r = logs.simulate_post(E + "search", json={"query": "secret", "files": [name]})
        assert r.status_code == 403 and r.json["error"] == EXCLUDED, (name, r.text)
    assert os.path.exists(os.path.join(os.path.dirname(logs.root_logs), "outside/secret.log"))
    for name in ("default/1/nothing.log", "kit.log.3", "other-2.log", "schedules/fires.log.1"):
        r = logs.simulate_post(E + "read", json={"file": name})
        assert r.status_code == 404 and name in r.json["error"], (name, r.text)
        assert logs.simulate_get(E + "stream", params={"file": name}).status_code == 404
        r = logs.simulate_delete(E + "clear", params={"file": name, "confirm": "true"})
        assert r.status_code == 404
    assert logs.simulate_post(E + "read", json={}).status_code == 400  # file is required


# -- read -------------------------------------------------------------------------------


def test_read_tail_head_search_and_more(api):
    text = "".join(script_line(f"e{n % 3}", f"line {n}") for n in range(1, 11))
    put(api.home.logs, "default/1/app.log", text)
    read = lambda **kw: api.simulate_post(E + "read", json={"file": "default/1/app.log", **kw})  # noqa: E731
    body = read(lines=3).json
    assert [line.rsplit(" ", 1)[1] for line in body["lines"]] == ["8", "9", "10"]
    assert body["count"] == 3 and body["more"] is True and body["truncated"] is False
    assert body["type"] == "script" and body["size"] == len(text)
    head = read(lines=2, tail=False).json
    assert [line.rsplit(" ", 1)[1] for line in head["lines"]] == ["1", "2"] and head["more"]
    everything = read().json
    assert everything["count"] == 10 and everything["more"] is False
    assert everything["lines"][0] == text.splitlines()[0]
    found = read(search="LINE 1").json["lines"]  # case-insensitive by default
    assert [line.rsplit(" ", 1)[1] for line in found] == ["1", "10"]
    assert read(search="LINE 1", caseSensitive=True).json["count"] == 0
    assert read(lines=0).status_code == 400
    assert read(lines=10001).status_code == 400


def test_read_filters_by_execution_id_including_continuation_lines(api):
    root = api.home.logs
    put(
        root,
        "default/1/app.log",
        "an orphan line before any head\n"
        + script_line("aaa", "start")
        + script_line("bbb", "other")
        + script_line(
            "aaa", "Traceback (most recent call last):\n  File x\nValueError: boom", "ERROR"
        )
        + script_line("bbb", "other again")
        + script_line("aaa", "end"),
    )
    for tail in (True, False):
        body = api.simulate_post(
            E + "read", json={"file": "default/1/app.log", "executionId": "aaa", "tail": tail}
        ).json
        assert body["lines"] == [
            script_line("aaa", "start").rstrip("\n"),
            "2026-11-28T12:00:00.123456Z ERROR [aaa] Traceback (most recent call last):",
            "  File x",
            "ValueError: boom",
            script_line("aaa", "end").rstrip("\n"),
        ], tail
    two = api.simulate_post(
        E + "read", json={"file": "default/1/app.log", "executionId": "aaa", "lines": 2}
    ).json
    assert two["lines"] == ["ValueError: boom", script_line("aaa", "end").rstrip("\n")]
    put(
        root,
        "default-1.log",
        '{"executionId":"aaa","status":200}\n{"executionId":"bbb","status":500}\nnot json aaa\n',
    )
    body = api.simulate_post(E + "read", json={"file": "default-1.log", "executionId": "aaa"}).json
    assert body["lines"] == ['{"executionId":"aaa","status":200}']
    put(root, "slow.log", 'stack of aaa\nstack of bbb\n{"executionId": "ccc", "stack": "bbb"}\n')
    body = api.simulate_post(E + "read", json={"file": "slow.log", "executionId": "bbb"}).json
    assert body["lines"] == ["stack of bbb"]  # a JSON line names its own execution
    body = api.simulate_post(E + "read", json={"file": "slow.log", "executionId": "ccc"}).json
    assert body["lines"] == ['{"executionId": "ccc", "stack": "bbb"}']


def test_a_tail_reads_blocks_from_the_end_not_the_whole_file(api):
    line = script_line("e", "x" * 100)
    path = put(api.home.logs, "default/1/big.log", line * 40_000 + script_line("e", "LAST"))
    assert os.path.getsize(path) > 4_000_000
    body = api.simulate_post(E + "read", json={"file": "default/1/big.log", "lines": 5}).json
    assert body["lines"][-1].endswith("LAST") and body["count"] == 5 and body["more"]
    assert body["scannedBytes"] <= 2 * scan.BLOCK
    # a filter that matches nothing scans up to the read budget, then says so
    service.READ_MAX_BYTES, saved = 1_000_000, service.READ_MAX_BYTES
    try:
        body = api.simulate_post(
            E + "read", json={"file": "default/1/big.log", "executionId": "none"}
        ).json
    finally:
        service.READ_MAX_BYTES = saved
    assert body["count"] == 0 and body["truncated"] is True and body["scannedBytes"] == 1_000_000


def test_lines_longer_than_the_limit_are_clipped_and_counted_once(api):
    long = "2026-11-28T12:00:00.123456Z INFO  [big] " + "y" * (scan.MAX_LINE * 3) + "\n"
    put(api.home.logs, "default/1/long.log", script_line("a", "one") + long + script_line("a", "3"))
    for tail in (True, False):
        body = api.simulate_post(E + "read", json={"file": "default/1/long.log", "tail": tail}).json
        assert body["count"] == 3, tail
        clipped = body["lines"][1]
        assert clipped.startswith("2026-11-28T12:00:00.123456Z INFO  [big] yyy")
        assert clipped.endswith(scan.CLIPPED.decode()) and len(clipped) < scan.MAX_LINE + 100
    body = api.simulate_post(E + "read", json={"file": "default/1/long.log", "executionId": "big"})
    assert body.json["count"] == 1
    r = api.simulate_post(E + "search", json={"query": "[a] 3", "files": ["default/1/long.log"]})
    assert [(x["lineNumber"], x["line"][-5:]) for x in r.json["results"]] == [(3, "[a] 3")]


# -- search -----------------------------------------------------------------------------


def test_search_substring_regex_case_files_and_limit(logs):
    root = logs.root_logs
    put(root, "default/1/hello.log", script_line("e1", "Hello World") + script_line("e2", "bye"))
    r = logs.simulate_post(E + "search", json={"query": "hello world"})
    assert r.status_code == 200, r.text
    body = r.json
    assert body["count"] == 1 and body["truncated"] is False
    (hit,) = body["results"]
    assert hit == {
        "file": "default/1/hello.log",
        "line": script_line("e1", "Hello World").rstrip("\n"),
        "lineNumber": 1,
        "executionId": "e1",
    }
    assert body["filesSearched"] == 7 and body["bytesScanned"] > 0
    assert (
        logs.simulate_post(E + "search", json={"query": "hello world", "caseSensitive": True}).json[
            "count"
        ]
        == 0
    )
    # a regex over every file; JSON logs report their executionId
    body = logs.simulate_post(E + "search", json={"regex": r'"executionId": "e\d"'}).json
    assert {(h["file"], h.get("executionId")) for h in body["results"]} == {
        ("schedules/fires.log", "e9"),
        ("default-1.log", "e1"),
    }
    assert [h["file"] for h in body["results"]] == ["schedules/fires.log", "default-1.log"]
    only = logs.simulate_post(E + "search", json={"regex": "e1", "files": ["slow.log"]}).json
    assert [h["line"] for h in only["results"]] == ["slow e1 stack"]
    typed = logs.simulate_post(E + "search", json={"query": "e1", "type": "access"}).json
    assert [h["file"] for h in typed["results"]] == ["default-1.log"]
    by_id = logs.simulate_post(E + "search", json={"query": "", "regex": None, "executionId": "e2"})
    assert by_id.status_code == 400  # an empty query
    by_id = logs.simulate_post(E + "search", json={"regex": ".", "executionId": "e2"}).json
    assert [h["line"][-3:] for h in by_id["results"]] == ["bye"]
    put(root, "slow.log", "".join(f"match {n}\n" for n in range(50)))
    limited = logs.simulate_post(E + "search", json={"query": "match", "limit": 10}).json
    assert limited["count"] == 10 and limited["truncated"] is True
    assert limited["reason"] == "limit" and "limit" in limited["note"]
    assert [h["lineNumber"] for h in limited["results"]] == list(range(1, 11))


def test_search_refuses_bad_requests(logs):
    for body in (
        {},
        {"regex": "(unclosed"},
        {"regex": "a", "query": "a"},
        {"regex": "x" * 1001},
        {"query": "a", "limit": 0},
        {"query": "a", "type": "nope"},
    ):
        r = logs.simulate_post(E + "search", json=body)
        assert r.status_code == 400, (body, r.text)
    r = logs.simulate_post(E + "search", json={"regex": "(unclosed"})
    assert "Invalid regex" in r.json["error"] and r.json["field"] == "regex"


def test_a_catastrophic_regex_is_stopped_at_the_time_budget(logs, monkeypatch):
    put(logs.root_logs, "slow.log", "a" * 5000 + "b\n" + "ok line\n")
    monkeypatch.setattr(service, "SEARCH_SECONDS", 1.0)
    started = time.monotonic()
    r = logs.simulate_post(E + "search", json={"regex": "(a+)+$", "files": ["slow.log"]})
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    body = r.json
    assert body["truncated"] is True and body["reason"] == "time" and "1 s" in body["note"]
    assert took < 3.0, took


def test_search_stops_at_its_byte_budget(logs, monkeypatch):
    put(logs.root_logs, "slow.log", "filler line\n" * 10_000)
    monkeypatch.setattr(service, "SEARCH_MAX_BYTES", 50_000)
    body = logs.simulate_post(E + "search", json={"query": "nothing matches"}).json
    assert body["truncated"] is True and body["reason"] == "bytes"
    assert body["bytesScanned"] == 50_000


# -- clear ------------------------------------------------------------------------------


def test_clear_needs_confirm(logs):
    for params in ({}, {"confirm": "false"}, {"confirm": "yes"}, {"file": "kit.log"}):
        r = logs.simulate_delete(E + "clear", params=params)
        assert r.status_code == 400, params
        assert r.json["error"] == "confirm=true parameter required for safety"
    assert os.path.getsize(os.path.join(logs.root_logs, "kit.log")) > 0


def test_clear_truncates_live_files_writers_keep_appending_and_removes_rotated(logs):
    root = logs.root_logs
    writer = capture.ScriptLog(os.path.join(root, "default/1/hello.log"))
    writer.write(20, "e7", "before")
    r = logs.simulate_delete(E + "clear", params={"file": "default/1/hello.log", "confirm": "true"})
    assert r.status_code == 200, r.text
    body = r.json
    assert body["count"] == 1 and body["cleared"][0]["action"] == "truncated"
    assert body["cleared"][0]["bytes"] > 0 and body["bytes"] == body["cleared"][0]["bytes"]
    writer.write(20, "e7", "after")  # the writer's O_APPEND descriptor writes at the new end
    writer.close()
    with open(os.path.join(root, "default/1/hello.log")) as fh:
        content = fh.read()
    assert content.startswith("2026") and "after" in content and "before" not in content
    # a type: its live files truncated, its rotated ones removed
    body = logs.simulate_delete(E + "clear", params={"type": "kit", "confirm": "true"}).json
    assert {(c["file"], c["action"]) for c in body["cleared"]} == {
        ("kit.log", "truncated"),
        ("slow.log", "truncated"),
        ("kit.log.1", "removed"),
    }
    assert not os.path.exists(os.path.join(root, "kit.log.1"))
    assert os.path.getsize(os.path.join(root, "kit.log")) == 0
    assert os.path.getsize(os.path.join(root, "default-1.log")) > 0  # other types untouched
    r = logs.simulate_delete(
        E + "clear", params={"file": "kit.log", "type": "access", "confirm": "true"}
    )
    assert r.status_code == 400


def test_clear_older_than_days_only_touches_old_files(logs):
    root = logs.root_logs
    put(root, "default/1/hello.log.1", "old rotated\n", age=3 * 86400)
    put(root, "default-1.log", "old live\n", age=2 * 86400)
    body = logs.simulate_delete(E + "clear", params={"olderThanDays": "1", "confirm": "true"}).json
    assert {(c["file"], c["action"]) for c in body["cleared"]} == {
        ("default/1/hello.log.1", "removed"),
        ("default-1.log", "truncated"),
    }
    assert os.path.getsize(os.path.join(root, "kit.log")) > 0
    assert os.path.exists(os.path.join(root, "kit.log.1"))  # an hour old only
    assert (
        logs.simulate_delete(
            E + "clear", params={"olderThanDays": "-1", "confirm": "true"}
        ).status_code
        == 400
    )
    everything = logs.simulate_delete(E + "clear", params={"confirm": "1"}).json
    assert everything["count"] >= 5
    assert all(
        f["size"] == 0 and not f["rotated"] for f in logs.simulate_get(E + "list").json["logs"]
    )


# -- stream -----------------------------------------------------------------------------


def test_stream_without_follow_sends_the_last_lines_then_ends(api):
    put(api.home.logs, "default/1/app.log", "".join(script_line("e", f"n{n}") for n in range(30)))
    r = api.simulate_get(E + "stream", params={"file": "default/1/app.log"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    got = events(r.content)
    assert got[0] == (
        "open",
        {
            "file": "default/1/app.log",
            "type": "script",
            "follow": False,
            "size": os.path.getsize(os.path.join(api.home.logs, "default/1/app.log")),
        },
    )
    lines = [data["line"] for kind, data in got if kind == "line"]
    assert len(lines) == 20 and lines[-1].endswith("n29") and lines[0].endswith("n10")
    assert all(data.get("executionId") == "e" for kind, data in got if kind == "line")
    assert got[-1] == ("end", {"file": "default/1/app.log", "count": 20})
    few = api.simulate_get(E + "stream", params={"file": "default/1/app.log", "lines": "2"})
    assert [d["line"][-3:] for k, d in events(few.content) if k == "line"] == ["n28", "n29"]
    assert api.simulate_get(E + "stream").status_code == 400  # file is required


class Follow:
    """Drive a followed stream directly: the service's own iterator."""

    def __init__(self, svc: LogsService, name: str, **kw) -> None:
        self.svc = svc
        self.name = name
        self.kw = {"follow": True, "backlog": 20, "execution_id": None, **kw}
        self.it = None
        self.seen: list[tuple[str, object]] = []

    async def __aenter__(self) -> Follow:
        f = self.svc.files.resolve(self.name)
        self.it = await self.svc.stream(f, **self.kw)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.it.aclose()

    async def until(self, predicate, timeout: float = 3.0) -> list[tuple[str, object]]:
        deadline = time.monotonic() + timeout
        while not predicate(self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in {timeout}s: {self.seen}"
            chunk = await asyncio.wait_for(anext(self.it), left)
            self.seen += events(chunk)
        return self.seen


def lines_of(seen) -> list[str]:
    return [data["line"] for kind, data in seen if kind == "line"]


def test_follow_new_lines_rotation_truncation_heartbeat_and_shutdown(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "POLL", 0.02)
    monkeypatch.setattr(service, "HEARTBEAT", 0.2)
    monkeypatch.setattr(service, "ROTATION_GRACE", 0.3)
    root = str(tmp_path / "logs")
    path = put(root, "default/1/app.log", script_line("e0", "old"))
    svc = LogsService(root)

    async def scenario() -> None:
        writer = capture.ScriptLog(path)
        async with Follow(svc, "default/1/app.log") as f:
            await f.until(lambda s: bool(s) and s[0][0] == "open")
            assert lines_of(f.seen) == [script_line("e0", "old").rstrip("\n")]
            assert svc.following == 1
            started = time.monotonic()
            writer.write(20, "e1", "new line")
            await f.until(lambda s: any(x.endswith("new line") for x in lines_of(s)))
            assert time.monotonic() - started < 1.0
            # rotation: the file is renamed to .1 and a new one created
            os.replace(path, path + ".1")
            writer.write(20, "e1", "late write to the renamed file")
            with open(path, "w") as fh:
                fh.write(script_line("e2", "in the new file"))
            await f.until(
                lambda s: (
                    {"late write to the renamed file", "in the new file"}
                    <= {x.rsplit("] ", 1)[1] for x in lines_of(s)}
                )
            )
            assert ("rotated", {"file": "default/1/app.log"}) in f.seen
            # truncation (logs/clear): read again from the start
            os.truncate(path, 0)
            with open(path, "a") as fh:
                fh.write(script_line("e3", "after clear"))
            await f.until(lambda s: any(x.endswith("after clear") for x in lines_of(s)))
            assert ("truncated", {"file": "default/1/app.log"}) in f.seen
            await f.until(lambda s: (":", "ping") in s, timeout=2)
            await svc.stop()
            await f.until(lambda s: s[-1][0] == "end")
        assert svc.following == 0
        writer.close()

    asyncio.run(scenario())


def test_follow_by_execution_id(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "POLL", 0.02)
    root = str(tmp_path / "logs")
    path = put(root, "default/1/app.log", script_line("a", "a0") + script_line("b", "b0"))
    svc = LogsService(root)

    async def scenario() -> None:
        async with Follow(svc, "default/1/app.log", execution_id="b") as f:
            with open(path, "a") as fh:
                fh.write(script_line("a", "a1") + script_line("b", "b1\nmore of b1"))
                fh.write(script_line("a", "a2"))
            await f.until(lambda s: any(x == "more of b1" for x in lines_of(s)))
            await asyncio.sleep(0.1)
        assert [x.rsplit("] ", 1)[-1] for x in lines_of(f.seen)] == ["b0", "b1", "more of b1"]

    asyncio.run(scenario())


# -- the kit log ------------------------------------------------------------------------


def test_kit_log_handler_writes_kit_records_not_scripts_and_rotates(tmp_path):
    path = str(tmp_path / "logs" / "kit.log")
    handler = kitlog.KitLogHandler(path, max_bytes=300, backups=2)
    logger = logging.getLogger("hoodyexec.test-kitlog")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("kit record %s", 1)
        console = capture.Console(capture.ScriptLog(str(tmp_path / "script.log")), "x1")
        token = capture.current.set(console)
        try:
            logger.warning("a script's own record")
        finally:
            capture.current.reset(token)
        with open(path) as fh:
            (line,) = fh.read().splitlines()
        stamp, pid, level, rest = line.split(" ", 3)
        assert stamp.endswith("Z") and stamp[4] == "-" and stamp[10] == "T"
        assert pid == f"[{os.getpid()}]" and level == "INFO"
        assert rest == "hoodyexec.test-kitlog: kit record 1"
        for n in range(40):
            logger.info("filler %s %s", n, "x" * 40)
            if n % 10 == 9:
                handler.file._checked -= 2  # as if a second passed: check the size now
        logger.info("last")
        assert os.path.exists(path + ".1") and os.path.exists(path + ".2")
        assert not os.path.exists(path + ".3")
        with open(path) as fh:
            assert fh.read().endswith(": last\n")
    finally:
        logger.removeHandler(handler)
        handler.file.close()


def test_kit_log_gets_a_descriptor_of_its_own_in_a_forked_child(tmp_path):
    path = str(tmp_path / "kit.log")
    handler = kitlog.KitLogHandler(path)
    handler.emit(logging.makeLogRecord({"msg": "parent", "name": "hoodyexec.t"}))
    parent_file = handler.file
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            if handler.file is not parent_file:
                handler.emit(logging.makeLogRecord({"msg": "child", "name": "hoodyexec.t"}))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handler.file is parent_file
    with open(path) as fh:
        assert [line.rsplit(": ", 1)[1] for line in fh.read().splitlines()] == ["parent", "child"]
    handler.file.close()


def test_log_files_listing_skips_what_vanishes(tmp_path):
    files = LogFiles(str(tmp_path / "nothing-here"))
    assert files.listing() == []


def test_search_with_no_log_files_finds_nothing(api):
    body = api.simulate_post(E + "search", json={"regex": "(a+)+$"}).json
    assert body["count"] == 0 and body["filesSearched"] == 0 and body["truncated"] is False
    assert api.simulate_get(E + "list").json == {
        "success": True,
        "logs": [],
        "count": 0,
        "total": 0,
    }


def test_an_unwritable_kit_log_is_reported_once(tmp_path, capsys):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    handler = kitlog.KitLogHandler(str(blocker / "kit.log"))
    for n in range(3):
        handler.emit(logging.makeLogRecord({"msg": f"record {n}", "name": "hoodyexec.t"}))
    assert capsys.readouterr().err.count("Logging error") == 1
