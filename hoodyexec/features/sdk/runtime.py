"""What generated SDK clients (``_sdk/<name>.py``) call at run time, in request workers.

A generated client holds only what its OpenAPI document says (base URL,
operations, parameter names and types); this module does the HTTP with the
kit's client (httpx2, one ``AsyncClient`` per event loop), its timeouts and size
caps, and adds the SDK's auth header. The auth is read from the SDK's manifest
(``<home>/sdk/<subdomain>/<execId>/<id>.json``, mode 0600, outside the scripts
tree) at call time, or from the kit's environment for ``env:NAME``, so the
secret never appears in a generated file.

Imported by user scripts only (through a generated client): no falcon, and
nothing here runs in the control worker.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx2

from hoodyexec.errors import HoodyError

CALL_TIMEOUT = 30.0  # seconds for a whole upstream call (the script's @timeout also holds)
CONNECT_TIMEOUT = 5.0
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# Request headers of the script's caller a proxy passes upstream (besides the
# operation's declared header parameters); never Authorization or cookies.
FORWARDED = ("accept", "content-type", "accept-language")


class UpstreamError(HoodyError):
    """The upstream API failed, or answered an error (``call``): 502 for the caller."""

    status = 502


class SdkConfigError(HoodyError):
    """The SDK's manifest or auth is missing (deleted SDK, unset ``env:`` variable)."""

    status = 500


class Operation(NamedTuple):
    """One operation, as a generated client declares it."""

    method: str
    path: str  # the document's template: /pets/{petId}
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    body: str | None = None  # the request body's media type, when it has one


@dataclass
class UpstreamRequest:
    """What is about to be sent; a middleware may change any field."""

    operation: str
    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


@dataclass
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def data(self) -> Any:
        """The body decoded by its type: JSON, text, or bytes (None when empty)."""
        if not self.content:
            return None
        kind = self.content_type.split(";")[0].strip().lower()
        if kind == "application/json" or kind.endswith("+json"):
            try:
                return self.json()
            except ValueError:
                return self.text
        if kind.startswith("text/"):
            return self.text
        return self.content


Middleware = Callable[[UpstreamRequest], Awaitable[Any] | Any]

# -- the HTTP client: one per event loop -------------------------------------------
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def http_client() -> httpx2.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(CALL_TIMEOUT, connect=CONNECT_TIMEOUT),
            follow_redirects=False,  # the auth header never travels to another host
        )
        _clients[loop] = client
    return client


# -- auth, read at call time ---------------------------------------------------------
_manifests: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def manifest_path(module_file: str, name: str) -> str:
    """``<home>/sdk/<subdomain>/<execId>/<name>.json`` for the client at
    ``<home>/scripts/<subdomain>/<execId>/_sdk/<name>.py``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(module_file)))
    exec_id = os.path.basename(root)
    subdomain = os.path.basename(os.path.dirname(root))
    scripts = os.path.dirname(os.path.dirname(root))
    return os.path.join(os.path.dirname(scripts), "sdk", subdomain, exec_id, name + ".json")


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest, re-read only when its file changed (one stat per call)."""
    try:
        st = os.stat(path)
    except OSError:
        raise SdkConfigError(
            "this SDK has no manifest (it was deleted, or the client was copied from "
            "elsewhere): import it again"
        ) from None
    identity = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _manifests.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    with open(path, "rb") as fh:
        data: dict[str, Any] = json.loads(fh.read())
    _manifests[path] = (identity, data)
    return data


def auth_header(manifest: Mapping[str, Any]) -> tuple[str, str] | None:
    """(header, value) to send, from the manifest's ``auth``."""
    auth = manifest.get("auth") or {}
    header = str(auth.get("header") or "Authorization")
    if auth.get("type") == "env":
        name = str(auth.get("name"))
        value = os.environ.get(name)
        if value is None:
            raise SdkConfigError(
                f"the SDK's auth comes from the environment variable {name}, which is "
                "not set in the kit's environment",
                variable=name,
            )
        return header, value
    if auth.get("type") == "header":
        return header, str(auth.get("value"))
    return None


