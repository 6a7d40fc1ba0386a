"""Slow, lying and oversized clients: what a request worker holds and for how long.

The real-kit tests speak raw HTTP over sockets; the others run the gateway
in-process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import psutil
import pytest

from hoodyexec.http.auth import TokenCheck
from hoodyexec.http.gateway import MANAGEMENT_BODY_LIMIT, create_gateway

from .kit import Kit

TOKEN = "s3cret"
HEADER_TIMEOUT = 2
WRITE = "/api/v1/exec/scripts/write"
MiB = 1024 * 1024


# -- helpers ------------------------------------------------------------------
def connect(kit: Kit, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", kit.port), timeout=timeout)


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, headers, body); status 0 if the server closed first."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return 0, {}, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    except ConnectionResetError:
        return 0, {}, data
    return int(lines[0].split(" ", 2)[1]), headers, body


def wait_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return "\r\n".join(lines).encode()


def worker_pid(kit: Kit) -> int:
    health = kit.wait_healthy()
    (pid,) = health["workers"]
    return pid


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def stream_chunked(s: socket.socket, total: int, piece: int = 256 * 1024) -> threading.Thread:
    """Send a chunked body of ``total`` bytes in the background, until refused."""
    frame = b"%x\r\n" % piece + b"x" * piece + b"\r\n"

    def run() -> None:
        try:
            for _ in range(total // piece):
                s.sendall(frame)
            s.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed: expected
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    """One worker, a management token, a short header timeout."""
    home = tmp_path_factory.mktemp("hardening") / "home"
    kit = Kit(home, workers=1, args=["--token", TOKEN, "--header-timeout", str(HEADER_TIMEOUT)])
    kit.start()
    yield kit
    kit.stop()


# -- 2: management bodies are checked before they are read --------------------
def test_token_check_is_one_predicate():
    check = TokenCheck("t")
    for public in ["/api/v1/exec/health", "/openapi.json", "/openapi.yaml"]:
        check.check(public, None)
    with pytest.raises(Exception) as exc:
        check.check("/api/v1/exec/list", "Bearer nope")
    assert getattr(exc.value, "status", None) == 401
    check.check("/api/v1/exec/list", "Bearer t")
    check.check("/api/v1/exec/list", "bearer  t ")
    TokenCheck(None).check("/api/v1/exec/list", None)


def test_gateway_answers_401_itself_without_reading_the_body(tmp_path):
    """No control worker here: a 401 can only come from the gateway."""

    async def main() -> None:
        gateway = create_gateway(
            str(tmp_path / "none.sock"), pid=5, link_client=False, connect_timeout=0.2, token="t"
        )
        async with falcon.testing.ASGIConductor(gateway) as c:
            r = await c.simulate_post(WRITE, json={"path": "a.py", "content": "return 1"})
            assert r.status_code == 401 and "token" in r.json["error"]
            r = await c.simulate_post(WRITE, json={}, headers={"Authorization": "Bearer t"})
            assert r.status_code == 503  # past the gate: forwarded
            r = await c.simulate_get("/api/v1/exec/health")
            assert r.status_code == 503  # health is public
            r = await c.simulate_get("/openapi.json")
            assert r.status_code == 503

    asyncio.run(main())


def test_gateway_stops_reading_a_chunked_body_at_the_limit(tmp_path):
    gateway = create_gateway(str(tmp_path / "none.sock"), pid=5, link_client=False)
    piece = b"x" * MiB
    calls = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 200:  # a reader that never stops
            raise AssertionError("read far past the limit")
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": WRITE,
        "raw_path": WRITE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"x"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(gateway(scope, receive, send))
    assert sent[0]["status"] == 413
    assert calls == MANAGEMENT_BODY_LIMIT // MiB + 1


@pytest.mark.slow
def test_unauthenticated_chunked_body_is_401_at_once_and_never_buffered(guarded):
    pid = worker_pid(guarded)
    reset_peak_rss(pid)
    before = psutil.Process(pid).memory_info().rss
    s = connect(guarded)
    t0 = time.monotonic()
    s.sendall(head("POST", WRITE, "Transfer-Encoding: chunked", "Content-Type: application/json"))
    sender = stream_chunked(s, 40 * MiB)
    status, _, body = read_response(s)
    took = time.monotonic() - t0
    s.close()
    sender.join(10)
    assert status == 401 and "token" in json.loads(body)["error"]
    assert took < 1.0, took
    grew = peak_rss(pid) - before
    assert grew < 8 * MiB, f"worker grew {grew / MiB:.1f} MiB"
    assert guarded.get("/api/v1/exec/health").status == 200


@pytest.mark.slow
def test_authenticated_chunked_body_over_the_limit_is_413_without_holding_more(guarded):
    pid = worker_pid(guarded)
    reset_peak_rss(pid)
    before = psutil.Process(pid).memory_info().rss
    s = connect(guarded)
    t0 = time.monotonic()
    s.sendall(
        head(
            "POST",
            WRITE,
            f"Authorization: Bearer {TOKEN}",
            "Transfer-Encoding: chunked",
            "Content-Type: application/json",
        )
    )
    sender = stream_chunked(s, 2 * MANAGEMENT_BODY_LIMIT)
    status, _, body = read_response(s)
    took = time.monotonic() - t0
    s.close()
    sender.join(10)
    assert status == 413 and "over" in json.loads(body)["error"]
    assert took < 5.0, took
    # The limit's worth of chunks at most, never the whole body (nor a copy of it).
    grew = peak_rss(pid) - before
    assert grew < MANAGEMENT_BODY_LIMIT + 16 * MiB, f"worker grew {grew / MiB:.1f} MiB"
    assert guarded.get("/api/v1/exec/health").status == 200


# -- 8: slow and lying clients ------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/hello", (), 413),
        (WRITE, (f"Authorization: Bearer {TOKEN}",), 413),
        (WRITE, (), 401),
    ],
)
def test_declared_body_over_the_limit_is_refused_at_once(guarded, path, extra, status):
    s = connect(guarded, timeout=5)
    t0 = time.monotonic()
    s.sendall(head("POST", path, "Content-Length: 20000000000", *extra))
    got, headers, body = read_response(s)
    took = time.monotonic() - t0
    s.close()
    assert got == status, body
    assert headers["content-type"].startswith("application/json") and json.loads(body)["error"]
    assert took < 1.0, took


@pytest.mark.slow
def test_trickled_head_and_idle_socket_are_closed_after_header_timeout(guarded):
    idle = connect(guarded)
    trickle = connect(guarded)
    stop = threading.Event()

    def dribble() -> None:
        for byte in head("GET", "/hello", "X-Pad: " + "a" * 200):
            if stop.wait(0.5):
                return
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return

    t0 = time.monotonic()
    threading.Thread(target=dribble, daemon=True).start()
    # the kit still serves others meanwhile
    r = guarded.get("/hello?name=x", timeout=2)
    assert r.status == 200 and r.json() == {"hi": "x"}
    assert wait_closed(trickle) == b""
    trickled = time.monotonic() - t0
    assert wait_closed(idle) == b""
    idled = time.monotonic() - t0
    stop.set()
    for s in (idle, trickle):
        s.close()
    assert HEADER_TIMEOUT - 0.5 < trickled < HEADER_TIMEOUT + 1.5, trickled
    assert HEADER_TIMEOUT - 0.5 < idled < HEADER_TIMEOUT + 1.5, idled


@pytest.mark.slow
def test_next_head_on_a_kept_alive_connection_is_due_within_header_timeout(guarded):
    s = connect(guarded)
    s.sendall(head("GET", "/hello"))
    status, headers, _ = read_response(s)
    assert status == 200 and headers.get("connection") != "close"
    t0 = time.monotonic()
    s.sendall(b"GET /hel")  # a head begun, never finished
    assert wait_closed(s) == b""
    took = time.monotonic() - t0
    s.close()
    assert took < HEADER_TIMEOUT + 1.5, took


@pytest.mark.slow
def test_stalled_or_trickled_body_is_bounded_and_never_runs_the_script(make_kit, tmp_path):
    timeout = 3
    kit = make_kit(workers=1, args=["--timeout", str(timeout)]).start()
    marker = tmp_path / "ran.txt"
    script = kit.home / "scripts/default/1/record.py"
    script.write_text(f"open({str(marker)!r}, 'a').write(req.raw.decode() + '\\n')\nreturn 'ok'\n")
    post = head("POST", "/record", "Content-Type: text/plain", "Content-Length: 100")

    stalled = connect(kit)
    stalled.sendall(post + b"0123456789")
    trickled = connect(kit)
    trickled.sendall(post)
    stop = threading.Event()

    def dribble() -> None:
        for _ in range(100):
            if stop.wait(0.25):
                return
            try:
                trickled.send(b"x")
            except OSError:
                return

    t0 = time.monotonic()
    threading.Thread(target=dribble, daemon=True).start()
    assert wait_closed(stalled) == b""
    stalled_for = time.monotonic() - t0
    assert wait_closed(trickled) == b""
    trickled_for = time.monotonic() - t0
    stop.set()
    stalled.close()
    trickled.close()
    assert timeout - 0.5 < stalled_for < timeout + 1.5, stalled_for
    assert timeout - 0.5 < trickled_for < timeout + 1.5, trickled_for
    assert not marker.exists(), marker.read_text()  # no script saw a truncated body
    r = kit.request("POST", "/record", body="whole", headers={"Content-Type": "text/plain"})
    assert r.status == 200 and marker.read_text() == "whole\n"


# -- 14: WebSocket upgrades ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("path", ["/hello", "/api/v1/exec/health", "/api/v1/exec/list"])
def test_websocket_upgrade_is_refused_with_403_not_500(guarded, path):
    s = connect(guarded, timeout=5)
    s.sendall(
        head(
            "GET",
            path,
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        )
    )
    status, _, _ = read_response(s)
    s.close()
    assert status == 403
    assert "Error in WebSocket" not in guarded.log()
    assert guarded.get("/api/v1/exec/health").status == 200
