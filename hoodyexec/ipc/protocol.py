"""Typed messages between the control worker and the request workers.

Each message is a msgspec ``Struct`` tagged with its class name and travels as
one frame: a 4-byte big-endian length followed by the msgpack body. Two kinds of
connection use the same control socket, told apart by their first frame:

* a **link** starts with ``Hello``; it stays open for the worker's life and
  carries broadcasts (control → workers) and queries with their replies. What
  a broadcast or query is about is a *topic*, itself a tagged ``Struct``
  (``Invalidate``, ``ClearCache``, ``Reload``, ``PackagesChanged``, ``Status``,
  ``Invoke``, ``Describe``), and a
  reply carries a typed answer (``WorkerStatus``, ``InvokeResult``, ``Described``): a worker
  dispatches on the topic's type, and a misspelt topic or field is a decode
  error at the boundary instead of a silently ignored notice;
* a **forward** starts with ``HttpRequest``; the control worker answers with one
  ``ResponseStart`` then ``ResponseBody`` frames until one has ``more=False``.

This module is a leaf: it imports nothing internal.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")


class Hello(msgspec.Struct, tag=True, frozen=True):
    """First frame of a link: who is connecting."""

    pid: int
    role: str = "request"
    age: int = 0


# -- topics: what a broadcast or a query is about -----------------------------------
class Invalidate(msgspec.Struct, tag=True, frozen=True, rename="camel"):
    """Files of one instance changed (a management API write, move or delete):
    drop what the worker cached of them before it serves again.

    inotify already reports such changes on a local filesystem; this notice is
    what keeps workers fresh where it cannot (network filesystems, inotify
    turned off, a change made through a hard link). ``path`` is relative to the
    instance folder, a file or a folder; ``None`` means anything in the
    instance may differ.
    """

    subdomain: str
    exec_id: str
    path: str | None = None


class ClearCache(msgspec.Struct, tag=True, frozen=True, rename="camel"):
    """Drop compiled scripts, and with them their module state: the
    ``cache/clear`` endpoint's notice. ``hostname`` selects one instance the way
    a Host header does; ``None`` clears every instance."""

    hostname: str | None = None
    clear_vm: bool = True
    clear_state: bool = False


class Reload(msgspec.Struct, tag=True, frozen=True):
    """Forget every route table and compiled script: everything is read again."""


class PackagesChanged(msgspec.Struct, tag=True, frozen=True):
    """The kit-local packages changed (an install swapped in a new set): forget
    the import system's directory caches and every script that failed to load,
    so the next request imports what is there now. ``changed`` names the
    distributions added, upgraded or removed."""

    changed: list[str] = []


class Status(msgspec.Struct, tag=True, frozen=True):
    """How is the worker? Answered with a ``WorkerStatus``."""


class MonitorQuery(msgspec.Struct, tag=True, frozen=True, rename="camel"):
    """What is the worker running, and its per-script figures? Answered with a
    ``WorkerMonitor``. ``samples``: include recent latencies (since ``since``,
    epoch seconds); ``stacks``: include each active execution's Python stack."""

    samples: bool = False
    since: float | None = None
    stacks: bool = False


