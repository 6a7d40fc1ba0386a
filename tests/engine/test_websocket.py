"""WebSocket scripts in the engine: how ``# @websocket`` scripts compile, the
``ws`` wrapper over a transport, and a session's closing rules (no HTTP here;
tests/test_websocket_live.py drives a real kit with a real client)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hoodyexec.engine import compiler
from hoodyexec.engine import websocket as wsmod
from hoodyexec.engine.compiler import ScriptLoadError
from hoodyexec.engine.websocket import Session, Sockets, WebSocket, WebSocketClosed
from hoodyexec.errors import HoodyError


def load(src: str, route_params: tuple[str, ...] = ()) -> compiler.Script:
    return compiler.load("/x/s.py", "s.py", (1, 1, 1), src, route_params=route_params)


# -- compiling ----------------------------------------------------------------------
def test_websocket_only_script_has_its_shape_and_answers_http_with_426():
    script = load("# @websocket\nasync def websocket(ws, room, shared):\n    pass\n", ("room",))
    assert script.shape == "websocket"
    assert script.ws is not None
    assert [(p.name, p.source) for p in script.ws.params] == [
        ("ws", "ws"),
        ("room", "route"),
        ("shared", "shared"),
    ]
    entry = script.entry_for("GET")
    assert entry is not None
    with pytest.raises(HoodyError) as info:
        entry.fn()
    assert info.value.status == 426 and info.value.headers == {"Upgrade": "websocket"}


def test_websocket_beside_http_entries_keeps_their_shape():
    script = load("# @websocket\ndef GET(req):\n    return 1\nasync def websocket(ws):\n    pass\n")
    assert script.shape == "methods" and list(script.entries) == ["GET"]
    assert script.ws is not None and script.ws.fn.__name__ == "websocket"


def test_without_the_magic_comment_websocket_is_an_ordinary_function():
    script = load("async def websocket(ws):\n    pass\n")
    assert script.shape == "body" and script.ws is None


@pytest.mark.parametrize(
    "src, fragment",
    [
        ("# @websocket\nreturn 1\n", "define `async def websocket(ws, ...)`"),
        ("# @websocket\ndef handler():\n    return 1\n", "define `async def websocket"),
        ("# @websocket\nasync def websocket(ws):\n    pass\nreturn 1\n", "body-mode"),
        ("# @websocket\ndef handler():\n    pass\ndef websocket(ws):\n    pass\n", "async def"),
        ("# @websocket\nasync def websocket(ws, nope):\n    pass\n", "'nope'"),
    ],
)
def test_websocket_scripts_that_cannot_serve_fail_to_load(src, fragment):
    with pytest.raises(ScriptLoadError) as info:
        load(src)
    assert fragment in info.value.message


def test_ws_is_injectable_only_into_websocket():
    with pytest.raises(ScriptLoadError, match="cannot inject parameter 'ws'"):
        load("# @websocket\ndef handler(ws):\n    pass\nasync def websocket(ws):\n    pass\n")


# -- the ws wrapper -------------------------------------------------------------------
class FakeTransport:
    def __init__(self, incoming: list[str | bytes]) -> None:
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        for item in incoming:
            self.incoming.put_nowait(item)
        self.sent: list[str | bytes] = []
        self.closes: list[tuple[int, str]] = []

    @property
    def closed(self) -> bool:
        return bool(self.closes)

    async def receive(self) -> str | bytes | None:
        if self.closes:
            return None
        return await self.incoming.get()

    async def send(self, message: str | bytes) -> None:
        if self.closes:
            raise WebSocketClosed("closed")
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.incoming.put_nowait(None)  # a pending receive sees the close


class FakeConsole:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def exception(self, exc: BaseException) -> None:
        self.lines.append(f"exception {type(exc).__name__}: {exc}")

    def info(self, text: str) -> None:
        self.lines.append(text)


def session(
    incoming: list[str | bytes], idle: float = 0.0
) -> tuple[Session, FakeTransport, Sockets]:
    transport = FakeTransport(incoming)
    sockets = Sockets(idle)
    ws = WebSocket(transport, sockets)
    return Session(sockets, ws, FakeConsole()), transport, sockets  # type: ignore[arg-type]


def test_send_receive_iterate_and_count():
    async def script(ws: WebSocket) -> None:
        assert await ws.receive() == "a"
        async for message in ws:
            await ws.send(message)
            if message == b"\x00":
                await ws.send({"n": 1, "s": "é"})
                await ws.send(bytearray(b"z"))
                await ws.close(4000, "done")
                assert ws.closed and await ws.receive() is None
                with pytest.raises(WebSocketClosed):
                    await ws.send("late")

    async def main() -> tuple[FakeTransport, Sockets]:
        s, transport, sockets = session(["a", "b", b"\x00", "never read"])
        await s.run(script, {"ws": s.ws})
        return transport, sockets

    transport, sockets = asyncio.run(main())
    assert transport.sent == ["b", b"\x00", '{"n":1,"s":"é"}', b"z"]
    assert transport.closes == [(4000, "done")]  # the end of the session closes nothing more
    assert (sockets.total, sockets.received, sockets.sent, len(sockets.open)) == (1, 3, 4, 0)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_close_codes_the_protocol_forbids_are_refused(code):
    async def main() -> None:
        s, transport, _ = session([])
        with pytest.raises(ValueError, match="cannot be sent"):
            await s.ws.close(code)
        assert transport.closes == []

    asyncio.run(main())


def test_a_script_that_returns_closes_1000_and_one_that_raises_1011():
    async def fine(ws: WebSocket) -> None:
        await ws.send("bye")

    async def broken(ws: WebSocket) -> None:
        raise KeyError("nope")

    async def main() -> list[Any]:
        out = []
        for fn in (fine, broken):
            s, transport, _ = session([])
            await s.run(fn, {"ws": s.ws})
            out.append((transport.closes, s.console.lines))  # type: ignore[attr-defined]
        return out

    (fine_closes, fine_log), (broken_closes, broken_log) = asyncio.run(main())
    assert fine_closes == [(1000, "")] and fine_log == []
    assert broken_closes == [(1011, "KeyError in the script")]
    assert broken_log == ["exception KeyError: 'nope'"]


def test_going_away_wakes_the_script_and_cancels_one_that_ignores_it(monkeypatch):
    monkeypatch.setattr(wsmod, "CLOSE_GRACE", 0.05)
    seen: list[Any] = []

    async def polite(ws: WebSocket) -> None:
        seen.append(await ws.receive())

    async def stubborn(ws: WebSocket) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> list[list[tuple[int, str]]]:
        pairs = [session([]) for _ in range(2)]
        runs = [
            asyncio.ensure_future(s.run(fn, {"ws": s.ws}))
            for (s, _, _), fn in zip(pairs, (polite, stubborn), strict=True)
        ]
        await asyncio.sleep(0.01)
        assert sum(len(sockets.open) for _, _, sockets in pairs) == 2
        for _, _, sockets in pairs:
            assert sockets.going_away() == 1
        await asyncio.wait_for(asyncio.gather(*runs), 2)
        return [transport.closes for _, transport, _ in pairs]

    closes = asyncio.run(main())
    assert closes == [[(1001, "server shutting down")]] * 2
    assert seen == [None, "cancelled"]


def test_idle_timeout_counts_messages_either_way():
    async def chatty(ws: WebSocket) -> None:
        for _ in range(6):  # 0.3 s of sending, each message well inside the 0.15 s limit
            await ws.send("tick")
            await asyncio.sleep(0.05)
        assert not ws.closed
        await ws.receive()  # then silence: closed by the kit

    async def main() -> tuple[list[tuple[int, str]], float]:
        s, transport, _ = session([], idle=0.15)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(s.run(chatty, {"ws": s.ws}), 2)
        return transport.closes, loop.time() - start

    closes, took = asyncio.run(main())
    assert closes == [(1001, "idle for 0.15 s")]
    assert 0.4 <= took < 1.5
