"""Typed messages between the control worker and the request workers.

Each message is a msgspec ``Struct`` tagged with its class name and travels as
one frame: a 4-byte big-endian length followed by the msgpack body. Two kinds of
connection use the same control socket, told apart by their first frame:

* a **link** starts with ``Hello``; it stays open for the worker's life and
  carries broadcasts (control → workers) and queries with their replies;
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


class Broadcast(msgspec.Struct, tag=True, frozen=True):
    """A one-way notice to every worker (reload a path, clear the cache, ...)."""

    topic: str
    data: dict[str, Any] = {}


class Query(msgspec.Struct, tag=True, frozen=True):
    """A question fanned out to every worker; each answers with a ``Reply``."""

    id: int
    topic: str
    data: dict[str, Any] = {}


class Reply(msgspec.Struct, tag=True, frozen=True):
    id: int
    pid: int
    data: dict[str, Any] = {}
    error: str | None = None


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
_decoder = msgspec.msgpack.Decoder(Message)


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