# -- the client a generated module makes ---------------------------------------------
class Client:
    """One upstream API: ``call`` for data, ``send`` for the whole answer, ``proxy``
    for a script that passes a request through."""

    def __init__(
        self,
        module_file: str,
        name: str,
        *,
        base_url: str,
        operations: Mapping[str, Operation],
        middleware: Middleware | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.operations = dict(operations)
        self.middleware = middleware
        self.manifest = manifest_path(module_file, name)

    def url(self, op: Operation, path: Mapping[str, Any] | None) -> str:
        values = dict(path or {})
        url = op.path
        for key, value in values.items():
            url = url.replace("{" + key + "}", quote(str(value), safe=""))
        return self.base_url + url

    async def send(
        self,
        operation: str,
        *,
        path: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> UpstreamResponse:
        """Send one operation; the answer whatever its status. ``body`` is JSON-encoded
        (str/bytes are sent as they are); ``content`` is sent raw."""
        op = self.operations[operation]
        request = UpstreamRequest(
            operation=operation,
            method=op.method,
            url=self.url(op, path),
            params={k: v for k, v in (query or {}).items() if v is not None},
            headers={k: str(v) for k, v in (headers or {}).items() if v is not None},
        )
        request.content, kind = _encode(body, content, content_type or op.body)
        if kind and not any(k.lower() == "content-type" for k in request.headers):
            request.headers["Content-Type"] = kind
        if self.middleware is not None:
            outcome = self.middleware(request)
            if inspect.isawaitable(outcome):
                await outcome
        secret = auth_header(read_manifest(self.manifest))
        if secret is not None:
            request.headers = {
                k: v for k, v in request.headers.items() if k.lower() != secret[0].lower()
            }
            request.headers[secret[0]] = secret[1]
        return await _exchange(request)

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """Send and decode; an answer of 400 or more raises ``UpstreamError`` (502)."""
        answer = await self.send(operation, **kwargs)
        if answer.status >= 400:
            raise UpstreamError(
                f"{operation}: the upstream API answered {answer.status}",
                upstreamStatus=answer.status,
                upstreamBody=answer.text[:2000],
            )
        return answer.data()

    async def proxy(
        self, operation: str, req: Any, res: Any, path: Mapping[str, Any] | None = None
    ) -> Any:
        """Pass the script's request to ``operation`` (its declared query and header
        parameters, its body) and answer with the upstream's status, type and body."""
        op = self.operations[operation]
        query = {name: req.query[name] for name in op.query if name in req.query}
        headers = {name: req.headers[name] for name in op.headers if name in req.headers}
        for name in FORWARDED:
            if name in req.headers:
                headers.setdefault(name, req.headers[name])
        answer = await self.send(
            operation, path=path, query=query, headers=headers, content=req.raw or None
        )
        res.status(answer.status)
        return res.send(answer.content, answer.content_type or "application/octet-stream")


def _encode(body: Any, content: bytes | None, kind: str | None) -> tuple[bytes | None, str | None]:
    if content is not None:
        return content, None  # the caller's own Content-Type header travels with it
    if body is None:
        return None, None
    if isinstance(body, bytes):
        return body, kind or "application/octet-stream"
    if isinstance(body, str) and not (kind or "").endswith("json"):
        return body.encode(), kind or "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


async def _exchange(request: UpstreamRequest) -> UpstreamResponse:
    host = httpx2.URL(request.url).host
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            async with http_client().stream(
                request.method,
                request.url,
                params=request.params,
                headers=request.headers,
                content=request.content,
            ) as response:
                content = await _read_capped(response, request.operation)
                return UpstreamResponse(response.status_code, dict(response.headers), content)
    except TimeoutError:
        raise UpstreamError(
            f"{request.operation}: the upstream API did not answer within {CALL_TIMEOUT:g} s",
            upstream=host,
        ) from None
    except httpx2.HTTPError as exc:
        raise UpstreamError(
            f"{request.operation}: the upstream API could not be reached: "
            f"{type(exc).__name__}: {exc}",
            upstream=host,
        ) from None


async def _read_capped(response: httpx2.Response, operation: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise UpstreamError(
                f"{operation}: the upstream answer is over {MAX_RESPONSE_BYTES} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)
