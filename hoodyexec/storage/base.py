"""Shared state: one JSON document per instance, the same in every worker.

``SharedStore`` is the interface every backend implements (SQLite here; the
scale-out backends later). A backend provides three primitives — read a
document, change one atomically, remove documents — and gets the path
operations (``get``/``set``/``merge``/``delete``/``incr``) from this base, so
every backend has the same semantics. Paths are dotted keys
(``"stats.visits"``); a numeric segment indexes a list.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from hoodyexec.errors import BadRequest

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


T = TypeVar("T")
# change(doc) -> (new_doc, result); update returns the result.
Change = Callable[[dict[str, Any]], tuple[dict[str, Any], T]]


class SharedStore(ABC):
    """Shared-state documents keyed by instance (``<subdomain>/<execId>``)."""

    @abstractmethod
    def document(self, key: str) -> dict[str, Any]:
        """The whole document (``{}`` when there is none)."""

    @abstractmethod
    def update(self, key: str, change: Change[T]) -> T:
        """Run ``change(doc) -> (new_doc, result)`` atomically; returns ``result``."""

    @abstractmethod
    def clear(self, key: str | None = None) -> int:
        """Remove one document (every document when ``key`` is None); returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (the store reopens them on demand)."""

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

        return self.update(key, change)

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

        return self.update(key, change)

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

        return self.update(key, change)

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

        return self.update(key, change)
