"""The script-call hot path (http/sink.py): concurrency slots; a stream that fails
midway is aborted, never ended as a normal 200 (in-process, and on the wire
against the real kit)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest


def test_unstarted_stream_gives_its_concurrency_slot_back(tmp_path):
    import asyncio
    import gc

    from hoodyexec.http.scope import Reply, ScopeRequest

    from ..scriptenv import ScriptEnv

    env = ScriptEnv(tmp_path)
    env.write("gen.py", "for i in range(3):\n    yield i\n")
    from hoodyexec.workers.request import load_app

    app = load_app(env.settings, env.home, link=False)
    sink = app.sink

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        req = ScopeRequest(
            {
                "type": "http",
                "method": "GET",
                "path": "/gen",
                "headers": [(b"host", b"x")],
                "query_string": b"",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "scheme": "http",
                "root_path": "",
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 2),
            },
            receive,
        )
        resp = Reply()
        await sink._serve(req, resp)
        assert sink.inflight == 1 and resp.stream is not None
        resp.stream = None  # the client went away: nobody ever iterates it
        del resp
        gc.collect()
        assert sink.inflight == 0

    asyncio.run(main())


async def _asgi_get(app, path: str, accept: str = "*/*"):
    """One GET straight through the ASGI app: (messages sent, what it raised)."""
    sent: list[dict] = []
    first = True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"accept", accept.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    try:
        await asyncio.wait_for(app(scope, receive, send), 10)
    except asyncio.CancelledError as exc:
        return sent, exc
    return sent, None


STREAMS = {
    "sync-raise": "def handler():\n    yield 'a'\n    raise ValueError('boom')\n",
    "async-raise": "async def handler():\n    yield 'a'\n    raise ValueError('boom')\n",
    "exit": "def handler():\n    yield 'a'\n    raise SystemExit(3)\n",
    "timeout": "# @timeout 200\nimport asyncio\nasync def handler():\n"
    "    yield 'a'\n    await asyncio.sleep(5)\n    yield 'never'\n",
}


@pytest.mark.parametrize("kind", STREAMS)
@pytest.mark.parametrize("sse", [False, True])
def test_stream_failing_midway_is_aborted(env, kind, sse):
    from hoodyexec.http.sink import StreamAborted

    env.write("gen.py", STREAMS[kind])
    env.write("ok.py", "def handler():\n    yield 'a'\n    yield 'b'\n")
    accept = "text/event-stream" if sse else "*/*"

    async def go(c):
        failed = await _asgi_get(c.app, "/gen", accept)
        ok = await _asgi_get(c.app, "/ok", accept)
        return failed, ok

    (sent, raised), (ok_sent, ok_raised) = env.run(go)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    # no last body message: the server closes instead of ending the response
    assert all(m.get("more_body") for m in bodies) and isinstance(raised, StreamAborted)
    text = b"".join(m.get("body", b"") for m in bodies).decode()
    if sse:
        assert text.startswith("data: a\n\n")
        event, data = text.split("\n\n")[1].split("\n")
        failure = json.loads(data.removeprefix("data: "))
        assert event == "event: error" and failure["executionId"] in env.log("gen.py")
        assert failure["type"] == {"timeout": "Timeout", "exit": "SystemExit"}.get(
            kind, "ValueError"
        )
    else:
        assert text == "a"
    # a stream that ends well still ends with the last (empty) body message
    assert ok_raised is None and ok_sent[-1] == {"type": "http.response.body"}


def _raw_get(port: int, path: str, accept: str = "*/*") -> tuple[bytes, bytes, bool]:
    """(head, body as sent, closed by the server) for one kept-alive HTTP/1.1 GET."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n".encode())
        data = b""
        closed = False
        while not data.endswith(b"\r\n0\r\n\r\n"):
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break  # kept alive after a complete response would end here
            if not chunk:
                closed = True
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, closed


@pytest.mark.slow
def test_stream_failing_midway_aborts_the_connection_on_the_wire(make_kit):
    kit = make_kit(workers=1).start()
    folder = kit.home / "scripts" / "default" / "1"
    for name, code in {**STREAMS, "ok": "def handler():\n    yield 'a'\n"}.items():
        (folder / f"{name}.py").write_text(code)
    head, body, _ = _raw_get(kit.port, "/ok")
    assert b" 200 " in head and body == b"1\r\na\r\n0\r\n\r\n"  # a complete stream
    for name in STREAMS:
        for accept in ("*/*", "text/event-stream"):
            head, body, closed = _raw_get(kit.port, f"/{name}", accept)
            assert b" 200 " in head and b"transfer-encoding: chunked" in head.lower(), head
            # the server closed the connection without the terminating zero-length chunk
            assert closed and not body.endswith(b"0\r\n\r\n"), (name, accept, body)
            if accept == "text/event-stream":
                assert b"event: error\n" in body, body
                assert b'"executionId":' in body
            else:
                assert body == b"1\r\na\r\n", (name, body)
    assert _raw_get(kit.port, "/ok")[1].endswith(b"0\r\n\r\n")  # the worker goes on
