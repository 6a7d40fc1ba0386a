"""Shared state: one JSON document per hostname, durable, the same in every worker.

Stored in the kit's SQLite database (WAL). Every mutation is one
``BEGIN IMMEDIATE`` transaction (read, change, write), so concurrent
``incr`` calls from any number of workers each get a distinct value. Paths are
dotted keys (``"stats.visits"``); a numeric segment indexes a list.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from . import db
from .errors import BadRequest

_MISSING = object()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def split(path: str | None) -> list[str]:
    if path is None or path == "":
        return []
    if not isinstance(path, str):
        raise BadRequest(f"path must be a dotted string, got {type(path).__name__}")
    parts = path.split(".")
    if any(p == "" for p in parts):
        raise BadRequest(f"invalid path {path!r}: empty segment")
    return parts


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
    """The parent of the last segment, creating dicts along the way."""
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


class SharedStore:
    """The process's handle on shared state (thread-safe)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = db.connect(self.path)
            db.migrate(self._conn)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def document(self, hostname: str) -> dict[str, Any]:
        with self._lock:
            row = (
                self._db()
                .execute("SELECT doc FROM shared_state WHERE hostname = ?", (hostname,))
                .fetchone()
            )
        return _decode(row[0]) if row else {}

    def get(self, hostname: str, path: str | None = None, default: Any = None) -> Any:
        value = get_in(self.document(hostname), split(path))
        return default if value is _MISSING else value

    def update(
        self, hostname: str, change: Callable[[dict[str, Any]], tuple[dict[str, Any], Any]]
    ) -> Any:
        """Run ``change(doc) -> (new_doc, result)`` atomically; returns ``result``."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT doc FROM shared_state WHERE hostname = ?", (hostname,)
                ).fetchone()
                doc = _decode(row[0]) if row else {}
                new, result = change(doc)
                conn.execute(
                    "INSERT INTO shared_state (hostname, doc, version) VALUES (?, ?, 1) "
                    "ON CONFLICT(hostname) DO UPDATE SET doc = excluded.doc, version = version + 1",
                    (hostname, _encode(new)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return result

    def set(self, hostname: str, path: str | None, value: Any) -> Any:
        parts = split(path)

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], Any]:
            if not parts:
                if not isinstance(value, dict):
                    raise BadRequest("the whole document must be an object")
                return value, value
            _assign(_container(doc, parts), parts[-1], value)
            return doc, value

        return self.update(hostname, change)

    def merge(self, hostname: str, path: str | None, obj: Any) -> Any:
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

        return self.update(hostname, change)

    def delete(self, hostname: str, path: str | None = None) -> bool:
        parts = split(path)

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], Any]:
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

        return self.update(hostname, change)

    def incr(self, hostname: str, path: str, n: int | float = 1) -> int | float:
        parts = split(path)
        if not parts:
            raise BadRequest("incr needs a path")
        if isinstance(n, bool) or not isinstance(n, int | float):
            raise BadRequest("incr amount must be a number")

        def change(doc: dict[str, Any]) -> tuple[dict[str, Any], Any]:
            parent = _container(doc, parts)
            old = _child(parent, parts[-1])
            if old is _MISSING or old is None:
                old = 0
            if isinstance(old, bool) or not isinstance(old, int | float):
                raise BadRequest(f"cannot increment {path!r}: it holds a {type(old).__name__}")
            _assign(parent, parts[-1], old + n)
            return doc, old + n

        return self.update(hostname, change)

    def clear(self, hostname: str | None = None) -> int:
        with self._lock:
            conn = self._db()
            if hostname is None:
                cur = conn.execute("DELETE FROM shared_state")
            else:
                cur = conn.execute("DELETE FROM shared_state WHERE hostname = ?", (hostname,))
            return cur.rowcount


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
