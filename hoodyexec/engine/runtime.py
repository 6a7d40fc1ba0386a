"""What a script gets: ``req``, ``res``, ``metadata``, ``shared``, ``ai`` (and ``Headers``).

Per-request objects use ``__slots__`` and compute expensive views lazily, so a
script that only returns a value pays for almost nothing. This module does not
import falcon: the HTTP layer hands it plain values and a header mapping.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from http.cookies import SimpleCookie
from typing import Any, Protocol
from urllib.parse import quote

from hoodyexec.errors import HoodyError
from hoodyexec.storage.base import SharedStore


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only request headers."""

    __slots__ = ("_d",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._d = {k.lower(): v for k, v in data.items()} if data else {}

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:
        return self._d.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({self._d!r})"


class RequestSource(Protocol):
    """What ``Req`` reads from the HTTP layer's request (falcon's, or a synthetic one)."""

    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def url(self) -> str: ...
    @property
    def remote_addr(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class Req:
    """The incoming request, as a script sees it.

    ``src`` is the HTTP layer's request (or a synthetic one for tests and
    schedules) offering ``url``, ``headers`` (a lowercase dict) and
    ``remote_addr``; views of it are computed on first use only.
    """

    __slots__ = (
        "method",
        "path",
        "params",
        "body",
        "raw",
        "id",
        "_src",
        "_headers",
        "_cookies",
        "_query",
    )

    def __init__(
        self,
        src: RequestSource,
        method: str,
        path: str,
        params: Mapping[str, str],
        body: Any,
        raw: bytes,
        execution_id: str,
    ) -> None:
        self._src = src
        self.method = method
        self.path = path
        self._query: Mapping[str, Any] | None = None
        self.params = params
        self.body = body
        self.raw = raw
        self.id = execution_id
        self._headers: Headers | None = None
        self._cookies: dict[str, str] | None = None

    @property
    def query(self) -> Mapping[str, Any]:
        """Query parameters (a repeated key gives a list), parsed on first use."""
        q = self._query
        if q is None:
            q = self._query = self._src.params
        return q

    @property
    def url(self) -> str:
        return self._src.url

    @property
    def client(self) -> str | None:
        return self._src.remote_addr

    @property
    def headers(self) -> Headers:
        h = self._headers
        if h is None:
            h = self._headers = Headers(self._src.headers)
        return h

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(self.headers.get("cookie", ""))
            except Exception:  # noqa: BLE001 - a bad cookie header is no reason to fail
                pass
            self._cookies = {k: m.value for k, m in jar.items()}
        return self._cookies

    def json(self) -> Any:
        return (
            self.body if not isinstance(self.body, bytes | str) else json.loads(self.raw or b"null")
        )

    def __repr__(self) -> str:
        return f"<Req {self.method} {self.path}>"


METADATA_KEYS = (
    "query",
    "parameters",
    "path",
    "method",
    "headers",
    "executionId",
    "script",
    "hostname",
    "subdomain",
    "execId",
    "magic",
    "trigger",
)


class Metadata(Mapping[str, Any]):
    """``metadata``: attribute and key access (``metadata.query``, ``metadata["query"]``)."""

    KEYS = METADATA_KEYS
    # every key is a slot but headers, which is read from the request on demand
    __slots__ = (*(k for k in METADATA_KEYS if k != "headers"), "_req")

    def __init__(
        self,
        req: Req,
        script: str,
        hostname: str,
        subdomain: str,
        exec_id: str,
        magic: Mapping[str, Any],
        trigger: str,
    ) -> None:
        self._req = req
        self.query = req.query
        self.parameters = req.params
        self.path = req.path
        self.method = req.method
        self.executionId = req.id  # noqa: N815 - the reference's name
        self.script = script
        self.hostname = hostname
        self.subdomain = subdomain
        self.execId = exec_id  # noqa: N815
        self.magic = magic
        self.trigger = trigger

    @property
    def headers(self) -> Headers:
        return self._req.headers

    def __getitem__(self, key: str) -> Any:
        if key in self.KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.KEYS}
        out["headers"] = dict(self.headers)
        return out

    def __repr__(self) -> str:
        return f"<Metadata {self.method} {self.path} {self.executionId}>"


class Res:
    """Chainable response builder. When a script used it, it wins over the return value."""

    __slots__ = (
        "used",
        "status_code",
        "headers",
        "cookies",
        "body",
        "content_type",
        "kind",
        "iterable",
    )

    def __init__(self) -> None:
        self.used = False
        self.status_code: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.cookies: list[str] = []
        self.body: Any = None
        self.content_type: str | None = None
        self.kind = "none"  # none | value | raw | stream | sse
        self.iterable: Iterable[Any] | AsyncIterable[Any] | None = None

    def status(self, code: int) -> Res:
        code = int(code)
        if not 100 <= code <= 599:
            raise ValueError(f"HTTP status must be 100-599, got {code}")
        self.used = True
        self.status_code = code
        return self

    def header(self, name: str, value: Any) -> Res:
        self.used = True
        self.headers.append((str(name), str(value)))
        return self

    def json(self, obj: Any) -> Res:
        self.used = True
        self.kind = "value"
        self.body = obj
        self.content_type = "application/json"
        return self

    def send(self, body: Any, content_type: str | None = None) -> Res:
        """Send as-is: str/bytes raw (with an optional type), anything else like a return value."""
        self.used = True
        if isinstance(body, str | bytes | bytearray | memoryview):
            self.kind = "raw"
            self.body = bytes(body) if not isinstance(body, str) else body
            self.content_type = content_type or (
                "text/plain; charset=utf-8" if isinstance(body, str) else "application/octet-stream"
            )
        else:
            self.kind = "value"
            self.body = body
            self.content_type = content_type
        return self

    def text(self, body: str, status: int | None = None) -> Res:
        if status is not None:
            self.status(status)
        return self.send(str(body), "text/plain; charset=utf-8")

    def html(self, body: str, status: int | None = None) -> Res:
        if status is not None:
            self.status(status)
        return self.send(str(body), "text/html; charset=utf-8")

    def redirect(self, url: str, code: int = 302) -> Res:
        self.status(code)
        self.header("Location", url)
        self.kind = "raw"
        self.body = b""
        return self

    def cookie(
        self,
        name: str,
        value: str = "",
        *,
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: str | None = "Lax",
        expires: str | None = None,
    ) -> Res:
        self.used = True
        parts = [f"{name}={quote(str(value), safe='')}", f"Path={path}"]
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if expires:
            parts.append(f"Expires={expires}")
        if domain:
            parts.append(f"Domain={domain}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite:
            parts.append(f"SameSite={samesite}")
        self.cookies.append("; ".join(parts))
        return self

    def stream(
        self, iterable: Iterable[Any] | AsyncIterable[Any], content_type: str | None = None
    ) -> Res:
        self.used = True
        self.kind = "stream"
        self.iterable = iterable
        self.content_type = content_type or "application/octet-stream"
        return self

    def sse(self, iterable: Iterable[Any] | AsyncIterable[Any]) -> Res:
        self.used = True
        self.kind = "sse"
        self.iterable = iterable
        self.content_type = "text/event-stream"
        return self

    def __repr__(self) -> str:
        return f"<Res {self.status_code or '-'} {self.kind}>"


class Shared:
    """``shared`` as a script sees it: the document of the request's hostname."""

    __slots__ = ("_store", "hostname")

    def __init__(self, store: SharedStore, hostname: str) -> None:
        self._store = store
        self.hostname = hostname

    def get(self, path: str | None = None, default: Any = None) -> Any:
        return self._store.get(self.hostname, path, default)

    def set(self, path: str, value: Any) -> Any:
        return self._store.set(self.hostname, path, value)

    def merge(self, path: str | None, obj: Any) -> Any:
        return self._store.merge(self.hostname, path, obj)

    def delete(self, path: str) -> bool:
        return self._store.delete(self.hostname, path)

    def incr(self, path: str, n: int | float = 1) -> int | float:
        return self._store.incr(self.hostname, path, n)

    def all(self) -> dict[str, Any]:
        return self._store.document(self.hostname)

    def __repr__(self) -> str:
        return f"<Shared {self.hostname}>"


class AIUnavailable:
    """``ai`` where no AI helper is installed (in-process tools): a clear 501."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise HoodyError("the ai helper is not available here", status=501)

    def __repr__(self) -> str:
        return "<ai: not configured>"


AI = AIUnavailable()

# Builds a script's AI helper: (script file, its magic comments) → helper. The
# request worker installs the AI feature's factory at boot (``install_ai``).
AIFactory = Callable[[str, dict[str, Any]], Any]
_ai_factory: AIFactory | None = None


def install_ai(factory: AIFactory | None) -> None:
    global _ai_factory
    _ai_factory = factory


class ScriptAI:
    """A script's ``ai``: made with the compiled script (costs one small object),
    the real helper built on first use — the openai client is imported only
    then, so a kit whose scripts never call ``ai`` never loads it."""

    __slots__ = ("path", "magic", "_impl")

    def __init__(self, path: str, magic: dict[str, Any]) -> None:
        self.path = path
        self.magic = magic
        self._impl: Any = None

    def __getattr__(self, name: str) -> Any:
        impl = self._impl
        if impl is None:
            if _ai_factory is None:
                return getattr(AI, name)
            impl = self._impl = _ai_factory(self.path, self.magic)
        return getattr(impl, name)

    def __repr__(self) -> str:
        return f"<ai for {os.path.basename(self.path)}>"
