"""Logs against live kits over real HTTP (marked slow): following a script's log
while requests write it, across rotation; the kit log of every process."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from ..kit import Kit

pytestmark = pytest.mark.slow

E = "/api/v1/exec/"
CHATTY = (
    "# @log-level info\n"
    "n = metadata.query.get('n')\n"
    "print('said', n, 'x' * int(metadata.query.get('pad', '0')))\n"
    "return {'ok': True, 'n': n}\n"
)


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


class Events:
    """A ``logs/stream`` response read event by event."""

    def __init__(self, kit: Kit, query: str, timeout: float = 5.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=timeout)
        self.conn.request("GET", E + "logs/stream?" + query)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        assert self.resp.getheader("content-type", "").startswith("text/event-stream")
        self.seen: list[tuple[str, object]] = []

    def next(self) -> tuple[str, object]:
        fields: dict[str, str] = {}
        while True:
            raw = self.resp.readline()
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                event: tuple[str, object] = (":", line[1:].strip())
                break
            if not line:
                if fields:
                    event = (fields["event"], json.loads(fields["data"]))
                    break
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        self.seen.append(event)
        return event

    def until(self, predicate, timeout: float = 5.0) -> float:
        """Read until ``predicate(seen)``; the seconds it took."""
        started = time.monotonic()
        while not predicate(self.seen):
            assert time.monotonic() - started < timeout, self.seen[-20:]
            self.next()
        return time.monotonic() - started

    def lines(self) -> list[str]:
        return [data["line"] for kind, data in self.seen if kind == "line"]

    def close(self) -> None:
        self.conn.close()


def said(lines: list[str]) -> set[str]:
    return {line.split("said ", 1)[1].split(" ")[0] for line in lines if "said " in line}


def kit_log(kit: Kit) -> str:
    path = kit.home / "logs" / "kit.log"
    return path.read_text() if path.exists() else ""


def test_a_followed_script_log_gets_a_new_line_within_a_second_and_ends_with_the_client(
    make_kit,
):
    kit = make_kit(workers=2).start()
    write(kit, "chatty.py", CHATTY)
    assert kit.get("/chatty?n=0").status == 200
    stream = Events(kit, "file=default/1/chatty.log&follow=true")
    try:
        stream.until(lambda seen: "0" in said(stream.lines()))
        assert stream.seen[0][0] == "open" and stream.seen[0][1]["follow"] is True
        started = time.monotonic()
        r = kit.get("/chatty?n=1")
        assert r.status == 200
        stream.until(lambda seen: "1" in said(stream.lines()))
        assert time.monotonic() - started < 1.0
        (line,) = [x for x in stream.lines() if "said 1" in x]
        assert f"[{r.headers['x-execution-id']}]" in line
        # the access log of the instance is listed and readable by execution
        listed = kit.get(E + "logs/list?type=access").json()["logs"]
        assert [x["file"] for x in listed] == ["default-1.log"]
        one = kit.request(
            "POST",
            E + "logs/read",
            {"file": "default-1.log", "executionId": r.headers["x-execution-id"]},
        ).json()
        assert one["count"] == 1 and json.loads(one["lines"][0])["path"] == "/chatty"
    finally:
        stream.close()
    deadline = time.monotonic() + 10
    while "stopped following default/1/chatty.log" not in kit_log(kit):
        assert time.monotonic() < deadline, kit_log(kit)[-2000:]
        time.sleep(0.1)


def test_rotation_under_a_small_log_max_bytes_is_listed_and_followed(make_kit):
    kit = make_kit(workers=2, args=["--log-max-bytes", "2000"]).start()
    write(kit, "chatty.py", CHATTY)
    assert kit.get("/chatty?n=0&pad=150").status == 200
    stream = Events(kit, "file=default/1/chatty.log&follow=true&lines=5")
    try:
        stream.until(lambda seen: "0" in said(stream.lines()))
        sent = {str(n) for n in range(1, 41)}
        for n in sorted(sent, key=int):
            assert kit.get(f"/chatty?n={n}&pad=150").status == 200
            time.sleep(0.08)
        stream.until(lambda seen: sent <= said(stream.lines()), timeout=6)
        assert ("rotated", {"file": "default/1/chatty.log"}) in stream.seen
    finally:
        stream.close()
    listed = {x["file"]: x for x in kit.get(E + "logs/list?type=script").json()["logs"]}
    assert listed["default/1/chatty.log.1"]["rotated"] is True
    assert listed["default/1/chatty.log"]["size"] < 2000 + 2 * 1000  # about a second's worth over
    assert (kit.home / "logs/default/1/chatty.log.1").exists()


def test_kit_log_has_the_master_workers_and_control_worker_but_no_script_output(kit):
    health = kit.wait_healthy()
    write(
        kit,
        "marker.py",
        "import logging\n"
        "print('PRINTED-MARKER')\n"
        "logging.getLogger('hoodyexec.fake').warning('LOGGED-MARKER')\n"
        "return {'ok': True}\n",
    )
    write(kit, "tick.py", "# @schedule 0 0 1 1 *\nreturn {'ok': True}\n")
    assert kit.get("/marker").status == 200
    r = kit.request("POST", E + "schedules/trigger", {"scriptPath": "tick.py"})
    assert r.status == 200 and r.json()["status"] == "ok", r.body
    pids = [health["master"], health["control"], *health["workers"]]
    deadline = time.monotonic() + 5
    while True:
        body = kit.request("POST", E + "logs/read", {"file": "kit.log", "lines": 2000}).json()
        text = "\n".join(body["lines"])
        missing = [pid for pid in pids if f" [{pid}] " not in text]
        if not missing and "schedule default/1/tick.py (manual): ok" in text:
            break
        assert time.monotonic() < deadline, (missing, text[-3000:])
        time.sleep(0.1)
    assert "INFO gunicorn.error: Booting worker with pid" in text
    assert "INFO hoodyexec.control: control worker" in text
    assert "PRINTED-MARKER" not in text and "LOGGED-MARKER" not in text
    script = kit.request("POST", E + "logs/read", {"file": "default/1/marker.log"}).json()
    assert any("PRINTED-MARKER" in x for x in script["lines"])
    assert any("LOGGED-MARKER" in x for x in script["lines"])
    listed = {x["file"]: x["type"] for x in kit.get(E + "logs/list").json()["logs"]}
    assert listed["kit.log"] == "kit" and listed["schedules/fires.log"] == "schedule"
    found = kit.request("POST", E + "logs/search", {"query": "printed-marker"}).json()
    assert [h["file"] for h in found["results"]] == ["default/1/marker.log"]
