"""Script routes without falcon: the request read from the ASGI scope, the
answer written as ASGI messages.

Falcon builds a Request and a Response for every call and then runs its
middleware, routing and response assembly; the scripts sink needs only a few
of those steps, so script routes skip falcon altogether (``ScriptsFront``
dispatches them, ``http/sink.py`` serves them). ``ScopeRequest`` offers the
subset of falcon's Request the sink and ``runtime.Req`` read, with falcon's
semantics (headers joined the same way, query strings parsed by falcon's own
parser, ``url`` and ``remote_addr`` built alike) and everything but the
header table computed on first use. ``Reply`` holds what falcon's Response
held for the sink and writes it as falcon would: ``content-length`` for a
body, none and no default type for 204/304, headers only for HEAD.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from falcon.asgi.request import _SINGLETON_HEADERS_BYTESTR
from falcon.util.uri import parse_query_string

from hoodyexec.errors import HoodyError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any ASGI app (falcon's App types its scope as a dict, so the arguments stay open).
ASGIApp = Callable[..., Awaitable[None]]

NO_BODY_STATUS = frozenset({100, 101, 204, 304})


class KitHeaders(tuple[tuple[bytes, bytes], ...]):
    """The response header lines of ``ScriptsFront``'s usual answer, built by
    the kit from values known to be valid: ``x-execution-id`` (hex digits),
    ``content-type`` from ``ENCODED_TYPES`` and ``content-length`` (digits),
    in that order. PERF: the request worker's server (``workers/asgi.py``)
    takes their framing from them instead of checking each line against
    gunicorn's header patterns again (~1.3 µs per answer); any other
    headers are an ordinary list, checked."""

    __slots__ = ()

    @property
    def content_length(self) -> bytes:
        return self[2][1]


_UNTYPED_STATUS = frozenset({204, 304})
_EOF: dict[str, Any] = {"type": "http.response.body"}  # body b"", more_body False
# PERF: the content types the sink sets, encoded once (any other is encoded per answer).
ENCODED_TYPES: dict[str, bytes] = {
    t: t.encode()
    for t in (
        "application/json",
        "text/plain; charset=utf-8",
        "text/html; charset=utf-8",
        "application/octet-stream",
        "text/event-stream",
        "application/x-ndjson",
    )
}


def header_table(raw: Any) -> dict[bytes, bytes]:
    """ASGI headers as falcon keeps them: a repeated header's values joined
    with ``,`` except for headers that may appear once (the last one wins)."""
    # PERF: no header repeated (the usual request): one C-level dict().
    table: dict[bytes, bytes] = dict(raw)
    if len(table) == len(raw):
        return table
    table = {}
    for name, value in raw:
        if name not in table or name in _SINGLETON_HEADERS_BYTESTR:
            table[name] = value
        else:
            table[name] += b"," + value
    return table


class ScopeRequest:
    """The request of a script route, read from the ASGI scope on demand."""

    __slots__ = ("scope", "method", "path", "_asgi_headers", "_receive", "_params", "_headers")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"] or "/"
        raw = scope["headers"]
        # PERF: no header repeated (the usual request): one C-level dict().
        table: dict[bytes, bytes] = dict(raw) if type(raw) is list else {}
        if type(raw) is not list or len(table) != len(raw):  # repeats, or an iterator
            table = header_table(raw if type(raw) is list else list(raw))
        self._asgi_headers = table
        self._receive = receive
        self._params: dict[str, Any] | None = None
        self._headers: dict[str, str] | None = None

    # -- what falcon's Request offered the sink ------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """Query parameters (a key given several times is a list), as falcon parses them."""
        params = self._params
        if params is None:
            qs = self.scope.get("query_string", b"").decode()
            params = self._params = parse_query_string(qs, keep_blank=True, csv=False) if qs else {}
        return params

    @property
    def query_string(self) -> str:
        return str(self.scope.get("query_string", b"").decode())

    @property
    def headers(self) -> dict[str, str]:
        """Every header, names lowercase, values decoded as latin-1."""
        h = self._headers
        if h is None:
            h = self._headers = {
                k.decode("latin1"): v.decode("latin1") for k, v in self._asgi_headers.items()
            }
        return h

    def get_header(self, name: str) -> str | None:
        value = self._asgi_headers.get(name.lower().encode("latin1"))
        return None if value is None else value.decode("latin1")

    def get_param(self, name: str) -> str | None:
        value = self.params.get(name)
        if isinstance(value, list):
            return str(value[-1]) if value else None
        return None if value is None else str(value)

    @property
    def content_type(self) -> str | None:
        value = self._asgi_headers.get(b"content-type")
        return None if value is None else value.decode("latin1")

    @property
    def content_length(self) -> int | None:
        value = self._asgi_headers.get(b"content-length")
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise HoodyError(
                "Invalid header value: Content-Length must be a number", status=400
            ) from None

    @property
    def remote_addr(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "127.0.0.1"

    @property
    def url(self) -> str:
        scope = self.scope
        host = self._asgi_headers.get(b"host")
        scheme = scope.get("scheme") or "http"
        if host is not None:
            netloc = host.decode("latin1")
        else:
            server = scope.get("server") or ("localhost", 80)
            name, port = server[0], server[1]
            default = 443 if scheme == "https" else 80
            netloc = name if port == default or port is None else f"{name}:{port}"
        qs = scope.get("query_string", b"").decode()
        path = scope.get("root_path", "") + self.path
        return f"{scheme}://{netloc}{path}?{qs}" if qs else f"{scheme}://{netloc}{path}"

    async def read_body(self, limit: int) -> bytes:
        """The body, stopping once more than ``limit`` bytes came (the caller
        refuses those). A client that goes away mid-body never gets here with
        a truncated body: the worker's receiver cancels the request
        (``workers/asgi.py``); ``http.disconnect`` otherwise ends the body."""
        receive = self._receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Reply:
    """What a script route answers, written out by ``send_to``.

    The attribute names are falcon's Response's (``status``, ``content_type``,
    ``data``, ``stream``, ``set_header``, ``append_header``), so the sink reads
    the same either way; headers other than the content type and the
    execution id are kept only when some are set."""

    __slots__ = ("status", "content_type", "data", "stream", "execution_id", "_headers", "_cookies")

    def __init__(self) -> None:
        self.status = 200
        self.content_type: str | None = None
        self.data: bytes | None = None
        self.stream: AsyncIterator[bytes] | None = None
        self.execution_id: str | None = None
        self._headers: dict[str, str] | None = None
        self._cookies: list[str] | None = None

    def set_header(self, name: str, value: Any) -> None:
        key = name.lower()
        if key == "content-type":
            self.content_type = str(value)
            return
        if self._headers is None:
            self._headers = {}
        self._headers[key] = str(value)

    def append_header(self, name: str, value: Any) -> None:
        key = name.lower()
        value = str(value)
        if key == "set-cookie":  # one line per cookie, as falcon does
            if self._cookies is None:
                self._cookies = []
            self._cookies.append(value)
            return
        if key == "content-type":
            self.content_type = value
            return
        headers = self._headers
        if headers is None:
            headers = self._headers = {}
        prev = headers.get(key)
        headers[key] = value if prev is None else f"{prev}, {value}"

    def get_header(self, name: str) -> str | None:
        key = name.lower()
        if key == "content-type":
            return self.content_type
        if key == "x-execution-id":
            return self.execution_id
        return self._headers.get(key) if self._headers else None

    def _head(self, length: int | None) -> list[tuple[bytes, bytes]]:
        """The response's header lines; a 500 ``HoodyError`` when a name or
        value cannot go on the wire (not latin-1), before anything is sent."""
        try:
            return self._lines(length)
        except UnicodeEncodeError as exc:
            raise HoodyError(
                f"a response header is not latin-1: {exc}", status=500, type="HeaderError"
            ) from None

    def _lines(self, length: int | None) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if self.execution_id is not None:
            out.append((b"x-execution-id", self.execution_id.encode()))
        status = self.status
        if status not in _UNTYPED_STATUS:
            ctype = self.content_type or "application/json"
            out.append((b"content-type", ENCODED_TYPES.get(ctype) or ctype.encode("latin1")))
        headers = self._headers
        if headers:
            if length is not None:
                headers.pop("content-length", None)
            out.extend((k.encode("latin1"), v.encode("latin1")) for k, v in headers.items())
        if length is not None:
            out.append((b"content-length", b"%d" % length))
        if self._cookies:
            out.extend((b"set-cookie", c.encode("latin1")) for c in self._cookies)
        return out

    async def send_to(self, send: Send, head: bool) -> None:
        """Write the answer (``head``: a HEAD request, headers only)."""
        status = self.status
        data = self.data
        eid = self.execution_id
        if (
            data is not None
            and self._headers is None
            and self._cookies is None
            and eid is not None
            and not head
            and status not in NO_BODY_STATUS
        ):
            # PERF: the usual answer (a body, no extra headers): one list of
            # three header lines, the content type's bytes encoded once.
            ctype = self.content_type or "application/json"
            encoded = ENCODED_TYPES.get(ctype)
            lines = [
                (b"x-execution-id", eid.encode()),
                (b"content-type", encoded if encoded is not None else latin1(ctype)),
                (b"content-length", b"%d" % len(data)),
            ]
            await send({"type": "http.response.start", "status": status, "headers": lines})
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return
        stream = self.stream
        if status in NO_BODY_STATUS:
            await send(
                {"type": "http.response.start", "status": status, "headers": self._head(None)}
            )
            await send(_EOF)
            await _close(stream)
            return
        if head:
            given = self._headers and "content-length" in self._headers
            length = None if given or (data is None and stream is not None) else len(data or b"")
            await send(
                {"type": "http.response.start", "status": status, "headers": self._head(length)}
            )
            await send(_EOF)
            await _close(stream)
            return
        if data is not None or stream is None:
            body = data or b""
            await send(
                {"type": "http.response.start", "status": status, "headers": self._head(len(body))}
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send({"type": "http.response.start", "status": status, "headers": self._head(None)})
        try:
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await _close(stream)
        await send(_EOF)


def latin1(value: str) -> bytes:
    try:
        return value.encode("latin1")
    except UnicodeEncodeError as exc:
        raise HoodyError(
            f"a response header is not latin-1: {exc}", status=500, type="HeaderError"
        ) from None


async def _close(stream: AsyncIterator[bytes] | None) -> None:
    """Close a stream that will not be (further) read: its cleanup runs now."""
    if stream is None:
        return
    close = getattr(stream, "aclose", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result
