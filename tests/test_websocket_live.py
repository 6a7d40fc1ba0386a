"""WebSocket scripts against live kits, over real sockets with the ``websockets``
client: echo, injection, @token and @cors on the handshake, 426 for plain HTTP,
1011 on a raise, 1009 over the message limit, 1001 when idle and on a reload,
the monitor counters and scripts/list?websocket=true."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from .kit import Kit

pytestmark = pytest.mark.slow

E = "/api/v1/exec/"

ECHO = """# @websocket
# @description Echo
async def websocket(ws):
    print("echo open")
    async for message in ws:
        if message == "json":
            await ws.send({"a": [1, 2], "s": "é"})
        else:
            await ws.send(message)
"""

ROOM = """# @websocket
def GET(room):
    return {"room": room, "http": True}


async def websocket(ws, room, shared, metadata, req):
    n = shared.incr(f"joins.{room}")
    await ws.send({"room": room, "joins": n, "script": metadata.script, "q": req.query.get("q")})
    await ws.close(4000, "bye")
"""

TOKEN = """# @websocket
# @token s3cret
async def websocket(ws):
    await ws.send("in")
"""

CORS = """# @websocket
# @cors https://good.example
async def websocket(ws):
    await ws.send("in")
"""

BOOM = """# @websocket
async def websocket(ws):
    await ws.receive()
    raise RuntimeError("kaput")
"""

SLOW = """# @websocket
# @timeout 200
async def websocket(ws):
    async for message in ws:
        await ws.send(message)
"""

WAIT = """# @websocket
async def websocket(ws):
    await ws.send("ready")
    print("closed:", await ws.receive())
