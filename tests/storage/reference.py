"""What shared state did before it was stored by path, kept to test against.

``BlobModel`` is the version-2 store's semantics — one JSON document per
hostname, read whole, changed in memory, written whole — as its code was
(the path helpers and each operation's change function), over a dict of JSON
blobs instead of SQLite. The store by path must answer every operation as this
does. ``create_v2_database`` writes a state database exactly as version 2 of
the schema left it, for the migration tests.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from hoodyexec.errors import BadRequest
from hoodyexec.storage.base import split

_MISSING = object()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _child(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    if isinstance(node, list) and key.lstrip("-").isdigit():
        i = int(key)
        return node[i] if -len(node) <= i < len(node) else _MISSING
    return _MISSING


def get_in(doc: Any, parts: list[str]) -> Any:
    node = doc
    for key in parts:
        node = _child(node, key)
        if node is _MISSING:
            return _MISSING
    return node


def _container(doc: dict[str, Any], parts: list[str]) -> Any:
    node: Any = doc
    for key in parts[:-1]:
        nxt = _child(node, key)
        if nxt is _MISSING or not isinstance(nxt, dict | list):
            if not isinstance(node, dict):
                raise BadRequest(f"cannot create key {key!r} inside a list")
            nxt = node[key] = {}
        node = nxt
    return node


def _assign(node: Any, key: str, value: Any) -> None:
    if isinstance(node, dict):
        node[key] = value
    elif (
        isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node)
    ):
        node[int(key)] = value
    else:
        raise BadRequest(f"cannot set {key!r} on a {type(node).__name__}")


def deep_merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for k, v in extra.items():
            out[k] = deep_merge(out.get(k), v) if k in out else v
        return out
    return extra


class BlobModel:
    """The version-2 semantics over in-memory blobs (same method signatures)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def document(self, key: str) -> dict[str, Any]:
        return _decode(self.blobs[key]) if key in self.blobs else {}

    def _update(self, key: str, change: Any) -> Any:
        new, result = change(self.document(key))
        self.blobs[key] = _encode(new)
        return result

    def clear(self, key: str | None = None) -> int:
        if key is None:
            n = len(self.blobs)
            self.blobs.clear()
            return n
        return 1 if self.blobs.pop(key, None) is not None else 0

    def get(self, key: str, path: str | None = None, default: Any = None) -> Any:
        value = get_in(self.document(key), split(path))
        return default if value is _MISSING else value

    def set(self, key: str, path: str | None, value: Any) -> Any:
        parts = split(path)

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], Any]:
            if not parts:
                if not isinstance(value, dict):
                    raise BadRequest("the whole document must be an object")
                return value, value
            _assign(_container(doc, parts), parts[-1], value)
            return doc, value

        return self._update(key, change)

    def merge(self, key: str, path: str | None, obj: Any) -> Any:
        parts = split(path)

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], Any]:
            if not parts:
                merged = deep_merge(doc, obj)
                if not isinstance(merged, dict):
                    raise BadRequest("the whole document must be an object")
                return merged, merged
            parent = _container(doc, parts)
            old = _child(parent, parts[-1])
            merged = deep_merge(None if old is _MISSING else old, obj)
            _assign(parent, parts[-1], merged)
            return doc, merged

        return self._update(key, change)

    def delete(self, key: str, path: str | None = None) -> bool:
        parts = split(path)

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            if not parts:
                return {}, bool(doc)
            parent = get_in(doc, parts[:-1])
            key = parts[-1]
            if isinstance(parent, dict) and key in parent:
                del parent[key]
                return doc, True
            if (
                isinstance(parent, list)
                and key.lstrip("-").isdigit()
                and -len(parent) <= int(key) < len(parent)
            ):
                del parent[int(key)]
                return doc, True
            return doc, False

        return self._update(key, change)

    def incr(self, key: str, path: str, n: int | float = 1) -> int | float:
        parts = split(path)
        if not parts:
            raise BadRequest("incr needs a path")
        if isinstance(n, bool) or not isinstance(n, int | float):
            raise BadRequest("incr amount must be a number")

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], int | float]:
            parent = _container(doc, parts)
            old = _child(parent, parts[-1])
            if old is _MISSING or old is None:
                old = 0
            if isinstance(old, bool) or not isinstance(old, int | float):
                raise BadRequest(f"cannot increment {path!r}: it holds a {type(old).__name__}")
            _assign(parent, parts[-1], old + n)
            return doc, old + n

        return self._update(key, change)


# The schema as version 2 created it (migrations 1 and 2, verbatim).
V2_SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS shared_state (
        hostname TEXT PRIMARY KEY,
        doc      TEXT NOT NULL,
        version  INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS schedule_fires (
        script      TEXT NOT NULL,
        tick        INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        status      TEXT NOT NULL,
        owner       INTEGER NOT NULL,
        claimed_at  REAL NOT NULL,
        finished_at REAL,
        duration_ms REAL,
        error       TEXT,
        PRIMARY KEY (script, tick)
    );
    CREATE INDEX IF NOT EXISTS schedule_fires_status ON schedule_fires (status);
    CREATE TABLE IF NOT EXISTS schedules (
        script        TEXT PRIMARY KEY,
        expression    TEXT NOT NULL,
        registered_at REAL NOT NULL
    );
"""


def create_v2_database(path: str, docs: dict[str, Any]) -> None:
    """A state database as version 2 wrote it: WAL, user_version 2, one row
    per hostname in ``shared_state``, ``doc`` bound as the version-2 store's
    ``update`` bound it (the msgspec encoding, bytes; a ``str`` given here is
    stored as text), ``version`` counting writes."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in V2_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    for hostname, doc in docs.items():
        raw = doc if isinstance(doc, str | bytes) else _encode(doc)
        conn.execute(
            "INSERT INTO shared_state (hostname, doc, version) VALUES (?, ?, 3)", (hostname, raw)
        )
    conn.execute("PRAGMA user_version = 2")
    conn.close()