class Invoke(msgspec.Struct, tag=True, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Run one script without HTTP (``route/test``); answered with an ``InvokeResult``."""

    subdomain: str
    exec_id: str
    method: str
    path: str
    query_string: bytes = b""
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    hostname: str = ""
    trigger: str = "test"
    limit: int = 1024 * 1024  # bytes of the answer kept (then ``truncated``)


class Describe(msgspec.Struct, tag=True, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Describe the routed scripts of one instance from their loaded code (entry
    parameters, annotations, docstrings, magic comments) for its OpenAPI
    document (``user-openapi/*``); answered with a ``Described``. User code is
    only ever loaded in a request worker, so the types exist only there.
    ``files`` limits it to those scripts (relative paths); ``None``: all."""

    subdomain: str
    exec_id: str
    files: list[str] | None = None


Topic = (
    Invalidate | ClearCache | Reload | PackagesChanged | Status | MonitorQuery | Invoke | Describe
)


# -- answers: what a reply carries ----------------------------------------------------
class WorkerStatus(msgspec.Struct, tag=True, frozen=True):
    pid: int
    age: int = 0
    uptime: float = 0.0  # seconds since the worker's app was built
    inflight: int = 0  # script executions running now
    instances: int = 0  # instances the worker holds in memory
    tasks: int = 0  # asyncio tasks on the worker's loop


class ActiveRequest(msgspec.Struct, frozen=True, rename="camel"):
    execution_id: str
    script: str  # "sub/execId/path.py"
    method: str
    path: str
    started_at: float  # epoch seconds
    elapsed_ms: float
    mode: str = ""
    stack: str | None = None


class ScriptStats(msgspec.Struct, frozen=True, rename="camel"):
    key: str
    requests: int = 0
    statuses: dict[str, int] = {}
    timeouts: int = 0
    bytes: int = 0
    seconds: float = 0.0
    buckets: list[int] = []  # latency histogram (engine.monitor.BUCKETS, then +Inf)
    last: float = 0.0
    mode: str = ""
    offloads: int = 0
    samples: list[float] = []  # recent latencies in ms (when asked)


class WebSocketStats(msgspec.Struct, frozen=True, rename="camel"):
    """A worker's WebSocket sessions: open now, accepted since start, messages
    received from and sent to clients."""

    open: int = 0
    total: int = 0
    received: int = 0
    sent: int = 0


class WorkerMonitor(msgspec.Struct, tag=True, frozen=True, rename="camel"):
    pid: int
    started: float
    rate1m: float = 0.0  # executions per second over the last minute
    instances: int = 0  # instances the worker holds in memory
    active: list[ActiveRequest] = []
    scripts: list[ScriptStats] = []
    websocket: WebSocketStats = WebSocketStats()


class CacheCleared(msgspec.Struct, tag=True, frozen=True):
    """What a worker dropped for a ``ClearCache``."""

    pid: int
    instances: int = 0  # instances whose compiled scripts were dropped
    scripts: int = 0  # compiled scripts and private modules dropped


class InvokeResult(msgspec.Struct, tag=True, frozen=True, rename="camel"):
    status: int
    headers: list[tuple[str, str]] = []
    body: bytes = b""  # at most the request's ``limit`` bytes
    truncated: bool = False
    timed_out: bool = False
    duration_ms: float = 0.0
    execution_id: str = ""  # the run's executionId, as in the script's log


class ParamFacts(msgspec.Struct, frozen=True, rename="camel"):
    """One entry parameter a request fills: ``source`` as in ``compiler.Param``
    (``route``, ``typed``, ``typed-body``, ``typed-query``, ``body``...);
    ``schema``: JSON Schema of its annotation (refs into ``Described.components``)."""

    name: str
    source: str
    schema: dict[str, Any] | None = None
    required: bool = True


class OperationFacts(msgspec.Struct, frozen=True, rename="camel"):
    """One entry of a script: ``method`` (``GET``... or ``*`` for body mode and
    handler), its docstring, parameters and return annotation. ``returns``:
    ``json`` | ``text`` | ``bytes`` | ``none`` | ``stream`` | ``unknown`` (not
    annotated); ``status``: from ``tuple[T, Literal[201]]``, else 200."""

    method: str
    doc: str | None = None
    params: list[ParamFacts] = []
    returns: str = "unknown"
    schema: dict[str, Any] | None = None
    status: int = 200


class ScriptFacts(msgspec.Struct, frozen=True, rename="camel"):
    file: str
    route: str
    templates: list[str]
    params: list[str] = []
    shape: str = ""
    description: str | None = None
    tags: list[str] = []
    token: bool = False
    enabled: bool = True
    error: str | None = None  # the script does not load: it answers 500
    operations: list[OperationFacts] = []


class Described(msgspec.Struct, tag=True, frozen=True, rename="camel"):
    scripts: list[ScriptFacts] = []
    components: dict[str, Any] = {}  # JSON Schemas the facts refer to
    skipped: list[tuple[str, str]] = []  # .py files that are not routes, with the reason


Answer = WorkerStatus | WorkerMonitor | InvokeResult | CacheCleared | Described


# -- link messages -------------------------------------------------------------------
class Broadcast(msgspec.Struct, tag=True, frozen=True):
    """A one-way notice to every worker, applied in the order sent."""

    topic: Topic


class Query(msgspec.Struct, tag=True, frozen=True):
    """A question to one worker (``ask``) or to every worker (``gather``), each
    answering with a ``Reply``. A notice sent as a query (``Invalidate``, ...)
    is a broadcast whose sender waits until each worker has applied it."""

    id: int
    topic: Topic


class Reply(msgspec.Struct, tag=True, frozen=True):
    """``answer`` is ``None`` for a notice; a worker that could not answer sets
    ``error`` and ``code``, the HTTP status the asker should report."""

    id: int
    pid: int
    answer: Answer | None = None
    error: str | None = None
    code: int = 0


class Cancel(msgspec.Struct, tag=True, frozen=True):
    """The asker of query ``id`` no longer waits (its client left): stop the work."""

    id: int


class HttpRequest(msgspec.Struct, tag=True, frozen=True):
    """An HTTP request forwarded by a request worker to the control worker."""

    method: str
    path: str
    query_string: bytes = b""
    headers: list[tuple[bytes, bytes]] = []
    body: bytes = b""
    client: tuple[str, int] | None = None
    scheme: str = "http"
    server: tuple[str, int] | None = None
    worker_pid: int = 0


class ResponseStart(msgspec.Struct, tag=True, frozen=True):
    status: int
    headers: list[tuple[bytes, bytes]] = []


class ResponseBody(msgspec.Struct, tag=True, frozen=True):
    body: bytes = b""
    more: bool = False


Message = Hello | Broadcast | Query | Reply | Cancel | HttpRequest | ResponseStart | ResponseBody

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    """One frame: length prefix + msgpack body."""
    body = _encoder.encode(msg)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    return _decoder.decode(body)


async def read_frame(reader: asyncio.StreamReader) -> Message | None:
    """Read one message; ``None`` on a clean end of stream."""
    try:
        head = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    (size,) = _HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
    return decode(await reader.readexactly(size))
