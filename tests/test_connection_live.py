"""A connection's requests run one after another in the connection's own task
(workers/asgi.py, HoodyProtocol._serve_http_request): what a request does to
that task (a timeout's cancel, a script's own CancelledError) must not reach
the next request on the connection, and a client that leaves still cancels
its request."""

from __future__ import annotations

import http.client
import os
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def put(kit, rel: str, text: str) -> None:
    path = kit.home / "scripts" / "default" / "1" / rel
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_requests_after_a_timeout_on_the_same_connection_answer_normally(make_kit):
    kit = make_kit(workers=1).start()
    put(
        kit,
        "task.py",
        "import asyncio\n\nasync def handler():\n    return {'task': asyncio.current_task().get_name()}\n",
    )
    put(
        kit,
        "slow.py",
        "# @timeout 300\nimport asyncio\n\nasync def handler():\n    await asyncio.sleep(10)\n",
    )
    put(kit, "spin.py", "# @timeout 300\nwhile True:\n    pass\n")
    put(
        kit,
        "selfcancel.py",
        "import asyncio\n\nasync def handler():\n    raise asyncio.CancelledError('mine')\n",
    )
    put(kit, "ok.py", "return {'ok': True}\n")
    conn = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)

    def get(path: str) -> tuple[int, bytes]:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    try:
        status, body = get("/task")
        assert status == 200
        sock = conn.sock
        task = body
        assert get("/task") == (200, task)  # the same task: the connection's
        for path, want in (("/slow", 504), ("/spin", 504), ("/selfcancel", 500)):
            status, body = get(path)
            assert status == want, (path, body)
            assert conn.sock is sock, f"{path} closed the connection"
            assert get("/ok") == (200, b'{"ok":true}')
            assert get("/task") == (200, task)
        # A timeout cancels only its own request, also when the next one follows at once.
        for _ in range(3):
            assert get("/slow")[0] == 504
            assert get("/ok")[0] == 200
        assert conn.sock is sock
    finally:
        conn.close()


def test_a_client_that_leaves_cancels_its_request(make_kit, tmp_path: Path):
    kit = make_kit(workers=1).start()
    mark = tmp_path / "cancelled"
    put(
        kit,
        "wait.py",
        "# @timeout 30000\n"
        "import asyncio\n\n"
        "async def handler():\n"
        "    try:\n"
        "        await asyncio.sleep(20)\n"
        "    except asyncio.CancelledError:\n"
        f"        open({str(mark)!r}, 'w').write('cancelled')\n"
        "        raise\n",
    )
    assert kit.get("/ok-missing").status == 404  # the worker is up and serving
    s = socket.create_connection(("127.0.0.1", kit.port))
    s.sendall(b"GET /wait HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    time.sleep(0.5)
    s.close()
    deadline = time.monotonic() + 10  # gunicorn's grace period for a gone client is 3 s
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mark.exists() and mark.read_text() == "cancelled"
    assert kit.get("/wait-missing").status == 404  # and the worker serves on
