"""How a shared-state document is stored: one row per leaf path.

A document is kept as rows ``(path, value)``. Objects are exploded: every
non-empty object is the set of its keys, each key a row of its own or an
object exploded in turn. A row holds a *leaf*: a scalar (string, number,
boolean, null), an array (stored whole, as one value), or an empty object
(``{}``, so that an emptied object stays there). So writing one key costs the
same however large the rest of the document is, and reading a path reads only
the rows under it.

Invariant: no row's path is a prefix (by segments) of another row's path —
a leaf has no children, and an object is never stored as a row unless empty.

Paths are encoded as bytes so that a subtree is one contiguous key range in
any store ordered bytewise (SQLite's BLOB order, PostgreSQL ``bytea``, a Redis
sorted set with lexicographic ranges): each segment is ``0x00`` followed by
its UTF-8, in which ``0x01`` becomes ``0x01 0x02`` and ``0x00`` becomes
``0x01 0x01``. The root is the empty path. The rows of the value at ``P`` are
exactly those with ``P <= path < P + 0x01`` (``P`` itself, then
``P + 0x00 + ...``). Values are JSON (msgspec), one per row.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hoodyexec.errors import BadRequest

SEP = b"\x00"
END = b"\x01"  # P + END is the first path after every row of P's subtree
EMPTY_OBJECT = b"{}"

encode_value = msgspec.json.Encoder().encode
decode_value = msgspec.json.Decoder().decode

Row = tuple[bytes, bytes]


def _escape(segment: str) -> bytes:
    raw = segment.encode()
    if b"\x01" in raw or b"\x00" in raw:
        raw = raw.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return raw


def _unescape(raw: bytes) -> str:
    if b"\x01" in raw:
        raw = raw.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01")
    return raw.decode()


def encode_path(parts: list[str]) -> bytes:
    """The row key of a path given as segments (``[]`` → the root, ``b""``)."""
    if len(parts) == 1:
        return SEP + _escape(parts[0])
    return b"".join([SEP + _escape(p) for p in parts])


def child(path: bytes, key: str) -> bytes:
    return path + SEP + _escape(key)


def subtree(path: bytes) -> tuple[bytes, bytes]:
    """The key range ``[lo, hi)`` of the value at ``path``: its row or its rows
    under it (the root's: every row)."""
    return path, path + END


def children_range(path: bytes) -> tuple[bytes, bytes]:
    """The key range of the rows strictly under ``path``."""
    return path + SEP, path + END


def normalise(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples → lists, non-string keys →
    strings); a clear 400 for what JSON cannot hold."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return decode_value(encode_value(value))
    except (TypeError, msgspec.EncodeError, ValueError) as exc:
        raise BadRequest(f"shared state holds JSON values only: {exc}") from None


def explode(path: bytes, value: Any) -> list[Row]:
    """The rows of a (normalised) ``value`` stored at ``path``. The root's
    value is an object; an empty one is no rows."""
    rows: list[Row] = []
    _explode(path, value, rows)
    return rows


def _explode(path: bytes, value: Any, rows: list[Row]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _explode(child(path, key), item, rows)
    elif path:
        rows.append((path, encode_value(value)))


def recompose(path: bytes, rows: list[Row]) -> Any:
    """The value at ``path`` from its rows (those of its range, in any order);
    the rows must not be empty, except at the root (→ ``{}``)."""
    if len(rows) == 1 and rows[0][0] == path:
        return decode_value(rows[0][1])
    skip = len(path) + 1
    out: dict[str, Any] = {}
    for key, raw in rows:
        segments = key[skip:].split(SEP)
        node = out
        for seg in segments[:-1]:
            name = _unescape(seg)
            nxt = node.get(name)
            if nxt is None:
                nxt = node[name] = {}
            node = nxt
        node[_unescape(segments[-1])] = decode_value(raw)
    return out
