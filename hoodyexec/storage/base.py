"""Shared state: one JSON document per instance, the same in every worker.

A document is stored by path, one row per leaf (``layout.py``), so an
operation reads and writes only the rows of the path it names: ``incr`` of a
counter costs the same in an empty document and in one holding megabytes.

``SharedStore`` is the interface every backend implements (SQLite here; the
scale-out backends later). A backend provides a transaction over one
document's rows (``Rows``: a ranged read, writes, removals of a key range) and
the way to run one — ``_read`` as a consistent snapshot, ``_write`` atomically
against every other writer — and gets the path operations
(``get``/``set``/``merge``/``delete``/``incr``) from this base, so every
backend has the same semantics. Paths are dotted keys (``"stats.visits"``); a
numeric segment indexes a list. Arrays are stored as one value: a path into an
array reads and rewrites that array.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hoodyexec.errors import BadRequest

from . import layout
from .layout import Row

_MISSING = object()


def split(path: str | None) -> list[str]:
    if path is None or path == "":
        return []
    if not isinstance(path, str):
        raise BadRequest(f"path must be a dotted string, got {type(path).__name__}")
    parts = path.split(".")
    if any(p == "" for p in parts):
        raise BadRequest(f"invalid path {path!r}: empty segment")
    return parts


def _index(key: str) -> int | None:
    """A list index (``"2"``, ``"-1"``), or None."""
    digits = key[1:] if key[:1] == "-" else key
    return int(key) if digits.isascii() and digits.isdigit() else None


def _child(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    if isinstance(node, list):
        i = _index(key)
        return node[i] if i is not None and -len(node) <= i < len(node) else _MISSING
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
    elif _is_index(node, key):
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


# -- the operations on an in-memory value (inside an array, or over a scalar) --


def doc_set(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    _assign(_container(doc, parts), parts[-1], value)


def doc_merge(doc: dict[str, Any], parts: list[str], obj: Any) -> Any:
    parent = _container(doc, parts)
    old = _child(parent, parts[-1])
    merged = deep_merge(None if old is _MISSING else old, obj)
    _assign(parent, parts[-1], merged)
    return merged


def doc_delete(doc: dict[str, Any], parts: list[str]) -> bool:
    parent = get_in(doc, parts[:-1])
    key = parts[-1]
    if isinstance(parent, dict) and key in parent:
        del parent[key]
        return True
    if _is_index(parent, key):
        del parent[int(key)]
        return True
    return False


def doc_incr(doc: dict[str, Any], parts: list[str], n: int | float, path: str) -> int | float:
    parent = _container(doc, parts)
    new = _incremented(_child(parent, parts[-1]), n, path)
    _assign(parent, parts[-1], new)
    return new


def _is_index(node: Any, key: str) -> bool:
    if not isinstance(node, list):
        return False
    i = _index(key)
    return i is not None and -len(node) <= i < len(node)


def _incremented(old: Any, n: int | float, path: str) -> int | float:
    if old is _MISSING or old is None:
        old = 0
    if isinstance(old, bool) or not isinstance(old, int | float):
        raise BadRequest(f"cannot increment {path!r}: it holds a {type(old).__name__}")
    new: int | float = old + n
    return new


# -- what a backend provides --


class Rows(ABC):
    """One document's rows inside a backend's transaction (paths: ``layout``)."""

    @abstractmethod
    def locate(self, ancestors: list[bytes], lo: bytes, hi: bytes, limit: int = -1) -> list[Row]:
        """The rows whose path is one of ``ancestors``, and those in ``[lo, hi)``
        (at most ``limit`` of these, in path order, when ``limit`` ≥ 0)."""

    @abstractmethod
    def put(self, rows: list[Row]) -> None:
        """Insert or replace rows."""

    @abstractmethod
    def erase(self, lo: bytes, hi: bytes) -> int:
        """Remove the rows in ``[lo, hi)``; returns how many."""

    @abstractmethod
    def touch(self) -> None:
        """Mark the document as existing even with no rows (as every write does)."""


T = TypeVar("T")


@dataclass(slots=True)
class Spot:
    """Where a path's value is: inside the leaf row at a proper prefix of the
    path (``depth`` segments, ``anchor`` its value), or the rows at and under
    the path itself (``rows``, none when it is missing)."""

    path: bytes
    depth: int = 0
    anchor: Any = _MISSING
    rows: list[Row] | None = None

    @property
    def inside(self) -> bool:
        return self.anchor is not _MISSING

    def value(self, parts: list[str]) -> Any:
        if self.inside:
            return get_in(self.anchor, parts[self.depth :])
        if not self.rows:
            return _MISSING
        return layout.recompose(self.path, self.rows)


def locate(rows: Rows, parts: list[str], limit: int = -1) -> Spot:
    path = layout.encode_path(parts)
    if len(parts) == 1:  # PERF: the common case, a top-level key: no ancestors
        return Spot(path, rows=rows.locate([], path, path + layout.END, limit))
    ancestors = [layout.encode_path(parts[:i]) for i in range(1, len(parts))]
    found = rows.locate(ancestors, path, path + layout.END, limit)
    for key, raw in found:
        if key in ancestors:
            return Spot(path, ancestors.index(key) + 1, layout.decode_value(raw))
    return Spot(path, rows=found)


class SharedStore(ABC):
    """Shared-state documents keyed by instance (``<subdomain>/<execId>``).

    A document exists once anything was written to it (even if it is ``{}``
    now) until ``clear`` removes it.
    """

    @abstractmethod
    def _read(self, key: str, fn: Callable[[Rows], T]) -> T:
        """Run ``fn`` over one consistent snapshot of the document's rows."""

    @abstractmethod
    def _write(self, key: str, fn: Callable[[Rows], T]) -> T:
        """Run ``fn`` atomically (all its writes or none, serialised with every
        other writer, durable once this returns); returns what it returned."""

    @abstractmethod
    def clear(self, key: str | None = None) -> int:
        """Remove one document (every document when ``key`` is None); returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (the store reopens them on demand)."""

    # -- reads --

    def document(self, key: str) -> dict[str, Any]:
        """The whole document (``{}`` when there is none)."""
        doc: dict[str, Any] = self._read(key, lambda rows: _whole(rows))
        return doc

    def get(self, key: str, path: str | None = None, default: Any = None) -> Any:
        parts = split(path)
        if not parts:
            return self.document(key)
        value = self._read(key, lambda rows: locate(rows, parts).value(parts))
        return default if value is _MISSING else value

    # -- writes --

    def set(self, key: str, path: str | None, value: Any) -> Any:
        parts = split(path)
        if not parts and not isinstance(value, dict):
            raise BadRequest("the whole document must be an object")
        stored = layout.normalise(value)

        def change(rows: Rows) -> None:
            if not parts:
                rows.erase(*layout.subtree(b""))
                rows.put(layout.explode(b"", stored))
                rows.touch()
                return
            spot = locate(rows, parts, 1)
            if spot.inside:
                _rewrite(rows, parts, spot, lambda doc, sub: doc_set(doc, sub, stored))
                return
            new = layout.explode(spot.path, stored)
            if spot.rows and not (len(new) == 1 and spot.rows[0][0] == spot.path == new[0][0]):
                rows.erase(*layout.subtree(spot.path))  # (a leaf replaced by a leaf: no need)
            rows.put(new)

        self._write(key, change)
        return value

    def merge(self, key: str, path: str | None, obj: Any) -> Any:
        parts = split(path)
        if not parts and not isinstance(obj, dict):
            raise BadRequest("the whole document must be an object")
        extra = layout.normalise(obj)

        def change(rows: Rows) -> Any:
            if not parts:
                doc = _whole(rows)
                _merge_rows(rows, b"", doc, extra)
                rows.touch()
                return deep_merge(doc, extra)
            spot = locate(rows, parts)
            if spot.inside:
                return _rewrite(rows, parts, spot, lambda doc, sub: doc_merge(doc, sub, extra))
            old = spot.value(parts)
            old = None if old is _MISSING else old
            _merge_rows(rows, spot.path, old, extra)
            return deep_merge(old, extra)

        return self._write(key, change)

    def delete(self, key: str, path: str | None = None) -> bool:
        parts = split(path)

        def change(rows: Rows) -> bool:
            rows.touch()
            if not parts:
                return rows.erase(*layout.subtree(b"")) > 0
            spot = locate(rows, parts, 1)
            if spot.inside:
                return bool(_rewrite(rows, parts, spot, doc_delete, only_if=True))
            if not rows.erase(*layout.subtree(spot.path)):
                return False
            _keep_parent(rows, parts)
            return True

        return self._write(key, change)

    def incr(self, key: str, path: str, n: int | float = 1) -> int | float:
        parts = split(path)
        if not parts:
            raise BadRequest("incr needs a path")
        if isinstance(n, bool) or not isinstance(n, int | float):
            raise BadRequest("incr amount must be a number")

        def change(rows: Rows) -> int | float:
            spot = locate(rows, parts, 2)
            if spot.inside:
                new: int | float = _rewrite(
                    rows, parts, spot, lambda doc, sub: doc_incr(doc, sub, n, path)
                )
                return new
            found = spot.rows or []
            if not found:
                old: Any = _MISSING
            elif found[0][0] == spot.path:
                old = layout.decode_value(found[0][1])
            else:
                old = {}  # an object: its keys are rows under the path
            new = _incremented(old, n, path)
            rows.put([(spot.path, layout.encode_value(new))])
            return new

        result: int | float = self._write(key, change)
        return result


