"""Script routes without falcon (http/scope.py, ScriptsFront): the request read
from the ASGI scope and the answer written as falcon wrote it."""

from __future__ import annotations

import asyncio

import pytest

from hoodyexec.errors import HoodyError
from hoodyexec.http.scope import Reply, ScopeRequest, header_table
from hoodyexec.http.sink import kit_path


def _scope(**kw):
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "query_string": b"",
        "headers": [(b"host", b"h.example:8080")],
        "scheme": "http",
        "root_path": "",
        "client": ("10.0.0.7", 4000),
        "server": ("127.0.0.1", 8080),
    }
    scope.update(kw)
    return scope


def _sent(reply: Reply, head: bool = False) -> list[dict]:
    out: list[dict] = []

    async def send(message):
        out.append(message)

    asyncio.run(reply.send_to(send, head))
    return out


def test_headers_are_joined_as_falcon_joins_them():
    raw = [(b"accept", b"a"), (b"accept", b"b"), (b"content-type", b"x"), (b"content-type", b"y")]
    table = header_table(raw)
    assert table[b"accept"] == b"a,b" and table[b"content-type"] == b"y"  # a singleton: last wins
    req = ScopeRequest(_scope(headers=iter(raw)), None)  # an iterator is read once
    assert req.get_header("Accept") == "a,b" and req.headers["content-type"] == "y"


def test_query_url_client_and_content_length():
    req = ScopeRequest(_scope(query_string=b"a=1&a=2&b=&c=x%20y"), None)
    assert req.params == {"a": ["1", "2"], "b": "", "c": "x y"}
    assert req.get_param("a") == "2" and req.get_param("zz") is None
    assert req.url == "http://h.example:8080/x?a=1&a=2&b=&c=x%20y"
    assert req.remote_addr == "10.0.0.7"
    assert ScopeRequest(_scope(client=None), None).remote_addr == "127.0.0.1"
    bad = ScopeRequest(_scope(headers=[(b"content-length", b"ten")]), None)
    with pytest.raises(HoodyError) as err:
        _ = bad.content_length
    assert err.value.status == 400
    assert ScopeRequest(_scope(headers=[]), None).url == "http://127.0.0.1:8080/x"


def test_body_is_read_across_messages_and_stops_past_the_limit():
    messages = [
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False},
    ]

    def receiver():
        it = iter(list(messages))

        async def receive():
            return next(it)

        return receive

    assert asyncio.run(ScopeRequest(_scope(), receiver()).read_body(100)) == b"abcdef"
    assert len(asyncio.run(ScopeRequest(_scope(), receiver()).read_body(2))) > 2


def test_answers_as_falcon_wrote_them():
    r = Reply()
    r.execution_id = "id1"
    r.data = b'{"a":1}'
    r.set_header("X-A", "1")
    r.append_header("x-a", "2")
    r.append_header("Set-Cookie", "a=1")
    r.append_header("Set-Cookie", "b=2")
    start, body = _sent(r)
    headers = start["headers"]
    assert (b"x-a", b"1, 2") in headers and (b"content-length", b"7") in headers
    assert [v for k, v in headers if k == b"set-cookie"] == [b"a=1", b"b=2"]
    assert (b"content-type", b"application/json") in headers and body["body"] == b'{"a":1}'
    # HEAD: headers with the length, no body
    start, eof = _sent(r, head=True)
    assert (b"content-length", b"7") in start["headers"] and not eof.get("body")
    # 204: no content type, no length
    empty = Reply()
    empty.status = 204
    start, _ = _sent(empty)
    assert not [k for k, _ in start["headers"] if k in (b"content-type", b"content-length")]


def test_a_header_that_is_not_latin1_is_refused_before_anything_is_sent():
    r = Reply()
    r.data = b"x"
    r.set_header("X-Name", "名前")
    with pytest.raises(HoodyError) as err:
        _sent(r)
    assert err.value.status == 500


def test_kit_paths_go_to_falcon():
    for path in ("/api/v1/exec", "/api/v1/exec/health", "/openapi.json", "/openapi.yaml"):
        assert kit_path(path)
    for path in ("/api/v1/executor", "/openapi.jsonx", "/", "/api/v1"):
        assert not kit_path(path)


def test_kit_header_lines_pass_gunicorns_checks_so_skipping_them_changes_nothing():
    """KitHeaders' values are the kit's own (an execution id, a content type
    from ENCODED_TYPES, a length): each passes gunicorn's header patterns, so
    the worker reading their framing directly (workers/asgi.py) answers what
    gunicorn's check would; any other list is still checked."""
    from gunicorn.asgi import protocol as gprotocol
    from hoodyexec.workers.asgi import scan_response_headers

    from hoodyexec.http.scope import ENCODED_TYPES, KitHeaders
    from hoodyexec.http.sink import _execution_ids

    ids = _execution_ids("0a1b2c")
    samples = [next(ids) for _ in range(300)]
    for eid in samples[:3] + samples[-3:]:
        for encoded in ENCODED_TYPES.values():
            lines = KitHeaders(
                (
                    (b"x-execution-id", eid.encode()),
                    (b"content-type", encoded),
                    (b"content-length", b"123"),
                )
            )
            ours = scan_response_headers(lines)
            assert ours == gprotocol._scan_response_headers(list(lines)) == (True, b"123", False)
    # not KitHeaders: gunicorn's check, which refuses a line that would split the answer
    bad = [(b"content-type", b"text/plain\r\nx-evil: 1"), (b"content-length", b"1")]
    with pytest.raises(Exception, match="content-type"):
        scan_response_headers(bad)
    assert scan_response_headers([(b"content-length", b"5")]) == (True, b"5", False)


def test_scripts_front_marks_only_its_own_lines_as_kit_headers(env):
    """The usual answer with a known type goes out as KitHeaders; a content
    type the script chose goes out as a plain list, for gunicorn to check."""
    from hoodyexec.workers.request import load_app

    from hoodyexec.http.scope import KitHeaders

    env.write("known.py", 'return {"a": 1}\n')
    env.write("own.py", 'def handler(res):\n    return res.send("x", content_type="text/x-own")\n')
    app = load_app(env.settings, env.home, link=False)

    async def call(path: str) -> dict:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = _scope(path=path, headers=[(b"host", b"localhost")])
        await app(scope, receive, send)
        return sent[0]

    known = asyncio.run(call("/known"))
    own = asyncio.run(call("/own"))
    assert type(known["headers"]) is KitHeaders
    assert dict(known["headers"])[b"content-type"] == b"application/json"
    assert type(own["headers"]) is list
    assert (b"content-type", b"text/x-own") in own["headers"]