"""


def readme_example() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    found = re.search(r"```python\n(# rooms/\[room\]\.py\n.*?)```", readme, re.S)
    assert found is not None
    return found.group(1)


def write(kit: Kit, path: str, content: str) -> None:
    r = kit.request("POST", E + "scripts/write", {"path": path, "content": content})
    assert r.status in (200, 201), r.body


def url(kit: Kit, path: str) -> str:
    return f"ws://127.0.0.1:{kit.port}{path}"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def refused(kit: Kit, path: str, **kw: Any) -> int:
    """The HTTP status a refused handshake got."""
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(url(kit, path), open_timeout=5, **kw):
            pass
    return info.value.response.status_code


async def closed_with(ws: Any, timeout: float = 10) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    rcvd = info.value.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd.code, rcvd.reason


def stats(kit: Kit) -> dict[str, int]:
    return kit.get(E + "monitor/stats").json()["websocket"]


def test_websocket_scripts_end_to_end(kit):
    for path, content in [
        ("ws/echo.py", ECHO),
        ("chat/[room].py", ROOM),
        ("rooms/[room].py", readme_example()),
        ("ws/token.py", TOKEN),
        ("ws/cors.py", CORS),
        ("ws/boom.py", BOOM),
    ]:
        write(kit, path, content)

    async def scenario() -> None:
        # echo: text, bytes, JSON; print() reaches the script log
        async with connect(url(kit, "/ws/echo"), close_timeout=2) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            await ws.send("json")
            assert json.loads(await ws.recv()) == {"a": [1, 2], "s": "é"}
            while stats(kit)["open"] != 1:  # the other worker may answer first
                await asyncio.sleep(0.05)
        # injection: route params, shared, metadata, req; a close code of the script's
        for expected in (1, 2):
            async with connect(url(kit, "/chat/blue?q=x"), close_timeout=2) as ws:
                assert json.loads(await ws.recv()) == {
                    "room": "blue",
                    "joins": expected,
                    "script": "chat/[room].py",
                    "q": "x",
                }
                assert await closed_with(ws) == (4000, "bye")
        # @token: missing and wrong refused, right accepted (query or header)
        assert await refused(kit, "/ws/token") == 403
        assert await refused(kit, "/ws/token?token=nope") == 403
        async with connect(url(kit, "/ws/token?token=s3cret")) as ws:
            assert await ws.recv() == "in"
        headers = {"Authorization": "Bearer s3cret"}
        async with connect(url(kit, "/ws/token"), additional_headers=headers) as ws:
            assert await ws.recv() == "in"
        # @cors: a page of another origin is refused; the listed one and a
        # client without Origin (not a browser) are not
        assert await refused(kit, "/ws/cors", origin="https://evil.example") == 403
        async with connect(url(kit, "/ws/cors"), origin="https://good.example") as ws:
            assert await ws.recv() == "in"
        async with connect(url(kit, "/ws/cors")) as ws:
            assert await ws.recv() == "in"
        # not a WebSocket script, no script, the kit's own paths: refused
        for path in ("/hello", "/nothing-here", E + "health", "/openapi.json"):
            assert await refused(kit, path) == 403, path
        # the README's example
        async with connect(url(kit, "/rooms/blue"), close_timeout=2) as ws:
            await ws.send("hi")
            assert json.loads(await ws.recv()) == {"room": "blue", "n": 1, "echo": "hi"}
        # a script that raises: 1011, its traceback in its log, the worker serves on
        async with connect(url(kit, "/ws/boom"), close_timeout=2) as ws:
            await ws.send("go")
            code, reason = await closed_with(ws)
            assert (code, reason) == (1011, "RuntimeError in the script")

    run(scenario())
    # plain HTTP to a websocket-only script: 426, JSON, Upgrade header
    r = kit.get("/ws/echo")
    assert r.status == 426 and r.headers["upgrade"] == "websocket"
    assert r.json()["error"] == "This script only accepts WebSocket connections"
    assert kit.get("/chat/blue").json() == {"room": "blue", "http": True}
    for _ in range(4):  # both workers still answer HTTP
        assert kit.get("/hello?name=x").status == 200
    assert kit.get("/rooms/blue").json() == {"room": "blue", "messages": 1}
    logs = kit.home / "logs/default/1"
    assert "echo open" in (logs / "ws/echo.log").read_text()
    boom = (logs / "ws/boom.log").read_text()
    assert "RuntimeError: kaput" in boom and 'boom.py", line 4' in boom
    assert "origin 'https://evil.example' not allowed" in (logs / "ws/cors.log").read_text()
    assert "missing or invalid token" in (logs / "ws/token.log").read_text()
    # counters, summed over the workers: 9 sessions accepted, none open
    counts = stats(kit)
    assert counts["open"] == 0 and counts["total"] == 9
    assert (counts["received"], counts["sent"]) == (5, 10)
    assert counts["messages"] == 15
    # the listing filter
    listed = kit.get(E + "scripts/list?websocket=true").json()
    names = sorted(s["path"] for s in listed["scripts"])
    for path, shape in [("ws/echo.py", "websocket"), ("chat/[room].py", "methods")]:
        assert kit.get(E + f"scripts/read?path={path}").json()["shape"] == shape
    assert names == [
        "chat/[room].py",
        "rooms/[room].py",
        "ws/boom.py",
        "ws/cors.py",
        "ws/echo.py",
        "ws/token.py",
    ]
    assert "Error in WebSocket" not in kit.log()


def test_message_limit_idle_timeout_and_timeout_not_cutting_a_socket(make_kit):
    kit = make_kit(
        args=["--websocket-max-message-size", "1024", "--websocket-idle-timeout", "1"]
    ).start()
    write(kit, "slow.py", SLOW)

    async def scenario() -> None:
        # a message over the limit: 1009, before the script reads it
        async with connect(url(kit, "/slow"), close_timeout=2) as ws:
            await ws.send("x" * 1024)
            assert await ws.recv() == "x" * 1024
            await ws.send("x" * 1025)
            code, _ = await closed_with(ws)
            assert code == 1009
        # messages every 0.3 s keep a socket open for 2 s: longer than both the
        # idle timeout (1 s) and @timeout (200 ms); then silence closes it with 1001
        async with connect(url(kit, "/slow"), close_timeout=2, ping_interval=None) as ws:
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                await ws.send("beat")
                assert await ws.recv() == "beat"
                quiet = time.monotonic()  # the last message either way
                await asyncio.sleep(0.3)
            assert await closed_with(ws, timeout=5) == (1001, "idle for 1 s")
            assert 0.8 <= time.monotonic() - quiet < 2.5

    run(scenario())


def test_reload_closes_open_sockets_with_1001(make_kit):
    kit = make_kit(graceful_timeout=20).start()
    write(kit, "wait.py", WAIT)

    async def scenario() -> float:
        async with connect(url(kit, "/wait"), close_timeout=2) as ws:
            assert await ws.recv() == "ready"
            sent = time.monotonic()
            kit.signal(signal.SIGHUP)
            assert await closed_with(ws, timeout=15) == (1001, "server shutting down")
            return time.monotonic() - sent

    took = run(scenario())
    assert took < 5, took  # told at once, not after the 20 s graceful timeout
    kit.wait_healthy()

    async def after() -> None:  # the new workers serve sockets
        async with connect(url(kit, "/wait"), close_timeout=2) as ws:
            assert await ws.recv() == "ready"

    run(after())
    log = (kit.home / "logs/default/1/wait.log").read_text()
    assert "closed: None" in log and "WebSocket closed by the kit: 1001" in log
