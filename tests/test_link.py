"""The control socket in-process: frames, broadcast, gather, forwarding."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import msgspec
import pytest

from hoodyexec.errors import ControlUnavailable
from hoodyexec.ipc import client as link_client
from hoodyexec.ipc import hub, protocol
from hoodyexec.ipc.protocol import (
    ClearCache,
    HttpRequest,
    Invalidate,
    Invoke,
    InvokeResult,
    Reload,
    Status,
    WorkerStatus,
)


@pytest.fixture
def sock_path():
    with tempfile.TemporaryDirectory() as d:
        yield str(Path(d) / "c.sock")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_frames_roundtrip_every_message_type():
    msgs = [
        protocol.Hello(pid=1, role="request", age=2),
        protocol.Broadcast(topic=ClearCache(hostname="api.exec-3", clear_state=True)),
        protocol.Broadcast(topic=Invalidate("default", "1", "a/b.py")),
        protocol.Broadcast(topic=Invalidate("default", "1")),
        protocol.Broadcast(topic=Reload()),
        protocol.Query(id=7, topic=Status()),
        protocol.Query(id=8, topic=Invoke("api", "3", "POST", "/x", body=b"\x00", limit=9)),
        protocol.Reply(id=7, pid=1, answer=WorkerStatus(pid=1, age=2, inflight=3)),
        protocol.Reply(id=8, pid=1, answer=InvokeResult(200, [("a", "b")], b"\xff", True)),
        protocol.Reply(id=9, pid=1, error="nope", code=404),
        HttpRequest(
            method="POST", path="/a", query_string=b"q=1", headers=[(b"a", b"b")], body=b"\x00\xff"
        ),
        protocol.ResponseStart(status=201, headers=[(b"content-type", b"text/plain")]),
        protocol.ResponseBody(body=b"chunk", more=True),
    ]
    for msg in msgs:
        frame = protocol.encode(msg)
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        assert protocol.decode(frame[4:]) == msg


def test_topics_travel_with_the_reference_api_names():
    wire = msgspec.msgpack.decode(
        protocol.encode(protocol.Broadcast(ClearCache("h", clear_vm=False)))[4:]
    )
    assert wire["topic"] == {
        "type": "ClearCache",
        "hostname": "h",
        "clearVm": False,
        "clearState": False,
    }
    wire = msgspec.msgpack.decode(protocol.encode(protocol.Query(1, Invalidate("s", "2")))[4:])
    assert wire["topic"] == {"type": "Invalidate", "subdomain": "s", "execId": "2", "path": None}
    # an unknown topic is refused where the frame is read, not ignored by a worker
    bad = msgspec.msgpack.encode({"type": "Broadcast", "topic": {"type": "Invalidat"}})
    with pytest.raises(msgspec.ValidationError):
        protocol.decode(bad)


def test_broadcast_and_gather_reach_every_worker(sock_path):
    async def main():
        server = hub.ControlServer(sock_path)
        await server.start()
        got: dict[int, list] = {1: [], 2: []}
        clients = [
            link_client.LinkClient(
                sock_path,
                pid,
                on_broadcast={Invalidate: got[pid].append, Reload: got[pid].append},
                on_query={Status: lambda _, pid=pid: WorkerStatus(pid=pid, tasks=pid * 10)},
            )
            for pid in (1, 2)
        ]
        for c in clients:
            c.start()
        for c in clients:
            await asyncio.wait_for(c.connected.wait(), 2)
        while len(server.links) < 2:
            await asyncio.sleep(0.01)
        notice = Invalidate("default", "1", "a.py")
        assert sorted(await server.broadcast(notice)) == [1, 2]
        replies = await server.gather(Status(), timeout=2)
        assert [(r.pid, r.answer) for r in replies] == [
            (1, WorkerStatus(pid=1, tasks=10)),
            (2, WorkerStatus(pid=2, tasks=20)),
        ]
        for _ in range(100):
            if got[1] and got[2]:
                break
            await asyncio.sleep(0.01)
        assert got == {1: [notice], 2: [notice]}
        # a notice sent with wait returns once each worker's handler has run
        assert sorted(await server.broadcast(Reload(), wait=2)) == [1, 2]
        assert got == {1: [notice, Reload()], 2: [notice, Reload()]}
        # a topic no handler takes → an error reply, not a hang
        replies = await server.gather(ClearCache(), timeout=2)
        assert [(r.error, r.code) for r in replies] == [("unknown topic ClearCache", 501)] * 2
        # a worker that goes away no longer counts, and gather does not wait for it
        await clients[0].close()
        while 1 in server.links:
            await asyncio.sleep(0.01)
        replies = await server.gather(Status(), timeout=5)
        assert [r.pid for r in replies] == [2]
        await clients[1].close()
        await server.close()

    run(main())


def test_link_client_reconnects_after_control_restart(sock_path):
    async def main():
        server = hub.ControlServer(sock_path)
        await server.start()
        client = link_client.LinkClient(sock_path, 9, on_query={Status: lambda _: WorkerStatus(9)})
        client.start()
        await asyncio.wait_for(client.connected.wait(), 2)
        await server.close()
        server2 = hub.ControlServer(sock_path)
        await server2.start()
        for _ in range(200):
            if 9 in server2.links:
                break
            await asyncio.sleep(0.01)
        assert [r.pid for r in await server2.gather(Status(), timeout=2)] == [9]
        await client.close()
        await server2.close()

    run(main())


def test_query_errors_come_back_typed_and_keep_the_link(sock_path):
    from hoodyexec.errors import NotFound

    async def main():
        server = hub.ControlServer(sock_path)
        await server.start()

        def invoke(call: Invoke) -> InvokeResult:
            if call.path == "/missing":
                raise NotFound("no such instance")
            if call.path == "/crash":
                raise RuntimeError("boom")
            if call.path == "/untyped":
                return {"status": 200}  # type: ignore[return-value]
            return InvokeResult(status=201, body=call.body)

        client = link_client.LinkClient(sock_path, 5, on_query={Invoke: invoke})
        client.start()
        while 5 not in server.links:
            await asyncio.sleep(0.01)
        ok = await server.ask(Invoke("default", "1", "GET", "/x", body=b"hi"))
        assert ok.answer == InvokeResult(status=201, body=b"hi") and ok.error is None
        missing = await server.ask(Invoke("default", "1", "GET", "/missing"))
        assert (missing.error, missing.code, missing.answer) == ("no such instance", 404, None)
        crash = await server.ask(Invoke("default", "1", "GET", "/crash"))
        assert (crash.error, crash.code) == ("RuntimeError: boom", 500)
        # an answer outside the protocol is refused on the worker side: sent, it
        # would not decode and would take the link down
        untyped = await server.ask(Invoke("default", "1", "GET", "/untyped"))
        assert untyped.code == 500 and "dict" in untyped.error
        again = await server.ask(Invoke("default", "1", "GET", "/x"))
        assert again.answer == InvokeResult(status=201) and 5 in server.links
        await client.close()
        await server.close()

    run(main())


async def streaming_app(scope, receive, send):
    msg = await receive()
    assert msg["type"] == "http.request"
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"x-path", scope["path"].encode())],
        }
    )
    if scope["path"] == "/stream":
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await send({"type": "http.response.body", "body": msg["body"] + scope["query_string"]})


def test_forward_runs_the_app_and_streams_back(sock_path):
    async def main():
        server = hub.ControlServer(sock_path, streaming_app)
        await server.start()
        req = HttpRequest(method="POST", path="/echo", query_string=b"?q", body=b"hello")
        answer = await link_client.forward(sock_path, req)
        assert answer.start.status == 200 and (b"x-path", b"/echo") in answer.start.headers
        assert answer.first == b"hello?q" and answer.rest is None

        answer = await link_client.forward(sock_path, HttpRequest(method="GET", path="/stream"))
        chunks = [answer.first] + [c async for c in answer.rest]
        assert b"".join(chunks) == b"part0;part1;part2;"

        answer = await link_client.forward(sock_path, HttpRequest(method="GET", path="/boom"))
        assert answer.start.status == 500 and b"error" in answer.first
        await server.close()

    run(main())


def test_forward_gives_up_when_no_control_worker(sock_path):
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ControlUnavailable) as err:
            await link_client.forward(
                sock_path, HttpRequest(method="GET", path="/x"), connect_timeout=0.3
            )
        assert err.value.status == 503
        assert 0.2 < loop.time() - t0 < 2

    run(main())


def test_forward_waits_for_a_restarting_control_worker(sock_path):
    async def main():
        async def late_start():
            await asyncio.sleep(0.3)
            server = hub.ControlServer(sock_path, streaming_app)
            await server.start()
            return server

        starter = asyncio.create_task(late_start())
        answer = await link_client.forward(
            sock_path, HttpRequest(method="GET", path="/late"), connect_timeout=3
        )
        assert answer.start.status == 200
        await (await starter).close()

    run(main())


def test_close_leaves_a_successors_socket_alone(sock_path):
    async def main():
        old = hub.ControlServer(sock_path)
        await old.start()
        new = hub.ControlServer(sock_path)
        await new.start()  # replaces the path, as a new control worker does
        await old.close()
        assert Path(sock_path).exists()
        answer_server = new
        await answer_server.close()
        assert not Path(sock_path).exists()

    run(main())