def _whole(rows: Rows) -> dict[str, Any]:
    found = rows.locate([], *layout.subtree(b""))
    doc: dict[str, Any] = layout.recompose(b"", found) if found else {}
    return doc


def _rewrite(
    rows: Rows,
    parts: list[str],
    spot: Spot,
    op: Callable[[dict[str, Any], list[str]], Any],
    only_if: bool = False,
) -> Any:
    """Run an in-memory operation on the leaf value that holds the path (an
    array, a scalar, ``{}``) and store that value again; with ``only_if``, only
    when the operation answers true (a delete that found something)."""
    name = parts[spot.depth - 1]
    holder = {name: spot.anchor}
    result = op(holder, parts[spot.depth - 1 :])
    if only_if and not result:
        return result
    top = layout.encode_path(parts[: spot.depth])
    rows.erase(*layout.subtree(top))
    rows.put(layout.explode(top, holder[name]))
    return result


def _merge_rows(rows: Rows, path: bytes, old: Any, extra: Any) -> None:
    """Store ``deep_merge(old, extra)`` at ``path`` (``old`` is its value now),
    writing only the keys ``extra`` brings."""
    if isinstance(old, dict) and isinstance(extra, dict):
        if not extra:
            return
        if old or not path:  # an object kept as its keys (the root always is)
            for name, item in extra.items():
                sub = layout.child(path, name)
                if name in old:
                    _merge_rows(rows, sub, old[name], item)
                else:
                    rows.put(layout.explode(sub, item))
            return
    new = layout.explode(path, deep_merge(old, extra))
    if (isinstance(old, dict) and old) or not (len(new) == 1 and new[0][0] == path):
        rows.erase(*layout.subtree(path))  # (a leaf or nothing replaced by a leaf: no need)
    rows.put(new)


def _keep_parent(rows: Rows, parts: list[str]) -> None:
    """After removing the last key of an object, the object stays, empty."""
    if len(parts) < 2:
        return
    parent = layout.encode_path(parts[:-1])
    if not rows.locate([], *layout.children_range(parent), 1):
        rows.put([(parent, layout.EMPTY_OBJECT)])
